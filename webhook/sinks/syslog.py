"""Records as RFC 5424 syslog messages: TCP with octet counting (RFC 6587), TLS (RFC 5425), UDP.

Syslog has no acknowledgement: over TCP and TLS a batch counts as delivered once the kernel
took it, so a connection that breaks right after a write can lose that batch; UDP is lossy and
unconfirmed, and truncates each message to ``max_message_bytes``. The key fields travel as
structured data, the whole record as the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from webhook.errors import ConfigError, SinkError
from webhook.record.line import ALERT, RecordLine
from webhook.sinks import SinkType
from webhook.sinks._tls import ClientTls, client_context, parse_client_tls
from webhook.sinks.base import Health, SinkSettings

__all__ = ["FACILITIES", "SyslogOptions", "SyslogSink", "SyslogTls", "format_message", "severity_of"]

log = structlog.get_logger(__name__)

FACILITIES: Final = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
    "clock": 15, **{f"local{n}": 16 + n for n in range(8)},
}  # fmt: skip
CRITICAL: Final = 2
ERROR: Final = 3
WARNING: Final = 4
NOTICE: Final = 5
INFO: Final = 6
APP_NAME: Final = "ingress-audit"
_DEFAULT_PORTS: Final = {"tcp": 514, "udp": 514, "tls": 6514}
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
_NOT_PRINTABLE: Final = re.compile(r"[^!-~]")

Transport = Literal["tcp", "tls", "udp"]


SyslogTls = ClientTls  # the shared client TLS options (webhook/sinks/_tls.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogOptions:
    host: str
    port: int | None = None  # None: 514 for tcp and udp, 6514 for tls
    transport: Transport = "tcp"
    facility: str = "local0"
    hostname: str | None = None  # None: this machine's (the pod's) host name
    sd_id: str = "audit@32473"  # 32473 is the example enterprise number of RFC 5612
    max_message_bytes: int = 2048  # UDP only: longer messages are truncated
    tls: SyslogTls | None = None
    connect_timeout_s: float = 5.0
    write_timeout_s: float = 10.0


# -- the message -------------------------------------------------------------------------------


_ALERT_SEVERITIES: Final = {
    "critical": CRITICAL,
    "high": ERROR,
    "medium": WARNING,
    "low": NOTICE,
    "info": INFO,
}


def severity_of(record: Mapping[str, Any]) -> int:
    """warning for a high or critical finding; notice for a 401/403 or a medium finding; else info.

    A firing alert maps its own severity (critical 2, high 3, medium 4, low 5, info 6); a
    resolved one is info."""
    if record.get("type") == ALERT:
        if record.get("status") != "firing":
            return INFO
        return _ALERT_SEVERITIES.get(str(record.get("severity")), WARNING)
    findings = [f for f in record.get("findings") or () if isinstance(f, Mapping)]
    severities = {str(f.get("severity", "")).lower() for f in findings}
    if severities & {"high", "critical"}:
        return WARNING
    code = (record.get("outcome") or {}).get("code")
    if code in (401, 403) or "medium" in severities:
        return NOTICE
    return INFO


def _get(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _param_value(value: object) -> str:
    """RFC 5424 section 6.3.3: escape '"', '\\' and ']' inside PARAM-VALUE."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _structured_data(record: Mapping[str, Any], sd_id: str) -> str:
    findings = [f.get("id") for f in record.get("findings") or () if isinstance(f, Mapping)]
    params = {
        "verb": record.get("verb"),
        "resource": _get(record, "object", "resource"),
        "subresource": _get(record, "object", "subresource"),
        "namespace": _get(record, "object", "namespace") or record.get("namespace"),
        "name": _get(record, "object", "name"),
        "user": _get(record, "actor", "user", "username") or _get(record, "actor", "username"),
        "impersonated": _get(record, "actor", "impersonated", "username"),
        "code": _get(record, "outcome", "code"),
        "decision": _get(record, "outcome", "decision"),
        "findings": ",".join(str(f) for f in findings if f) or None,
        "cluster": record.get("cluster"),
        "id": record.get("id"),
        "detection": record.get("detection"),  # alert records only, as the next three
        "severity": record.get("severity"),
        "status": record.get("status"),
        "fingerprint": record.get("fingerprint"),
    }
    pairs = "".join(f' {key}="{_param_value(value)}"' for key, value in params.items() if value is not None)
    return f"[{sd_id}{pairs}]"


def _timestamp(record: Mapping[str, Any]) -> str:
    for key in ("time", "received_at"):
        value = record.get(key)
        if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
            return value
    return "-"


def format_message(record: RecordLine, *, facility: int, hostname: str, sd_id: str) -> bytes:
    """One RFC 5424 message (no framing): the key fields as structured data, the record as MSG."""
    doc = record.record
    pri = facility * 8 + severity_of(doc)
    msgid = _NOT_PRINTABLE.sub("_", record.type or "-")[:32]
    header = f"<{pri}>1 {_timestamp(doc)} {hostname} {APP_NAME} - {msgid} {_structured_data(doc, sd_id)} "
    return header.encode("utf-8", "replace") + record.json


