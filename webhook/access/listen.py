"""Syslog listeners for access logs: UDP (ingress-nginx ``enable-syslog``) and TCP (relays).

Syslog has no authentication and no acknowledgement: records of these inputs go to the spool
through the service's background writer, and what cannot be kept is counted as dropped.
Datagrams that arrive in one turn of the event loop are processed as one batch. A TCP stream
that loses its framing (a bad octet count) is closed; an overlong line is skipped and counted.
Connections beyond ``max_connections`` are closed at once; idle ones after ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from webhook.access.config import AccessConfig, check_syslog_listen, split_address
from webhook.access.pipeline import Line
from webhook.access.service import AccessService
from webhook.access.syslog import FrameError, SyslogDecoder, parse_syslog
from webhook.errors import ConfigError

__all__ = ["SyslogListeners", "start_syslog", "syslog_parser"]

log = structlog.get_logger(__name__)

_READ_BYTES: Final = 65536
_MAX_BATCH: Final = 2000


def syslog_parser(service: AccessService) -> Any:
    """The service's line parser behind syslog's header: a raw message in, an entry out."""
    parse = service.pipeline.parse

    def parse_message(data: Line) -> Any:
        if not isinstance(data, bytes):
            return parse(data)
        return parse(parse_syslog(data, received=datetime.now(UTC)).message)

    return parse_message


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: AccessService) -> None:
        self._service = service
        self._parse = syslog_parser(service)
        self._batch: list[Line] = []
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self._batch:
            self._loop.call_soon(self._drain)
        self._batch.append(data)
        if len(self._batch) >= _MAX_BATCH:
            self._drain()

    def _drain(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._service.submit(batch, input="syslog-udp", parser=self._parse)

    def error_received(self, exc: Exception) -> None:
        log.warning("access.syslog_udp_error", error=type(exc).__name__)


@dataclass(slots=True)
class SyslogListeners:
    """The bound sockets; ``addresses`` maps ``udp``/``tcp`` to (host, port)."""

    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

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


async def start_syslog(service: AccessService, config: AccessConfig) -> SyslogListeners:
    """Bind the configured listeners; raises ConfigError when an address cannot be used."""
    check_syslog_listen(config)
    listeners = SyslogListeners()
    loop = asyncio.get_running_loop()
    try:
        if config.syslog.udp is not None:
            host, port = split_address(config.syslog.udp)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(service), local_addr=(host, port))
            listeners._udp = transport
            bound = transport.get_extra_info("sockname")
            listeners.addresses["udp"] = (str(bound[0]), int(bound[1]))
        if config.syslog.tcp is not None:
            host, port = split_address(config.syslog.tcp)
            listeners._tcp = await asyncio.start_server(
                lambda r, w: _connection(service, config, listeners, r, w),
                host,
                port,
                reuse_address=True,
            )
            bound = listeners._tcp.sockets[0].getsockname()
            listeners.addresses["tcp"] = (str(bound[0]), int(bound[1]))
    except OSError as exc:
        await listeners.aclose()
        raise ConfigError(f"cannot listen for syslog: {exc.strerror}") from None
    log.info("access.syslog_listening", **{k: f"{h}:{p}" for k, (h, p) in listeners.addresses.items()})
    return listeners


async def _connection(
    service: AccessService,
    config: AccessConfig,
    listeners: SyslogListeners,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - a handler always runs in a task
    gauge = service.metrics.access_syslog_connections
    if len(listeners._connections) >= config.syslog.max_connections:
        service.metrics.access_dropped.labels(reason="too-many-connections").inc()
        writer.close()
        return
    listeners._connections.add(task)
    gauge.inc()
    peer = writer.get_extra_info("peername")
    where = f"from {peer[0]}" if isinstance(peer, tuple) else ""
    decoder = SyslogDecoder(max_message_bytes=config.max_line_bytes + 1024)
    parse = syslog_parser(service)
    try:
        while True:
            try:
                async with asyncio.timeout(config.syslog.idle_timeout_s):
                    data = await reader.read(_READ_BYTES)
            except TimeoutError:
                break
            if not data:
                break
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
                service.submit(frames, input="syslog-tcp", parser=parse, where=where)
            if fatal:
                log.warning("access.syslog_stream_closed", reason="framing")
                break
    except (ConnectionError, OSError):
        pass
    finally:
        listeners._connections.discard(task)
        gauge.dec()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
