"""Syslog listeners for access logs: UDP (ingress-nginx ``enable-syslog``) and TCP (relays).

Syslog has no authentication and no acknowledgement: records of these inputs go to the spool
through the service's background writer, and what cannot be kept is counted as dropped.
Datagrams that arrive in one turn of the event loop are processed as one batch. A TCP stream
that loses its framing (a bad octet count) is closed; an overlong line is skipped and counted.
Each peer (UDP source address, TCP peer address) has a token bucket (``rate_limit``): lines
beyond it are dropped before parsing and counted, so one flooder cannot crowd out the others.
Idle connections are closed after ``idle_timeout_s``. At ``max_connections``, a new connection
takes the place of the one idle longest (idle for ``EVICT_IDLE_S`` at least), so idle holders
cannot lock relays out; when every connection is busy, the new one is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from webhook.access.pipeline import Line
from webhook.access.service import AccessService
from webhook.access.settings import AccessConfig, check_syslog_listen
from webhook.core.net import split_address
from webhook.errors import ConfigError
from webhook.sources.ratelimit import PeerLimiter
from webhook.sources.syslog_frames import FrameError, SyslogDecoder, parse_syslog

__all__ = ["EVICT_IDLE_S", "SyslogSource", "syslog_parser"]

log = structlog.get_logger(__name__)

_READ_BYTES: Final = 65536
_MAX_BATCH: Final = 2000
EVICT_IDLE_S: Final = 1.0  # a connection this idle may give its place to a new one
_RATE_LIMITED: Final = "rate-limited"


def syslog_parser(service: AccessService) -> Any:
    """The service's line parser behind syslog's header: a raw message in, an entry out."""
    parse = service.pipeline.parse

    def parse_message(data: Line) -> Any:
        if not isinstance(data, bytes):
            return parse(data)
        return parse(parse_syslog(data, received=datetime.now(UTC)).message)

    return parse_message


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: AccessService, limiter: PeerLimiter) -> None:
        self._service = service
        self._parse = syslog_parser(service)
        self._limiter = limiter
        self._batch: list[Line] = []
        self._dropped = 0
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)
        if not self._limiter.admit(str(addr[0]) if isinstance(addr, tuple) else "", 1):
            self._dropped += 1
            return
        self._batch.append(data)
        if len(self._batch) >= _MAX_BATCH:
            self._drain()

    def _drain(self) -> None:
        self._scheduled = False
        batch, self._batch = self._batch, []
        if self._dropped:
            dropped = self._service.metrics.access_lines_dropped
            dropped.labels(input="syslog-udp", reason=_RATE_LIMITED).inc(self._dropped)
            self._dropped = 0
        if batch:
            self._service.submit(batch, input="syslog-udp", parser=self._parse)

    def error_received(self, exc: Exception) -> None:
        log.warning("access.syslog_udp_error", error=type(exc).__name__)


class SyslogSource:
    """The configured listeners, as one source; ``addresses`` maps ``udp``/``tcp`` to (host, port)
    once started."""

    name: str = "syslog"

    def __init__(self, service: AccessService, config: AccessConfig) -> None:
        self._service = service
        self._config = config
        self.addresses: dict[str, tuple[str, int]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], float] = {}  # -> last read

    async def start(self) -> None:
        """Bind the configured listeners; raises ConfigError when an address cannot be used."""
        config, service = self._config, self._service
        check_syslog_listen(config)
        loop = asyncio.get_running_loop()
        for label in ("syslog-udp", "syslog-tcp"):  # at 0 from the start, for increase()
            service.metrics.access_lines_dropped.labels(input=label, reason=_RATE_LIMITED)
        udp_limiter = PeerLimiter(config.syslog.rate_limit, input="syslog-udp")
        tcp_limiter = PeerLimiter(config.syslog.rate_limit, input="syslog-tcp")
        try:
            if config.syslog.udp is not None:
                host, port = split_address(config.syslog.udp)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(service, udp_limiter), local_addr=(host, port)
                )
                self._udp = transport
                bound = transport.get_extra_info("sockname")
                self.addresses["udp"] = (str(bound[0]), int(bound[1]))
            if config.syslog.tcp is not None:
                host, port = split_address(config.syslog.tcp)
                self._tcp = await asyncio.start_server(
                    lambda r, w: _connection(service, config, self, tcp_limiter, r, w),
                    host,
                    port,
                    reuse_address=True,
                )
                bound = self._tcp.sockets[0].getsockname()
                self.addresses["tcp"] = (str(bound[0]), int(bound[1]))
        except OSError as exc:
            await self.aclose()
            raise ConfigError(f"cannot listen for syslog: {exc.strerror}") from None
        log.info("access.syslog_listening", **{k: f"{h}:{p}" for k, (h, p) in self.addresses.items()})

    def _idlest(self, now: float) -> asyncio.Task[None] | None:
        """The connection idle longest, if idle for EVICT_IDLE_S at least."""
        if not self._connections:
            return None
        task, last = min(self._connections.items(), key=lambda item: item[1])
        return task if now - last >= EVICT_IDLE_S else None

    async def aclose(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()


async def _connection(
    service: AccessService,
    config: AccessConfig,
    listeners: SyslogSource,
    limiter: PeerLimiter,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - a handler always runs in a task
    gauge = service.metrics.access_syslog_connections
    closed = service.metrics.access_syslog_closed
    loop = asyncio.get_running_loop()
    if len(listeners._connections) >= config.syslog.max_connections:
        victim = listeners._idlest(loop.time())
        if victim is None:
            service.metrics.access_dropped.labels(reason="too-many-connections").inc()
            closed.labels(reason="too-many-connections").inc()
            writer.close()
            return
        del listeners._connections[victim]
        victim.cancel()
        closed.labels(reason="evicted-idle").inc()
    listeners._connections[task] = loop.time()
    gauge.inc()
    peer = writer.get_extra_info("peername")
    host = str(peer[0]) if isinstance(peer, tuple) else ""
    where = f"from {host}" if host else ""
    decoder = SyslogDecoder(max_message_bytes=config.max_line_bytes + 1024)
    parse = syslog_parser(service)
    dropped = service.metrics.access_lines_dropped.labels(input="syslog-tcp", reason=_RATE_LIMITED)
    try:
        while True:
            try:
                async with asyncio.timeout(config.syslog.idle_timeout_s):
                    data = await reader.read(_READ_BYTES)
            except TimeoutError:
                closed.labels(reason="idle-timeout").inc()
                break
            if not data:
                break
            if task in listeners._connections:
                listeners._connections[task] = loop.time()
            decoder.feed(data)
            frames: list[Line] = []
            fatal = False
            while True:
                try:
                    frame = decoder.next_frame()
                except FrameError as exc:
                    service.count_unparsed("syslog-tcp", exc.reason)
                    if not exc.recoverable:
                        fatal = True
                        break
                    continue
                if frame is None:
                    break
                frames.append(frame)
            if frames:
                allowed = limiter.admit(host, len(frames))
                if allowed < len(frames):
                    dropped.inc(len(frames) - allowed)
                    del frames[allowed:]
            if frames:
                service.submit(frames, input="syslog-tcp", parser=parse, where=where)
            if fatal:
                closed.labels(reason="framing").inc()
                log.warning("access.syslog_stream_closed", reason="framing")
                break
    except (ConnectionError, OSError):
        pass
    finally:
        listeners._connections.pop(task, None)
        gauge.dec()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