def _frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the length, a space, the message."""
    return b"%d %s" % (len(message), message)


def _truncate(message: bytes, limit: int) -> bytes:
    """Cut at ``limit`` bytes without splitting a UTF-8 sequence."""
    if len(message) <= limit:
        return message
    return message[:limit].decode("utf-8", "ignore").encode("utf-8")


def _hostname(configured: str | None) -> str:
    name = _NOT_PRINTABLE.sub("_", configured or socket.gethostname())[:255]
    return name or "-"


# -- the sink ----------------------------------------------------------------------------------


class SyslogSink:
    def __init__(self, name: str, options: SyslogOptions) -> None:
        self.name = name
        self.options = options
        self.port = options.port or _DEFAULT_PORTS[options.transport]
        self._facility = FACILITIES[options.facility]
        self._hostname = _hostname(options.hostname)
        self._ssl: ssl.SSLContext | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._udp: socket.socket | None = None

    async def open(self) -> None:
        if self.options.transport == "tls":
            try:
                self._ssl = await asyncio.to_thread(client_context, self.options.tls or SyslogTls())
            except (OSError, ssl.SSLError) as exc:
                raise SinkError(f"syslog: cannot load the TLS files: {type(exc).__name__}") from None
        if self.options.transport == "udp":
            await self._udp_socket()
        else:
            await self._connection()

    async def send(self, batch: Sequence[RecordLine]) -> None:
        messages = [
            format_message(r, facility=self._facility, hostname=self._hostname, sd_id=self.options.sd_id)
            for r in batch
        ]
        if self.options.transport == "udp":
            await self._send_udp(messages)
            return
        writer = await self._connection()
        try:
            writer.write(b"".join(_frame(m) for m in messages))
            async with asyncio.timeout(self.options.write_timeout_s):
                await writer.drain()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            await self._disconnect()
            raise SinkError(f"syslog: write to {self._target} failed: {type(exc).__name__}") from None

    async def health(self) -> Health:
        """A fresh connection (and TLS handshake); for UDP only that the address resolves."""
        try:
            if self.options.transport == "udp":
                await self._resolve(socket.SOCK_DGRAM)
                return Health(ok=True, detail="udp: unconfirmed")
            _, writer = await self._connect()
        except SinkError as exc:
            return Health(ok=False, detail=exc.message)
        await _close(writer)
        return Health(ok=True)

    async def aclose(self) -> None:
        await self._disconnect()
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # -- connections ---------------------------------------------------------------------------

    @property
    def _target(self) -> str:
        return f"{self.options.transport}://{self.options.host}:{self.port}"

    async def _connection(self) -> asyncio.StreamWriter:
        """The open connection, or a new one if the server closed it (reconnect on failure)."""
        await asyncio.sleep(0)  # let a pending end-of-file from the server be read first
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or writer.is_closing() or reader.at_eof():
            await self._disconnect()
            self._reader, self._writer = reader, writer = await self._connect()
        return writer

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = self.options.tls or SyslogTls()
        try:
            async with asyncio.timeout(self.options.connect_timeout_s):
                return await asyncio.open_connection(
                    self.options.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=(tls.server_name or self.options.host) if self._ssl else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise SinkError(f"syslog: cannot connect to {self._target}: {type(exc).__name__}") from None

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            await _close(writer)

    async def _resolve(self, kind: socket.SocketKind) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.options.host, self.port, type=kind)
        except OSError as exc:
            raise SinkError(f"syslog: cannot resolve {self._target}: {type(exc).__name__}") from None
        return infos[0]

    async def _udp_socket(self) -> socket.socket:
        if self._udp is None:
            family, kind, proto, _, address = await self._resolve(socket.SOCK_DGRAM)
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                sock.connect(address)  # a UDP connect only sets the peer: never blocks
            except OSError as exc:
                sock.close()
                raise SinkError(f"syslog: cannot reach {self._target}: {type(exc).__name__}") from None
            self._udp = sock
        return self._udp

    async def _send_udp(self, messages: Sequence[bytes]) -> None:
        sock = await self._udp_socket()
        loop = asyncio.get_running_loop()
        limit = self.options.max_message_bytes
        try:
            for message in messages:
                await loop.sock_sendall(sock, _truncate(message, limit))
        except OSError as exc:  # e.g. ECONNREFUSED: an earlier datagram found nobody listening
            sock.close()
            self._udp = None
            raise SinkError(f"syslog: send to {self._target} failed: {type(exc).__name__}") from None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(2.0):
            await writer.wait_closed()


# -- options -----------------------------------------------------------------------------------


def _parse(raw: Mapping[str, Any]) -> SyslogOptions:
    options = dict(raw)
    tls = options.pop("tls", None)
    transport = options.get("transport", "tcp")
    if tls is not None and transport != "tls":
        raise ConfigError("syslog sink is not valid", ("$.tls: requires transport: tls",))
    if tls is not None:
        if ("cert_file" in tls) != ("key_file" in tls):
            raise ConfigError("syslog sink is not valid", ("$.tls: cert_file and key_file go together",))
        options["tls"] = parse_client_tls(tls)
    return SyslogOptions(**options)


def _build(settings: SinkSettings, data_dir: Path) -> SyslogSink:
    return SyslogSink(settings.name, settings.options)


_FILE: Final = {"type": "string", "minLength": 1}

SINK_TYPE = SinkType(
    name="syslog",
    description="RFC 5424 messages over TCP (octet counting), TLS or UDP (lossy)",
    properties={
        "host": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "transport": {"enum": ["tcp", "tls", "udp"]},
        "facility": {"enum": sorted(FACILITIES)},
        "hostname": {"type": "string", "pattern": "^[!-~]{1,255}$"},
        "sd_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,20}@[0-9]{1,10}$"},
        "max_message_bytes": {"type": "integer", "minimum": 480, "maximum": 65507},
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "write_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "tls": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ca_file": _FILE,
                "cert_file": _FILE,
                "key_file": _FILE,
                "server_name": {"type": "string", "minLength": 1},
            },
        },
    },
    required=("host",),
    parse=_parse,
    build=_build,
    batch_defaults={"timeout_s": 0.0, "min_interval_s": 0.1},
)
