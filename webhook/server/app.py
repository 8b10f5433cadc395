"""The aiohttp app: ``POST /audit`` (the webhook), ``/healthz``, ``/readyz``, ``/metrics``.

``/audit`` answers 200 only once every record of the batch and every dead letter is written
and fsync'd. Every other answer has a reason the apiserver's operator can act on, and a JSON
body ``{"error": <code>, "reason": <message>}``; nothing ever answers 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.config import Config, check_listen, is_loopback, shared_audit_files, unauthenticated_tls
from webhook.errors import (
    BadRequestError,
    BodyTimeoutError,
    BodyTooLargeError,
    ClientGoneError,
    ConfigError,
    MethodNotAllowedError,
    OverloadedError,
    UnauthorizedError,
    UndecodableBodyError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.pipeline.stages import utc_now
from webhook.runtime import Runtime
from webhook.server.auth import Authenticator
from webhook.server.batch_log import BatchSums, Rejections, write_accepted, write_rejected
from webhook.server.http_errors import harden_edges, json_answer, set_server_header
from webhook.server.listener import ConnectionLimits, ListenerSite, Watched, raise_open_files_limit
from webhook.server.tls import TlsFiles, TlsReloader
from webhook.sources.syslog import start_syslog

__all__ = [
    "CONFIG",
    "METRICS",
    "RUNTIME",
    "STATE",
    "RunningServer",
    "ServerState",
    "create_app",
    "start_server",
]

log = structlog.get_logger(__name__)

RETRY_AFTER_S: Final = "1"
_JSON_TYPES: Final = frozenset({"application/json"})
# Refusals of a batch the apiserver will resend and finally drop; not auth failures or 405s.
_LOST_BATCH: Final = (BadRequestError, BodyTooLargeError, BodyTimeoutError, UnsupportedMediaTypeError)


@dataclass(slots=True)
class ServerState:
    """What the handlers keep between requests (the services they call are the ``Runtime``'s)."""

    authenticator: Authenticator
    in_flight: int = 0
    stopping: bool = False
    # batch.accepted and batch.rejected: a line per request, folded beyond 10 a second
    accepted_log: FoldingLog[None, BatchSums] = field(default_factory=lambda: FoldingLog(write_accepted))
    rejected_log: FoldingLog[tuple[str, int], Rejections] = field(
        default_factory=lambda: FoldingLog(write_rejected)
    )


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
STATE = web.AppKey("state", ServerState)
RUNTIME = web.AppKey("runtime", Runtime)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(config: Config) -> web.Application:
    # _read_body enforces the limit with a 413 and a reason; client_max_size is aiohttp's own
    # stop for any handler that calls request.read() or request.post().
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[_errors])
    app[CONFIG] = config
    app[METRICS] = Metrics()
    # One context per resource: a start that fails half way closes what it opened.
    app.cleanup_ctx.append(_server_state)
    app.cleanup_ctx.append(_runtime)
    if config.access.enabled and (
        config.access.syslog.udp is not None or config.access.syslog.tcp is not None
    ):
        app.cleanup_ctx.append(_syslog)
    app.on_response_prepare.append(set_server_header)
    app.on_shutdown.append(_mark_stopping)
    app.on_response_prepare.append(_answered)
    app.router.add_route("*", "/audit", receive_batch)
    if config.access.enabled and config.access.http:
        from webhook.sources.access_http import receive_access

        app.router.add_route("*", "/ingest/access", receive_access)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def authenticator_for(config: Config) -> Authenticator:
    """The request authenticator ``config`` describes; ``ConfigError`` for unusable token files."""
    auth = config.server.auth
    return Authenticator(
        token_files=auth.bearer_token_files,
        client_certs=config.server.tls is not None and config.server.tls.client_ca_file is not None,
        allowed_subjects=auth.client_subjects,
        require=auth.require,
    )


def tls_files_for(config: Config) -> TlsFiles | None:
    """The serving certificate, key and client CA ``config`` names, if it serves HTTPS."""
    tls = config.server.tls
    if tls is None:
        return None
    return TlsFiles(cert_file=tls.cert_file, key_file=tls.key_file, client_ca_file=tls.client_ca_file)


