"""Records as NATS JetStream messages, for users who fan them out to other consumers.

Every publish waits for the stream's acknowledgement (PubAck) before the batch counts as
delivered. The message id (``Nats-Msg-Id``) is the record id, so the server drops a
redelivered record within the stream's duplicate window; consumers can dedupe on it beyond.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog

from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.record.line import RecordLine
from webhook.sinks import SinkType
from webhook.sinks._tls import ClientTls, client_context, parse_client_tls
from webhook.sinks.base import Health, SinkSettings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = ["NatsOptions", "NatsSink", "NatsTls", "StreamOptions", "subject_of"]

log = structlog.get_logger(__name__)

SUBJECT_FIELDS: Final = frozenset({"cluster", "type", "verb", "resource", "namespace"})
_TOKEN_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_SUBJECT_LITERAL: Final = re.compile(r"[A-Za-z0-9_.-]*")
_STREAM_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
# JetStream API error codes that no retry will fix: the message is larger than the stream allows.
_REFUSED_CODES: Final = frozenset({10054})


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOptions:
    """The stream to create when it is missing (an existing stream is never changed)."""

    name: str
    subjects: tuple[str, ...]
    duplicate_window_s: float = 120.0
    max_age_s: float | None = None
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1


NatsTls = ClientTls  # the shared client TLS options (webhook/sinks/_tls.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsOptions:
    subject: str  # e.g. "ingress-audit.{cluster}.{resource}"
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str | None = None  # publish only if the subject lands in this stream
    create_stream: StreamOptions | None = None
    user: str | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls: NatsTls | None = None
    connect_timeout_s: float = 5.0
    ack_timeout_s: float = 10.0

    @property
    def expected_stream(self) -> str | None:
        return self.stream or (self.create_stream.name if self.create_stream else None)


def subject_of(template: str, record: Mapping[str, Any]) -> str:
    """The template with each field made a safe subject token ('_' when empty)."""
    obj = record.get("object") if isinstance(record.get("object"), Mapping) else {}
    values = {
        "cluster": record.get("cluster"),
        "type": record.get("type"),
        "verb": record.get("verb"),
        "resource": obj.get("resource") if obj else None,
        "namespace": obj.get("namespace") if obj else None,
    }
    return template.format_map({k: _TOKEN_UNSAFE.sub("_", str(v)) if v else "_" for k, v in values.items()})


def _read_secret(path: Path) -> str:
    return path.read_text("utf-8").strip()


class NatsSink:
    def __init__(self, name: str, options: NatsOptions) -> None:
        self.name = name
        self.options = options
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._last_error: str | None = None  # what the client last reported, for the messages

    async def open(self) -> None:
        import nats.errors
        from nats.aio.client import Client

        try:
            kwargs = await asyncio.to_thread(self._credentials)
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"nats: cannot read a credentials or TLS file: {type(exc).__name__}") from None
        nc = Client()
        self._last_error = None
        try:
            async with asyncio.timeout(self.options.connect_timeout_s):  # it retries until then
                await nc.connect(
                    servers=list(self.options.servers),
                    connect_timeout=self.options.connect_timeout_s,  # type: ignore[arg-type]
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **kwargs,
                )
            js = nc.jetstream(timeout=self.options.ack_timeout_s)
            if self.options.create_stream is not None:
                await self._ensure_stream(js, self.options.create_stream)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await nc.close()
            reason = self._last_error if isinstance(exc, TimeoutError) and self._last_error else None
            raise SinkError(f"nats: cannot connect: {reason or _describe(exc)}") from None
        self._nc, self._js = nc, js

    def _credentials(self) -> dict[str, Any]:
        """Connection arguments from the files (worker thread); never logged."""
        options = self.options
        kwargs: dict[str, Any] = {}
        if options.user is not None:
            kwargs["user"] = options.user
            if options.password_file is not None:
                kwargs["password"] = _read_secret(options.password_file)
        if options.token_file is not None:
            kwargs["token"] = _read_secret(options.token_file)
        if options.nkey_seed_file is not None:
            kwargs["nkeys_seed_str"] = _read_secret(options.nkey_seed_file)
        if options.creds_file is not None:
            _read_secret(options.creds_file)  # fail here, readably, if it cannot be read
            kwargs["user_credentials"] = str(options.creds_file)
        if options.tls is not None:
            kwargs["tls"] = client_context(options.tls)
            if options.tls.server_name:
                kwargs["tls_hostname"] = options.tls.server_name
        return kwargs

    async def _ensure_stream(self, js: JetStreamContext, stream: StreamOptions) -> None:
        import nats.js.errors
        from nats.js.api import StorageType, StreamConfig

        try:
            await js.stream_info(stream.name)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = StreamConfig(
            name=stream.name,
            subjects=list(stream.subjects),
            duplicate_window=stream.duplicate_window_s,
            max_age=stream.max_age_s,
            storage=StorageType.FILE if stream.storage == "file" else StorageType.MEMORY,
            num_replicas=stream.replicas,
        )
        try:
            await js.add_stream(config)
            log.info("nats.stream_created", sink=self.name, stream=stream.name)
        except nats.js.errors.BadRequestError:
            await js.stream_info(stream.name)  # another replica was faster: fine if it exists now

    async def send(self, batch: Sequence[RecordLine]) -> None:
        js = self._opened()
        results = await asyncio.gather(*(self._publish(js, r) for r in batch), return_exceptions=True)
        retry: list[int] = []
        rejected: dict[int, str] = {}
        first: BaseException | None = None
        for index, result in enumerate(results):
            if result is None:
                continue
            if not isinstance(result, Exception):  # CancelledError and the like: not ours to hide
                raise result
            first = first or result
            if _refused(result):
                rejected[index] = _describe(result)
            else:
                retry.append(index)
        if first is None:
            return
        if not rejected and len(retry) == len(batch):
            raise SinkError(f"nats: publish failed: {_describe(first)}")
        raise PartialDeliveryError(
            f"nats: {len(retry) + len(rejected)} of {len(batch)} publishes failed: {_describe(first)}",
            retry=retry,
            rejected=rejected,
        )

    async def _publish(self, js: JetStreamContext, record: RecordLine) -> None:
        doc = record.record
        await js.publish(
            subject_of(self.options.subject, doc),
            record.json,
            timeout=self.options.ack_timeout_s,
            stream=self.options.expected_stream,
            headers={"Nats-Msg-Id": str(doc.get("id", ""))},
        )

    async def health(self) -> Health:
        """The stream's info when one is named, else the account's JetStream info."""
        import nats.errors

        if self._js is None or self._nc is None:
            return Health(ok=False, detail="not connected")
        if not self._nc.is_connected:
            return Health(ok=False, detail="disconnected")
        try:
            stream = self.options.expected_stream
            if stream is not None:
                await self._js.stream_info(stream)
            else:
                await self._js.account_info()
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            return Health(ok=False, detail=f"nats: {_describe(exc)}")
        return Health(ok=True)

    async def aclose(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await nc.close()

    def _opened(self) -> JetStreamContext:
        if self._js is None:
            raise SinkError("nats: not connected")
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = _describe(exc)
        log.debug("nats.error", sink=self.name, error=type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:  # not while open() is still trying
            log.warning("nats.disconnected", sink=self.name)

    async def _on_reconnected(self) -> None:
        log.info("nats.reconnected", sink=self.name)


def _refused(exc: BaseException) -> bool:
    """Will this message never be accepted, whatever the retry?"""
    import nats.errors
    import nats.js.errors

    if isinstance(exc, nats.errors.MaxPayloadError):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code in _REFUSED_CODES


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "err_code", None)
    return type(exc).__name__ + (f" ({code})" if code else "")


# -- options -----------------------------------------------------------------------------------


def _check_subject(template: str) -> list[str]:
    problems = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return ["$.subject: unbalanced braces"]
    for literal, field, spec, conversion in parts:
        if not _SUBJECT_LITERAL.fullmatch(literal):
            problems.append("$.subject: only letters, digits, '.', '_' and '-' outside the {fields}")
        if field is not None and (field not in SUBJECT_FIELDS or spec or conversion):
            problems.append(f"$.subject: allowed fields are {', '.join(sorted(SUBJECT_FIELDS))}")
    if not problems and any(not token for token in template.split(".")):
        problems.append("$.subject: empty token")
    return problems


def _parse(raw: Mapping[str, Any]) -> NatsOptions:
    options = dict(raw)
    problems = _check_subject(options["subject"])
    files = ("password_file", "token_file", "nkey_seed_file", "creds_file")
    for key in files:
        if key in options:
            options[key] = Path(options[key])
    methods = [m for m in ("user", "token_file", "nkey_seed_file", "creds_file") if m in options]
    if len(methods) > 1:
        problems.append(f"$: one way to authenticate, not {', '.join(methods)}")
    if "password_file" in options and "user" not in options:
        problems.append("$.password_file: requires user")
    if "servers" in options:
        options["servers"] = tuple(options["servers"])
    if "tls" in options:
        tls = options["tls"]
        if ("cert_file" in tls) != ("key_file" in tls):
            problems.append("$.tls: cert_file and key_file go together")
        options["tls"] = parse_client_tls(tls)
    if "create_stream" in options:
        stream = dict(options["create_stream"])
        stream["subjects"] = tuple(stream["subjects"])
        options["create_stream"] = StreamOptions(**stream)
    if problems:
        raise ConfigError("nats sink is not valid", tuple(problems))
    return NatsOptions(**options)


def _build(settings: SinkSettings, data_dir: Path) -> NatsSink:
    return NatsSink(settings.name, settings.options)


_FILE: Final = {"type": "string", "minLength": 1}

SINK_TYPE = SinkType(
    name="nats",
    description="NATS JetStream publishes, acknowledged, with the record id as Nats-Msg-Id",
    properties={
        "servers": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": "^(nats|tls)://"},
        },
        "subject": {
            "type": "string",
            "minLength": 1,
            "description": "Fields: {" + "}, {".join(sorted(SUBJECT_FIELDS)) + "}",
        },
        "stream": {"type": "string", "pattern": _STREAM_NAME},
        "create_stream": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "subjects"],
            "properties": {
                "name": {"type": "string", "pattern": _STREAM_NAME},
                "subjects": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "duplicate_window_s": {"type": "number", "exclusiveMinimum": 0},
                "max_age_s": {"type": "number", "exclusiveMinimum": 0},
                "storage": {"enum": ["file", "memory"]},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
            },
        },
        "user": {"type": "string", "minLength": 1},
        "password_file": _FILE,
        "token_file": _FILE,
        "nkey_seed_file": _FILE,
        "creds_file": _FILE,
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
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "ack_timeout_s": {"type": "number", "exclusiveMinimum": 0},
    },
    required=("subject",),
    parse=_parse,
    build=_build,
    batch_defaults={"timeout_s": 0.1},
)
