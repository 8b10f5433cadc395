"""What aiohttp answers on its own, before any handler runs, made ours: no versions, no echoes.

aiohttp answers a request its parser refuses (a bad header line, an obs-fold, a NUL, a
``Content-Encoding`` it cannot decode) with a text page quoting the offending header line,
which may be an ``Authorization`` token, and naming the library to install; it logs each one
at error level with a traceback, and sends ``Server: Python/3.11 aiohttp/x.y.z`` on every
answer. Here every such answer is a fixed JSON body, counted and logged as a folded
``batch.rejected`` warning like the handlers' own refusals, and ``Server`` names no version.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.server.batch_log import Rejections
from webhook.sources.base import Answer

__all__ = [
    "BAD_HTTP",
    "SERVER_HEADER",
    "count_tls_failures",
    "harden_edges",
    "json_answer",
    "quiet_errors",
    "respond",
    "set_server_header",
    "tls_reason",
    "write_tls_failed",
]

log = structlog.get_logger(__name__)

SERVER_HEADER: Final = "ingress-audit"
# OpenSSL's reasons for a refused handshake, as metric labels; any other is "other".
_TLS_REASONS: Final = {
    "CERTIFICATE_VERIFY_FAILED": "certificate-verify-failed",  # untrusted CA, expired, not yet valid
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no-client-certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "client-distrusts-server",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client-distrusts-server",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client-distrusts-server",
    "UNSUPPORTED_PROTOCOL": "protocol-version",
    "WRONG_VERSION_NUMBER": "protocol-version",
    "NO_PROTOCOLS_AVAILABLE": "protocol-version",
    "VERSION_TOO_LOW": "protocol-version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol-version",
    "NO_SHARED_CIPHER": "no-shared-cipher",
    "HTTP_REQUEST": "plain-http",
}
BAD_HTTP: Final = "bad-http"  # the metric label and log reason of a request aiohttp refused


def set_server_header(response: web.StreamResponse) -> None:
    """Replace aiohttp's ``Python/3.x aiohttp/x.y.z`` (on every answer: ``on_response_prepare``)."""
    response.headers["Server"] = SERVER_HEADER


def respond(answer: Answer) -> web.Response:
    """A source's answer (or the server's own) as aiohttp sends it."""
    return web.Response(
        body=answer.body, status=answer.status, content_type="application/json", headers=answer.headers
    )


def json_answer(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The server's own JSON answers, shaped as the sources' are (``Answer.json``)."""
    return respond(Answer.json(body, status, headers))


def harden_edges(
    runner: web.AppRunner,
    rejected: FoldingLog[tuple[str, int], Rejections],
    metrics: Metrics,
    tls_context: ssl.SSLContext | None,
) -> None:
    """After ``runner.setup()``: aiohttp's own answers made ours, refused handshakes counted."""
    quiet_errors(runner, rejected, lambda reason: metrics.rejects.labels(reason=reason).inc())
    if tls_context is not None:
        tls_log: FoldingLog[str, Rejections] = FoldingLog(write_tls_failed)

        def failed(reason: str) -> None:
            metrics.tls_failures.labels(reason=reason).inc()
            tls_log.add(reason, Rejections(requests=1))

        count_tls_failures(tls_context, failed)


def quiet_errors(
    runner: web.AppRunner, rejected: FoldingLog[tuple[str, int], Rejections], count: Callable[[str], None]
) -> None:
    """After ``runner.setup()``: answer aiohttp's own errors as described above.

    ``count(reason)`` increments the rejections metric; ``rejected`` is the folding log."""
    server = runner.server
    if server is None:
        raise RuntimeError("quiet_errors() runs after runner.setup()")
    server.__class__ = _Server  # the same object: aiohttp's Server with our handler class
    quiet = cast(_Server, server)
    quiet.rejected = rejected
    quiet.count = count


class _Server(web.Server):
    rejected: FoldingLog[tuple[str, int], Rejections]
    count: Callable[[str], None]

    def __call__(self) -> RequestHandler:
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.owner = self
        return handler


class _Handler(RequestHandler):
    owner: _Server

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A fixed JSON answer; the message (which quotes the request) is neither sent nor logged."""
        if request.writer.output_size > 0:  # as aiohttp: an answer is on its way, drop the line
            raise ConnectionError("an answer was sent already")
        if 400 <= status < 500:
            reason, body = BAD_HTTP, {"error": BAD_HTTP, "reason": "malformed HTTP request"}
            headers = {"Server": SERVER_HEADER}
        else:  # ``guarded`` answers every handler failure; anything left is still not a 500
            status, reason = 503, "internal"
            body = {"error": "internal", "reason": "unexpected failure"}
            headers = {"Server": SERVER_HEADER, "Retry-After": "1"}
        self.owner.count(reason)
        self.owner.rejected.add((reason, status), Rejections(requests=1))
        response = json_answer(body, status, headers)
        response.force_close()
        return response


def tls_reason(exc: ssl.SSLError) -> str:
    """A bounded label for a handshake error (OpenSSL has hundreds of reasons)."""
    return _TLS_REASONS.get(str(exc.reason or ""), "other")


def count_tls_failures(context: ssl.SSLContext, failed: Callable[[str], None]) -> None:
    """Call ``failed(reason)`` for every handshake ``context`` refuses.

    asyncio logs a refused handshake only in debug mode, so an apiserver with an expired
    certificate would be invisible here. ``sslobject_class`` is the documented hook: every
    connection's TLS state is an instance of it, and its ``do_handshake`` raises the error."""

    class _Counted(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                failed(tls_reason(exc))
                raise

    context.sslobject_class = _Counted


def write_tls_failed(reason: str, sums: Rejections) -> None:
    """``tls.handshake_failed``: FoldingLog(write_tls_failed) takes add(reason, Rejections(1))."""
    log.warning("tls.handshake_failed", reason=reason, connections=sums.requests)