async def _server_state(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[STATE] = state = ServerState(authenticator=authenticator_for(config))
    poll = asyncio.create_task(_poll(state.authenticator, config))
    try:
        yield
    finally:
        poll.cancel()
        state.accepted_log.flush()
        state.rejected_log.flush()


async def _runtime(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.access.enabled and (shared := shared_audit_files(config)):
        # A configured sinks list: say once that access lines can rotate audit records away.
        log.warning("access.records_share_audit_file", sinks=shared)
    app[RUNTIME] = runtime = await Runtime.open(config, app[METRICS])
    try:
        yield
    finally:
        # Local sinks catch up in moments; remote ones resume from their cursors on restart.
        await runtime.aclose(drain_timeout_s=min(5.0, config.server.shutdown_timeout_s / 2))


async def _syslog(app: web.Application) -> AsyncIterator[None]:
    """Stop listening first, so that the access service summarizes a window nothing adds to."""
    access = app[RUNTIME].access
    if access is None:  # access.enabled is checked before this context is added
        raise RuntimeError("the access service is not running")
    listeners = await start_syslog(access, app[CONFIG].access)
    try:
        yield
    finally:
        await listeners.aclose()


async def _poll(authenticator: Authenticator, config: Config) -> None:
    """Re-read rotated token files (TLS files are watched by the serving side)."""
    interval = config.server.tls.reload_interval_s if config.server.tls else 10.0
    while authenticator.enabled:
        await asyncio.sleep(interval)
        await asyncio.to_thread(authenticator.reload_tokens)


async def _answered(request: web.Request, response: web.StreamResponse) -> None:
    """The answer is ready: the connection is idle again (webhook/server/listener.py). And if it was
    given before the body was read whole (401, 413, 415 …): close the connection after the
    answer. aiohttp would otherwise read the rest for up to 10 s, decompressing it in the event
    loop, before an unauthenticated client's gzip bomb let go of it (seconds of a stalled loop)."""
    protocol = request.transport.get_protocol() if request.transport is not None else None
    if isinstance(protocol, Watched):
        protocol.answered()  # idle from now on: at the connection cap it may be displaced
    if request.body_exists and not request.content.is_eof():
        response.force_close()  # no keep-alive (the headers are already made: say so in them)
        response.headers["Connection"] = "close"
        request.protocol.close()  # parse no more of what arrives


async def _mark_stopping(app: web.Application) -> None:
    if STATE in app:
        app[STATE].stopping = True


def _error_response(exc: WebhookError, **headers: str) -> web.Response:
    return json_answer({"error": exc.code, "reason": exc.message}, exc.http_status, headers or None)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outer edge: nothing unexpected becomes a 500 or a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the outer edge logs and answers 503
        if isinstance(exc, ConnectionResetError) and _client_gone(request):
            # Gone before we could answer: the client's doing, counted and folded, not logged.
            gone = ClientGoneError("the client closed the connection")
            request.app[METRICS].rejects.labels(reason=gone.code).inc()
            if STATE in request.app:
                request.app[STATE].rejected_log.add((gone.code, gone.http_status), Rejections(requests=1))
            return rejection_response(gone)
        correlation_id = uuid.uuid4().hex
        log.error(
            "request.failed",
            path=request.path,
            error=type(exc).__name__,
            correlation_id=correlation_id,
        )
        request.app[METRICS].rejects.labels(reason="internal").inc()
        return json_answer(
            {"error": "internal", "reason": "unexpected failure", "correlation_id": correlation_id},
            503,
            {"Retry-After": RETRY_AFTER_S},
        )


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def receive_batch(request: web.Request) -> web.Response:
    state = request.app[STATE]
    metrics = request.app[METRICS]
    started = time.perf_counter()
    metrics.in_flight.inc()
    state.in_flight += 1
    try:
        response = await _receive_batch(request, state)
    except WebhookError as exc:
        metrics.rejects.labels(reason=exc.code).inc()
        state.rejected_log.add((exc.code, exc.http_status), Rejections(requests=1))
        if isinstance(exc, _LOST_BATCH):
            # The apiserver retries these, then drops the batch: leave a trace of the gap.
            await request.app[RUNTIME].writer.reject(exc, received_at=utc_now())
        response = rejection_response(exc)
    finally:
        metrics.in_flight.dec()
        state.in_flight -= 1
    metrics.latency.labels(code=str(response.status)).observe(time.perf_counter() - started)
    return response


def rejection_response(exc: WebhookError) -> web.Response:
    """A refused request's answer: its status, the JSON reason, and the headers the status needs."""
    extra = {"Retry-After": RETRY_AFTER_S} if exc.http_status == 503 else {}
    if isinstance(exc, MethodNotAllowedError):
        extra["Allow"] = "POST"
    elif isinstance(exc, UnauthorizedError):
        extra["WWW-Authenticate"] = 'Bearer realm="ingress-audit"'
    return _error_response(exc, **extra)


async def read_admitted_body(
    request: web.Request, state: ServerState, *, content_types: frozenset[str], type_error: str
) -> bytes:
    """Authenticate, check method, Content-Type, concurrency and size, then read the body in time.

    What every ingest endpoint (``/audit``, ``/ingest/access``) does before its own work."""
    server = request.app[CONFIG].server
    _authenticate(request, state)
    if request.method != "POST":
        raise MethodNotAllowedError(f"method {request.method} is not allowed; use POST")
    if request.content_type not in content_types:
        raise UnsupportedMediaTypeError(type_error)
    if state.in_flight > server.max_concurrent_requests:
        raise OverloadedError(f"more than {server.max_concurrent_requests} requests in flight")
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"body is larger than the limit of {limit} bytes")
    try:
        async with asyncio.timeout(server.body_timeout_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise BodyTimeoutError(f"body not received within {server.body_timeout_s} s") from None
    except web.RequestPayloadError:  # e.g. Content-Encoding: deflate on a gzip stream
        raise UndecodableBodyError("body does not decode as its Content-Encoding says") from None
    except ConnectionResetError:  # also aiohttp's ClientConnectionResetError
        raise ClientGoneError("the client closed the connection before sending the whole body") from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body (decompressed, if it was sent gzipped), at most ``limit`` bytes.

    Chunks as the parser hands them over, joined once: ``request.read()`` grows a bytearray and
    copies it into bytes again, three copies of every 470 kB batch in the event loop's thread."""
    payload = request.content
    # As request.read() does: let the whole body buffer without pausing the socket (aiohttp 3.13+).
    # Not for a compressed body: the chunk size is also aiohttp's step of decompression, and a
    # 64 MiB step let a 1 MB gzip bomb cost 550 MB before the count below could stop it. At the
    # default step each readany() gives at most 64 KiB more, so the limit holds as it streams.
    raise_limits = getattr(payload, "set_read_chunk_size", None)
    if raise_limits is not None and request.headers.get("Content-Encoding", "identity") == "identity":
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


async def _receive_batch(request: web.Request, state: ServerState) -> web.Response:
    server = request.app[CONFIG].server
    body = await read_admitted_body(
        request, state, content_types=_JSON_TYPES, type_error="Content-Type must be application/json"
    )
    result = await request.app[RUNTIME].ingestor.ingest_body(
        body, received_at=utc_now(), max_events=server.max_events_per_request
    )
    request.app[METRICS].batches.inc()
    state.accepted_log.add(
        None,
        BatchSums(
            batches=1,
            events=result.events,
            matched=result.matched,
            records=len(result.records),
            duplicates=result.duplicates,
            dead_lettered=len(result.dead_letters),
        ),
    )
    return json_answer(
        {
            "accepted": result.events,
            "records": len(result.records),
            "duplicates": result.duplicates,
            "dead_lettered": len(result.dead_letters),
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return json_answer({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready or not (what probes read); sink and state detail only for a caller with credentials.

    Sink health details can name a sink's address ("syslog: cannot connect to host:514"), so
    a caller without the ``/audit`` credentials sees only whether each part is ok (or, with
    ``server.auth.protect_metrics``, only the status and the problems)."""
    runtime = request.app[RUNTIME]
    problems = runtime.problems()
    if request.app[STATE].stopping:
        problems["server"] = "shutting down"
    status, code = ("not ready", 503) if problems else ("ready", 200)
    body: dict[str, object] = {"status": status, **({"problems": problems} if problems else {})}
    trusted = _authenticated(request, request.app[STATE])
    if trusted or not request.app[CONFIG].server.auth.protect_metrics:
        sinks = await runtime.sink_status()
        # The state store is reported, not required: without it records are still written, undiffed.
        store = runtime.state
        detail = await store.problem()
        state_status: dict[str, Any] = {"store": store.name, "ok": detail is None, "detail": detail or ""}
        if not trusted:
            for part in (*sinks.values(), state_status):
                del part["detail"]
        body["sinks"] = sinks
        body["state"] = state_status
    return json_answer(body, code)


async def metrics(request: web.Request) -> web.Response:
    if request.app[CONFIG].server.auth.protect_metrics:
        try:
            _authenticate(request, request.app[STATE])
        except WebhookError as exc:
            request.app[METRICS].rejects.labels(reason=exc.code).inc()
            request.app[STATE].rejected_log.add((exc.code, exc.http_status), Rejections(requests=1))
            return rejection_response(exc)
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def _authenticate(request: web.Request, state: ServerState) -> None:
    """The ``/audit`` check: raises UnauthorizedError (401) or ForbiddenError (403)."""
    state.authenticator.authenticate(
        authorization=request.headers.get("Authorization"),
        peercert=request.transport.get_extra_info("peercert") if request.transport else None,
    )


def _authenticated(request: web.Request, state: ServerState) -> bool:
    try:
        _authenticate(request, state)
    except WebhookError:
        return False
    return True


@dataclass(slots=True)
class RunningServer:
    """A started server: its runner, bound addresses and TLS reloader (if serving TLS)."""

    runner: web.AppRunner
    addresses: list[tuple[str, int]]
    reloader: TlsReloader | None
    _watcher: asyncio.Task[None] | None

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, close the sinks."""
        if self._watcher is not None:
            self._watcher.cancel()
        await self.runner.cleanup()


async def start_server(config: Config) -> RunningServer:
    """Bind and serve ``config``; raises ConfigError when it cannot (bad TLS files, port in use)."""
    check_listen(config)
    server = config.server
    reloader = None
    files = tls_files_for(config)
    if files is not None and server.tls is not None:
        reloader = TlsReloader(files, interval_s=server.tls.reload_interval_s)
    elif not is_loopback(server.host):
        log.warning("server.insecure_http", host=server.host)
    if unauthenticated_tls(config):
        log.warning("server.unauthenticated", host=server.host)
    runner = web.AppRunner(
        create_app(config),
        access_log=None,
        handle_signals=False,
        keepalive_timeout=server.keepalive_timeout_s,
        shutdown_timeout=server.shutdown_timeout_s,
    )
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # what did start (the runtime, the listeners) is closed again
        raise
    app = runner.app
    harden_edges(runner, app[STATE].rejected_log, app[METRICS], reloader.context if reloader else None)
    # Accepts through the connection cap and the handshake and first-request timeouts.
    limits = ConnectionLimits(
        max_connections=server.max_connections,
        tls_handshake_timeout_s=server.tls_handshake_timeout_s,
        header_timeout_s=server.header_timeout_s,
    )
    raise_open_files_limit(server.max_connections)
    site = ListenerSite(
        runner,
        server.host,
        server.port,
        ssl_context=reloader.context if reloader else None,
        limits=limits,
        registry=app[METRICS].registry,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {server.host}:{server.port}: {exc.strerror}") from None
    addresses = [(str(a[0]), int(a[1])) for a in runner.addresses]
    watcher = asyncio.create_task(reloader.watch()) if reloader else None
    return RunningServer(runner=runner, addresses=addresses, reloader=reloader, _watcher=watcher)
