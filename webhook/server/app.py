"""The aiohttp app: the sources' routes (``POST /audit``, the webhook, and the others the config
enables: ``/ingest/access``, ``/firehose``, ``/pubsub``), ``/healthz``, ``/readyz``,
``/metrics``; and the sources that take their input themselves (the syslog listeners, the AKS
storage follower).

Each HTTP source is served through admission (webhook/server/admission.py) and one wrapper
(webhook/server/routes.py): every answer has a reason the sender's operator can act on, and a
JSON body ``{"error": <code>, "reason": <message>}``; nothing ever answers 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.access.service import AccessService
from webhook.config import Config, check_listen, shared_audit_files, unauthenticated_tls
from webhook.core.net import is_loopback
from webhook.errors import ConfigError, WebhookError
from webhook.metrics import Metrics
from webhook.runtime import Runtime
from webhook.server.admission import (
    STATE,
    ServerState,
    authenticate,
    authenticated,
    count_refusal,
    guarded,
    refusal_response,
)
from webhook.server.auth import Authenticator
from webhook.server.http_errors import harden_edges, json_answer, set_server_header
from webhook.server.listener import ConnectionLimits, ListenerSite, Watched, raise_open_files_limit
from webhook.server.routes import serve
from webhook.server.tls import TlsFiles, TlsReloader
from webhook.sources.access_http import ACCESS_PATH, AccessHttpSource
from webhook.sources.aks_settings import with_data_dir
from webhook.sources.base import HttpSource, StreamSource
from webhook.sources.firehose_http import FIREHOSE_PATH, FirehoseSource, load_keys
from webhook.sources.syslog import SyslogSource
from webhook.sources.webhook import AUDIT_PATH, WebhookSource

__all__ = [
    "CONFIG",
    "METRICS",
    "RUNTIME",
    "SOURCES",
    "RunningServer",
    "create_app",
    "http_sources",
    "mount",
    "start_server",
    "stream_sources",
]

log = structlog.get_logger(__name__)

# How to build a source from the open runtime (its ingestor, access service, writer).
Build = Callable[[Runtime], HttpSource]
BuildStream = Callable[[Runtime], StreamSource]

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
RUNTIME = web.AppKey("runtime", Runtime)
SOURCES = web.AppKey[dict[str, HttpSource]]("sources")  # by path, once started
_MOUNTS = web.AppKey[dict[str, Build]]("mounts")


def http_sources(config: Config) -> dict[str, Build]:
    """The HTTP sources ``config`` enables, by the path each is served at. A source is a line
    here, its module and its config section."""
    limit = config.server.max_events_per_request
    sources: dict[str, Build] = {
        AUDIT_PATH: lambda runtime: WebhookSource(runtime.ingestor, runtime.metrics, max_events=limit),
    }
    if config.access.enabled and config.access.http:
        sources[ACCESS_PATH] = lambda runtime: AccessHttpSource(
            _access(runtime), runtime.writer, max_lines=limit
        )
    if (firehose := config.sources.firehose) is not None:
        sources[FIREHOSE_PATH] = lambda runtime: FirehoseSource(
            load_keys(firehose), runtime.ingestor, runtime.writer, runtime.metrics
        )
    if (pubsub := config.sources.pubsub) is not None:
        module = _load("pubsub_http")  # PyJWT and the key fetcher, loaded only when configured
        sources[module.PUBSUB_PATH] = lambda runtime: module.PubsubSource(
            pubsub, runtime.ingestor, runtime.writer, runtime.metrics
        )
    return sources


def stream_sources(config: Config) -> list[BuildStream]:
    """The sources ``config`` enables that take their input themselves."""
    sources: list[BuildStream] = []
    access = config.access
    if access.enabled and (access.syslog.udp is not None or access.syslog.tcp is not None):
        sources.append(lambda runtime: SyslogSource(_access(runtime), access))
    if (aks := config.sources.aks) is not None:
        options = with_data_dir(aks, config.data_dir)
        module = _load("aks_source")  # Azure's storage SDK, loaded only when configured
        sources.append(
            lambda runtime: module.AksSource(options, runtime.ingestor, runtime.writer, runtime.metrics)
        )
    return sources


def _load(name: str) -> ModuleType:
    """A source module by name: the clients only some sources need (Azure's SDK, PyJWT) load
    when one is configured, as the sinks registry loads sink modules (about 15 MB at start)."""
    return importlib.import_module(f"webhook.sources.{name}")


def _access(runtime: Runtime) -> AccessService:
    if runtime.access is None:  # access.enabled is checked before its sources are built
        raise RuntimeError("the access service is not running")
    return runtime.access


def create_app(config: Config) -> web.Application:
    # admission enforces the limit with a 413 and a reason; client_max_size is aiohttp's own
    # stop for any handler that calls request.read() or request.post().
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[_MOUNTS] = {}
    # One context per resource: a start that fails half way closes what it opened.
    app.cleanup_ctx.append(_server_state)
    app.cleanup_ctx.append(_runtime)
    app.cleanup_ctx.append(_stream_sources)
    app.cleanup_ctx.append(_http_sources)
    app.on_response_prepare.append(_prepared)
    app.on_shutdown.append(_mark_stopping)
    for path, build in http_sources(config).items():
        mount(app, path, build)
    app.router.add_get("/healthz", guarded(healthz))
    app.router.add_get("/readyz", guarded(readyz))
    app.router.add_get("/metrics", guarded(metrics))
    return app


def mount(app: web.Application, path: str, build: Build) -> None:
    """Serve at ``path`` the source ``build`` makes once the runtime is open (before the app starts)."""
    app[_MOUNTS][path] = build

    async def handle(request: web.Request) -> web.Response:
        served = request.app
        return await serve(request, served[SOURCES][path], served[STATE], served[RUNTIME].writer)

    app.router.add_route("*", path, guarded(handle))


def authenticator_for(config: Config) -> Authenticator:
    """The request authenticator ``config`` describes; ``ConfigError`` for unusable token files."""
    return Authenticator.for_server(config.server)


def tls_files_for(config: Config) -> TlsFiles | None:
    """The serving certificate, key and client CA ``config`` names, if it serves HTTPS."""
    tls = config.server.tls
    if tls is None:
        return None
    return TlsFiles(cert_file=tls.cert_file, key_file=tls.key_file, client_ca_file=tls.client_ca_file)


async def _server_state(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[STATE] = state = ServerState(
        settings=config.server, authenticator=authenticator_for(config), metrics=app[METRICS]
    )
    poll = asyncio.create_task(_poll(state.authenticator, config))
    try:
        yield
    finally:
        poll.cancel()
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


async def _stream_sources(app: web.Application) -> AsyncIterator[None]:
    """Closed before the runtime: the access service summarizes a window nothing adds to."""
    runtime = app[RUNTIME]
    async with contextlib.AsyncExitStack() as started:
        for build in stream_sources(app[CONFIG]):
            source = build(runtime)
            started.push_async_callback(source.aclose)  # also after a start that failed half way
            await source.start()
        yield


async def _http_sources(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    app[SOURCES] = sources = {}
    async with contextlib.AsyncExitStack() as built:
        for path, build in app[_MOUNTS].items():
            sources[path] = source = build(runtime)
            built.push_async_callback(source.aclose)
        yield


async def _poll(authenticator: Authenticator, config: Config) -> None:
    """Re-read rotated token files (TLS files are watched by the serving side)."""
    interval = config.server.tls.reload_interval_s if config.server.tls else 10.0
    while authenticator.enabled:
        await asyncio.sleep(interval)
        await asyncio.to_thread(authenticator.reload_tokens)


async def _prepared(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``, one hook for every answer (each hook is a coroutine per answer)."""
    set_server_header(response)
    _answered(request, response)


def _answered(request: web.Request, response: web.StreamResponse) -> None:
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
    trusted = authenticated(request, request.app[STATE])
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
        state = request.app[STATE]
        try:
            authenticate(request, state)
        except WebhookError as exc:
            count_refusal(state, exc)
            return refusal_response(exc)
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


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
    # The workers start now rather than on the first large batch: a restarted server's first
    # batches (the backlog its senders kept) would otherwise be built in the event loop, and the
    # serve process would hold their modules and allocations (~11 MB of its peak) from then on.
    app[RUNTIME].prepare_pool.start_soon()
    addresses = [(str(a[0]), int(a[1])) for a in runner.addresses]
    watcher = asyncio.create_task(reloader.watch()) if reloader else None
    return RunningServer(runner=runner, addresses=addresses, reloader=reloader, _watcher=watcher)
