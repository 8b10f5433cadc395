"""The webhook port's accept loop: memory stays bounded before any request is authenticated.

Every accepted connection costs memory before it sends a byte (asyncio's TLS layer allocated a
256 KiB read buffer each: 4,500 idle connections were enough to have the pod OOM-killed). So the
connections open at once are capped (``server.max_connections``), a TLS handshake must finish
within ``server.tls_handshake_timeout_s``, and a new connection must send its first request head
within ``server.header_timeout_s``. At the cap a new connection displaces the oldest one that has
not sent a request yet: idle hoarders lose their place to a client ready to talk, such as the
apiserver. When every open connection has sent a request, the new one is closed at once.

asyncio's own server could not do this: it starts a TLS handshake, buffer included, for every
connection it accepts, and hands the connection over only once the handshake is done.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import ssl
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ConnectionLimits", "ListenerSite", "Watched", "raise_open_files_limit"]

log = structlog.get_logger(__name__)

_HEAD_END: Final = b"\r\n\r\n"
_ACCEPT_PAUSE_S: Final = 1.0  # out of descriptors or memory: as asyncio's server, retry later
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SPARE_FILES: Final = 256  # the spool, sinks, state store and workers' pipes
# Accepts per wake-up: between batches the loop reads what the open connections sent, so a client
# midway through its handshake is not displaced by a thousand connections accepted in one go.
_ACCEPTS_PER_WAKEUP: Final = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    max_connections: int
    tls_handshake_timeout_s: float
    header_timeout_s: float
    backlog: int = (
        1024  # the kernel queues a burst of connects cheaply; a full queue drops SYNs (1 s retries)
    )


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "ingress_audit_connections_open",
            "Connections open on the webhook port, TLS handshakes included.",
            registry=registry,
        )
        self.closed = Counter(
            "ingress_audit_connections_closed",
            "Connections the server closed early, by reason: refused (at the cap, none to "
            "displace), displaced, header-timeout, handshake-timeout, handshake-failed.",
            ["reason"],
            registry=registry,
        )
        for reason in ("refused", "displaced", "header-timeout", "handshake-timeout", "handshake-failed"):
            self.closed.labels(reason=reason)


class _Connection:
    """One accepted connection, from accept to close."""

    __slots__ = ("closed", "has_head", "tail", "timer", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None  # the socket's, under TLS too
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, until the first request head has ended
        self.has_head = False
        self.closed = False


class _Gate:
    """What every listening socket shares: the count, the cap, the connections yet to talk."""

    def __init__(self, limits: ConnectionLimits, metrics: _Metrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.open = 0
        self.waiting: dict[_Connection, None] = {}  # no request head yet, oldest first

    def admit(self) -> _Connection | None:
        if self.open >= self.limits.max_connections and not self._displace():
            self.metrics.closed.labels(reason="refused").inc()
            return None
        self.open += 1
        self.metrics.open.set(self.open)
        return _Connection()

    def _displace(self) -> bool:
        for conn in self.waiting:
            if conn.transport is not None:
                self.metrics.closed.labels(reason="displaced").inc()
                self.close(conn)
                return True
        return False

    def ready(self, conn: _Connection) -> None:
        """HTTP can start (TLS is up): the first request head is due within the timeout."""
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(self.limits.header_timeout_s, self._head_timeout, conn)

    def received(self, conn: _Connection, data: bytes) -> None:
        # The end of the head may straddle two reads; only its 3 bytes are carried over, so a
        # read (a whole batch, often) is searched in place and never copied.
        if _HEAD_END in data or _HEAD_END in conn.tail + data[:3]:
            conn.has_head = True
            conn.tail = b""
            self.waiting.pop(conn, None)
            if conn.timer is not None:
                conn.timer.cancel()
        else:
            conn.tail = (conn.tail + data)[-3:] if len(data) < 3 else data[-3:]

    def answered(self, conn: _Connection) -> None:
        """A request was answered: idle on keep-alive, the connection may be displaced again."""
        if conn.closed or conn.transport is None:
            return
        conn.has_head = False
        conn.tail = b""
        self.waiting.pop(conn, None)
        self.waiting[conn] = None  # the newest waiting

    def _head_timeout(self, conn: _Connection) -> None:
        if not conn.has_head and not conn.closed:
            self.metrics.closed.labels(reason="header-timeout").inc()
            self.close(conn)

    def close(self, conn: _Connection) -> None:
        self.waiting.pop(conn, None)
        if conn.transport is not None:
            conn.transport.abort()  # type: ignore[attr-defined]  # a socket transport
        self.lost(conn)

    def lost(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.waiting.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        self.open -= 1
        self.metrics.open.set(self.open)

    def handshake_done(self, conn: _Connection, waiter: asyncio.Future[None]) -> None:
        exc = None if waiter.cancelled() else waiter.exception()
        if isinstance(exc, ConnectionAbortedError):  # asyncio's ssl_handshake_timeout
            self.metrics.closed.labels(reason="handshake-timeout").inc()
        elif isinstance(exc, ssl.SSLError):
            self.metrics.closed.labels(reason="handshake-failed").inc()


class Watched(asyncio.Protocol):
    """aiohttp's protocol for one connection, watched for request heads: until one is in, and
    again once its answer is out (``answered``), the connection may be displaced."""

    def __init__(self, inner: asyncio.Protocol, conn: _Connection, gate: _Gate) -> None:
        self._inner = inner
        self._conn = conn
        self._gate = gate

    def answered(self) -> None:
        self._gate.answered(self._conn)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._gate.ready(self._conn)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._conn.has_head:
            self._gate.received(self._conn, data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.lost(self._conn)
        self._inner.connection_lost(exc)


class _TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer (two TLS records) instead of 256 KiB."""

    max_size = 32 * 1024

    def __init__(self, *args: Any, on_lost: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._on_lost()


class _Listener(asyncio.AbstractServer):
    """Accepts on one listening socket and hands each connection to aiohttp through the gate."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        *,
        ssl_context: ssl.SSLContext | None,
        gate: _Gate,
    ) -> None:
        self._sock = sock
        self._factory = factory
        self._ssl = ssl_context
        self._gate = gate
        self._loop = asyncio.get_running_loop()
        self._serving = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock.fileno() < 0 else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Event().wait()

    def close(self) -> None:
        if self._serving:
            self._loop.remove_reader(self._sock.fileno())
        self._serving = False
        self._sock.close()
        for conn in list(self._gate.waiting):  # no request yet: nothing to finish
            self._gate.close(conn)

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.warning("server.accept_paused", error=errno.errorcode.get(exc.errno or 0, "?"))
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(_ACCEPT_PAUSE_S, self._resume)
                    return
                continue  # that one connection is gone already (ECONNABORTED)
            conn = self._gate.admit()
            if conn is None:
                sock.close()
                continue
            task = self._loop.create_task(self._connect(conn, sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self) -> None:
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, conn: _Connection, sock: socket.socket) -> None:
        gate = self._gate
        watched = Watched(self._factory(), conn, gate)
        protocol: asyncio.BaseProtocol = watched
        if self._ssl is not None:
            waiter = self._loop.create_future()
            waiter.add_done_callback(partial(gate.handshake_done, conn))
            protocol = _TlsProtocol(
                self._loop,
                watched,
                self._ssl,
                waiter,
                server_side=True,
                ssl_handshake_timeout=gate.limits.tls_handshake_timeout_s,
                on_lost=partial(gate.lost, conn),
            )
        try:
            transport, _ = await self._loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:  # reset before it could start
            sock.close()
            gate.lost(conn)
            return
        except Exception as exc:  # noqa: BLE001 - the edge of one connection's task: log, close
            log.warning("server.connection_failed", error=type(exc).__name__)
            sock.close()
            gate.lost(conn)
            return
        conn.transport = transport
        if conn.closed:
            transport.abort()
        elif not conn.has_head:
            gate.waiting[conn] = None


class ListenerSite(web.BaseSite):
    """aiohttp's TCPSite, but accepting through ``_Listener`` (one per address ``host`` has)."""

    __slots__ = ("_gate", "_host", "_listeners", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        limits: ConnectionLimits,
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=limits.backlog)
        self._host = host
        self._port = port
        self._gate = _Gate(limits, _Metrics(registry))
        self._listeners: list[_Listener] = []

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    @property
    def listeners(self) -> list[asyncio.AbstractServer]:
        return list(self._listeners)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("runner.setup() comes before site.start()")
        sockets = _bind(self._host, self._port, self._backlog)
        for sock in sockets:
            listener = _Listener(sock, server, ssl_context=self._ssl_context, gate=self._gate)
            await listener.start_serving()
            self._listeners.append(listener)
        self._server = _Group(self._listeners)


class _Group(asyncio.AbstractServer):
    """The site's listeners as the one server aiohttp's runner expects (close, sockets)."""

    def __init__(self, listeners: list[_Listener]) -> None:
        self._listeners = listeners

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(sock for listener in self._listeners for sock in listener.sockets)

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._listeners[0].get_loop()

    def is_serving(self) -> bool:
        return any(listener.is_serving() for listener in self._listeners)

    async def start_serving(self) -> None:
        for listener in self._listeners:
            await listener.start_serving()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Event().wait()

    async def wait_closed(self) -> None:
        for listener in self._listeners:
            await listener.wait_closed()


def _bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for each address of ``host``, as ``loop.create_server`` binds them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def raise_open_files_limit(max_connections: int) -> None:
    """Let the soft RLIMIT_NOFILE reach the cap (and some spare), up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if ceiling > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
