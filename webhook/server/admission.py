"""What a request must pass before a source sees it, and how a refusal is answered.

In order, each step cheaper than the next: the caller's authentication (the server's client
certificate or bearer token, or the source's own check), the method, the Content-Type, the
number of requests in flight, the announced size, then the body, read in time and counted as
it streams. Every refusal is a ``WebhookError`` answered with its status and a JSON body
``{"error": <code>, "reason": <message>}``; ``guarded`` is the outer edge of every route, where
nothing unexpected becomes a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
from aiohttp import web

from webhook.config import ServerConfig
from webhook.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    ClientGoneError,
    MethodNotAllowedError,
    OverloadedError,
    UnauthorizedError,
    UndecodableBodyError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.record.time import now
from webhook.server.auth import Authenticator
from webhook.server.batch_log import Rejections, write_rejected
from webhook.server.http_errors import json_answer
from webhook.sources.base import Delivery, HttpSource, Principal

__all__ = [
    "RETRY_AFTER_S",
    "STATE",
    "ServerState",
    "admit",
    "authenticate",
    "authenticated",
    "count_refusal",
    "guarded",
    "refusal_response",
]

log = structlog.get_logger(__name__)

RETRY_AFTER_S: Final = "1"
_NO_DEADLINE: Final = contextlib.nullcontext()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class ServerState:
    """What admission keeps between requests; the services the sources call are the runtime's."""

    settings: ServerConfig
    authenticator: Authenticator
    metrics: Metrics
    in_flight: int = 0
    stopping: bool = False
    # ingress_audit_request_duration_seconds by status: a label lookup costs more than the observation
    _latency: dict[int, Callable[[float], None]] = field(default_factory=dict)
    # batch.rejected: a line per refused request, folded beyond 10 a second
    rejected_log: FoldingLog[tuple[str, int], Rejections] = field(
        default_factory=lambda: FoldingLog(write_rejected)
    )

    def __post_init__(self) -> None:
        # Read when scraped: no lock taken twice per request to keep a copy of the count.
        self.metrics.in_flight.set_function(lambda: self.in_flight)

    def observe_latency(self, status: int, seconds: float) -> None:
        """``ingress_audit_request_duration_seconds{code=status}`` observes ``seconds``."""
        observe = self._latency.get(status)
        if observe is None:
            observe = self._latency[status] = self.metrics.latency.labels(code=str(status)).observe
        observe(seconds)


STATE = web.AppKey("state", ServerState)


async def admit(request: web.Request, source: HttpSource, state: ServerState) -> Delivery:
    """Authenticate, check method, Content-Type, concurrency and size, then read the body in time."""
    settings = state.settings
    if source.authenticate is None:
        caller = authenticate(request, state)
    else:
        caller = await source.authenticate(request.headers)
    if request.method != "POST":
        raise MethodNotAllowedError(f"method {request.method} is not allowed; use POST")
    if request.content_type not in source.content_types:
        raise UnsupportedMediaTypeError(source.content_type_error)
    if state.in_flight > settings.max_concurrent_requests:
        raise OverloadedError(f"more than {settings.max_concurrent_requests} requests in flight")
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"body is larger than the limit of {limit} bytes")
    # A small body comes with its head, and is all here already: no deadline to arm and cancel.
    deadline = _NO_DEADLINE if request.content.is_eof() else asyncio.timeout(settings.body_timeout_s)
    try:
        async with deadline:
            body = await _read_body(request, limit)
    except TimeoutError:
        raise BodyTimeoutError(f"body not received within {settings.body_timeout_s} s") from None
    except web.RequestPayloadError:  # e.g. Content-Encoding: deflate on a gzip stream
        raise UndecodableBodyError("body does not decode as its Content-Encoding says") from None
    except ConnectionResetError:  # also aiohttp's ClientConnectionResetError
        raise ClientGoneError("the client closed the connection before sending the whole body") from None
    return Delivery(body=body, headers=request.headers, received_at=now(), caller=caller)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body (decompressed, if it was sent gzipped), at most ``limit`` bytes.

    Chunks as the parser hands them over, joined once: ``request.read()`` grows a bytearray and
    copies it into bytes again, three copies of every 470 kB batch in the event loop's thread."""
    payload = request.content
    identity = request.headers.get("Content-Encoding", "identity") == "identity"
    if identity and payload.is_eof():
        # All of it came with the head (blocking mode's one-event bodies): take it as it lies.
        body = payload.read_nowait()
        if len(body) > limit:
            raise BodyTooLargeError(f"body is larger than the limit of {limit} bytes")
        return body
    # As request.read() does: let the whole body buffer without pausing the socket (aiohttp 3.13+).
    # Not for a compressed body: the chunk size is also aiohttp's step of decompression, and a
    # 64 MiB step let a 1 MB gzip bomb cost 550 MB before the count below could stop it. At the
    # default step each readany() gives at most 64 KiB more, so the limit holds as it streams.
    raise_limits = getattr(payload, "set_read_chunk_size", None)
    if raise_limits is not None and identity:
        raise_limits(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await payload.readany():
        size += len(chunk)
        if size > limit:  # the rest is not read: the answer closes the connection
            raise BodyTooLargeError(f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if len(chunks) % 16 == 0:
            # A compressed body already received is decompressed as we read, without a pause:
            # let other requests in every MiB or so (64 MiB of a bomb held the loop 0.5 s).
            await asyncio.sleep(0)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def authenticate(request: web.Request, state: ServerState) -> Principal:
    """The server's client authentication: raises UnauthorizedError (401) or ForbiddenError (403)."""
    return state.authenticator.authenticate(
        authorization=request.headers.get("Authorization"),
        peercert=request.transport.get_extra_info("peercert") if request.transport else None,
    )


def authenticated(request: web.Request, state: ServerState) -> bool:
    try:
        authenticate(request, state)
    except WebhookError:
        return False
    return True


def count_refusal(state: ServerState, exc: WebhookError) -> None:
    """Every refused request: counted by reason, and a folded ``batch.rejected`` line."""
    state.metrics.rejects.labels(reason=exc.code).inc()
    state.rejected_log.add((exc.code, exc.http_status), Rejections(requests=1))


def refusal_response(exc: WebhookError) -> web.Response:
    """A refused request's answer: its status, the JSON reason, and the headers the status needs."""
    extra = {"Retry-After": RETRY_AFTER_S} if exc.http_status == 503 else {}
    if isinstance(exc, MethodNotAllowedError):
        extra["Allow"] = "POST"
    elif isinstance(exc, UnauthorizedError):
        extra["WWW-Authenticate"] = 'Bearer realm="ingress-audit"'
    return json_answer({"error": exc.code, "reason": exc.message}, exc.http_status, extra or None)


def guarded(handler: Handler) -> Handler:
    """``handler`` behind the outer edge: nothing unexpected becomes a 500 or a traceback.

    Wrapped route by route rather than as a middleware: aiohttp runs an application's
    middlewares through two more calls and a context manager on every request."""

    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - the outer edge logs and answers 503
            return _unexpected(request, exc)

    return guard


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    state = request.app[STATE]
    if isinstance(exc, ConnectionResetError) and _client_gone(request):
        # Gone before we could answer: the client's doing, counted and folded, not logged.
        gone = ClientGoneError("the client closed the connection")
        count_refusal(state, gone)
        return refusal_response(gone)
    correlation_id = uuid.uuid4().hex
    log.error(
        "request.failed",
        path=request.path,
        error=type(exc).__name__,
        correlation_id=correlation_id,
    )
    state.metrics.rejects.labels(reason="internal").inc()
    return json_answer(
        {"error": "internal", "reason": "unexpected failure", "correlation_id": correlation_id},
        503,
        {"Retry-After": RETRY_AFTER_S},
    )


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
