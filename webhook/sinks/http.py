"""Records POSTed to any HTTP endpoint, as a JSON array or NDJSON.

Also the HTTP client the Loki, Elasticsearch and Splunk HEC sinks share: TLS options,
credentials read from files (re-read after a 401/403, so a rotated token needs no restart),
and one mapping from an answer to delivered, retry (honouring ``Retry-After``) or refused.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
import structlog

from webhook import __version__
from webhook.errors import ConfigError, SinkError
from webhook.record.line import RecordLine
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings

__all__ = [
    "URL_PATTERN",
    "Answer",
    "BasicAuth",
    "ClientOptions",
    "HttpClient",
    "HttpOptions",
    "HttpSink",
    "TokenAuth",
    "client_properties",
    "parse_client",
    "raise_for_answer",
]

log = structlog.get_logger(__name__)

# No credentials in the URL (they belong in files): the authority may not contain "@".
URL_PATTERN: Final = r"^https?://[^/?#@\s]+([/?#]\S*)?$"
MAX_RETRY_AFTER_S: Final = 300.0
_RETRYABLE: Final = frozenset({408, 425, 429})  # and every 5xx
_CREDENTIALS_REFUSED: Final = frozenset({401, 403})
_RESERVED_HEADERS: Final = ("authorization", "content-type", "content-encoding", "content-length", "host")
_PATH = {"type": "string", "minLength": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenAuth:
    """``Authorization: <scheme> <token>``, the token read from ``file``; ``option`` names it."""

    scheme: str
    file: Path
    option: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicAuth:
    username: str
    password_file: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    headers: tuple[tuple[str, str], ...] = ()
    auth: TokenAuth | BasicAuth | None = None
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate, for mutual TLS
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 10.0
    gzip: bool = False


def client_properties(*, tokens: Mapping[str, str], basic: bool = True) -> dict[str, Any]:
    """The JSON Schema of the connection options; ``tokens`` maps option names to auth schemes."""
    properties: dict[str, Any] = {
        "headers": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9-]+$"},
            "additionalProperties": {"type": "string"},
            "description": "Extra request headers; credentials go in files, not here.",
        },
        **{
            option: {**_PATH, "description": f"{scheme} credential, read at start"}
            for option, scheme in tokens.items()
        },
        "tls": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ca_file": {**_PATH, "description": "Trust only these CAs (PEM), not the system's."},
                "cert_file": {**_PATH, "description": "Client certificate (PEM), for mutual TLS."},
                "key_file": {**_PATH, "description": "Its key, when not in cert_file."},
                "insecure_skip_verify": {"type": "boolean", "description": "Do not verify the server."},
            },
        },
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        "gzip": {"type": "boolean", "description": "Compress request bodies."},
    }
    if basic:
        properties["basic"] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["username", "password_file"],
            "properties": {"username": {"type": "string", "pattern": "^[^:]+$"}, "password_file": _PATH},
        }
    return properties


def parse_client(raw: Mapping[str, Any], *, sink_type: str, tokens: Mapping[str, str]) -> ClientOptions:
    """Connection options out of a sink's validated options (other keys are ignored)."""
    given = [key for key in (*tokens, "basic") if key in raw]
    problems = []
    if len(given) > 1:
        problems.append(f"$.sinks[type={sink_type}]: set one of {', '.join(given)}, not several")
    tls = raw.get("tls", {})
    reserved = sorted(h for h in raw.get("headers", {}) if h.lower() in _RESERVED_HEADERS)
    if reserved:
        problems.append(f"$.sinks[type={sink_type}].headers: set by the sink: {', '.join(reserved)}")
    if "key_file" in tls and "cert_file" not in tls:
        problems.append(f"$.sinks[type={sink_type}].tls.key_file: requires tls.cert_file")
    if problems:
        raise ConfigError(f"{sink_type} sink options are not consistent", tuple(problems))
    auth: TokenAuth | BasicAuth | None = None
    if given and given[0] == "basic":
        auth = BasicAuth(username=raw["basic"]["username"], password_file=Path(raw["basic"]["password_file"]))
    elif given:
        auth = TokenAuth(scheme=tokens[given[0]], file=Path(raw[given[0]]), option=given[0])
    base = ClientOptions()

    def path(key: str) -> Path | None:
        return Path(tls[key]) if key in tls else None

    return ClientOptions(
        headers=tuple(sorted(raw.get("headers", {}).items())),
        auth=auth,
        ca_file=path("ca_file"),
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        insecure_skip_verify=tls.get("insecure_skip_verify", base.insecure_skip_verify),
        timeout_s=raw.get("timeout_s", base.timeout_s),
        gzip=raw.get("gzip", base.gzip),
    )


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after_s: float | None = None


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay or HTTP date), capped at five minutes."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def raise_for_answer(answer: Answer, what: str) -> None:
    """2xx returns; 408/425/429/5xx and refused credentials are retried; other answers refuse."""
    status = answer.status
    if 200 <= status < 300:
        return
    if status in _CREDENTIALS_REFUSED:
        raise SinkError(f"{what} refused the credentials ({status}); they are re-read before the retry")
    if status in _RETRYABLE or status >= 500:
        raise SinkError(f"{what} answered {status}", retry_after_s=answer.retry_after_s)
    raise SinkError(f"{what} answered {status}", retryable=False)


def _read_secret(path: Path, option: str) -> str:
    try:
        value = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SinkError(
            f"cannot read {option}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        ) from None
    if not value:
        raise SinkError(f"{option} is empty")
    return value


def _authorization(auth: TokenAuth | BasicAuth | None) -> str | None:
    if isinstance(auth, TokenAuth):
        return f"{auth.scheme} {_read_secret(auth.file, auth.option)}"
    if isinstance(auth, BasicAuth):
        password = _read_secret(auth.password_file, "basic.password_file")
        return "Basic " + base64.b64encode(f"{auth.username}:{password}".encode()).decode("ascii")
    return None


def _ssl_context(options: ClientOptions) -> ssl.SSLContext | bool:
    if options.ca_file is None and options.cert_file is None and not options.insecure_skip_verify:
        return True  # the system's trust store
    step = "tls.ca_file"
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
        if options.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if options.cert_file is not None:
            step = "tls.cert_file"
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(
            f"cannot load {step}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        ) from None
    return context


class HttpClient:
    """One session per sink, opened in ``open()``; every failure becomes a ``SinkError``."""

    def __init__(self, options: ClientOptions, *, sink: str) -> None:
        self.options = options
        self._sink = sink
        self._session: aiohttp.ClientSession | None = None
        self._authorization: str | None = None
        self._stale_credentials = False

    async def open(self) -> None:
        await self.aclose()
        context = await asyncio.to_thread(_ssl_context, self.options)
        self._authorization = await asyncio.to_thread(_authorization, self.options.auth)
        if self.options.insecure_skip_verify:
            log.warning("sink.tls_unverified", sink=self._sink)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=4),
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
            headers={"User-Agent": f"ingress-audit/{__version__}", **dict(self.options.headers)},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request; connection problems and timeouts are retryable ``SinkError``s."""
        if self._session is None:
            raise SinkError(f"{what}: the sink is not open")
        if self._stale_credentials:
            self._authorization = await asyncio.to_thread(_authorization, self.options.auth)
            self._stale_credentials = False
        sent = dict(headers or {})
        if self._authorization is not None:
            sent["Authorization"] = self._authorization
        if body and self.options.gzip:
            body = await asyncio.to_thread(gzip.compress, body, 6)
            sent["Content-Encoding"] = "gzip"
        try:
            async with self._session.request(
                method, url, data=body, headers=sent, allow_redirects=False
            ) as resp:
                answer = Answer(resp.status, await resp.read(), retry_after(resp.headers.get("Retry-After")))
        except TimeoutError:
            raise SinkError(f"{what} timed out after {self.options.timeout_s:g}s") from None
        except aiohttp.ClientConnectorCertificateError:
            raise SinkError(f"{what}: the server's certificate is not trusted") from None
        except aiohttp.ClientError as exc:
            raise SinkError(f"{what} failed: {type(exc).__name__}") from None
        if answer.status in _CREDENTIALS_REFUSED:
            self._stale_credentials = True
        return answer

    async def probe(self, url: str, *, what: str, method: str = "GET") -> Health:
        """Healthy unless unreachable, 5xx or refused credentials (another 4xx: reachable)."""
        try:
            if self._session is None:
                await self.open()
            answer = await self.request(method, url, what=what)
        except SinkError as exc:
            return Health(False, exc.message)
        if answer.status in _CREDENTIALS_REFUSED or answer.status >= 500:
            return Health(False, f"{what} answered {answer.status}")
        return Health(True, "" if answer.status < 300 else f"{what} answered {answer.status}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    url: str
    format: Literal["json", "ndjson"] = "json"
    health_url: str | None = None
    client: ClientOptions = field(default_factory=ClientOptions)


_TOKENS: Final = {"bearer_token_file": "Bearer"}
_CONTENT_TYPES: Final = {"json": "application/json", "ndjson": "application/x-ndjson"}


class HttpSink:
    def __init__(self, name: str, options: HttpOptions) -> None:
        self.name = name
        self.options = options
        self._client = HttpClient(options.client, sink=name)

    async def open(self) -> None:
        await self._client.open()

    async def send(self, batch: Sequence[RecordLine]) -> None:
        if not batch:
            return
        if self.options.format == "json":
            body = b"[" + b",".join(record.json for record in batch) + b"]"
        else:
            body = b"".join(record.json + b"\n" for record in batch)
        headers = {"Content-Type": _CONTENT_TYPES[self.options.format]}
        answer = await self._client.request("POST", self.options.url, what="POST", body=body, headers=headers)
        raise_for_answer(answer, "the endpoint")

    async def health(self) -> Health:
        """GET ``health_url`` when set (non-2xx is unhealthy), else HEAD the URL: reachable or not."""
        if self.options.health_url is None:
            return await self._client.probe(self.options.url, what="the endpoint", method="HEAD")
        health = await self._client.probe(self.options.health_url, what="the health URL")
        if health.ok and health.detail:
            return Health(False, health.detail)
        return health

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(raw: Mapping[str, Any]) -> HttpOptions:
    return HttpOptions(
        url=raw["url"],
        format=raw.get("format", "json"),
        health_url=raw.get("health_url"),
        client=parse_client(raw, sink_type="http", tokens=_TOKENS),
    )


def _build(settings: SinkSettings, data_dir: Path) -> HttpSink:
    return HttpSink(settings.name, settings.options)


SINK_TYPE = SinkType(
    name="http",
    description="POST each batch to an HTTP endpoint as a JSON array or NDJSON",
    properties={
        "url": {"type": "string", "pattern": URL_PATTERN},
        "format": {"enum": ["json", "ndjson"]},
        "health_url": {"type": "string", "pattern": URL_PATTERN},
        **client_properties(tokens=_TOKENS),
    },
    required=("url",),
    parse=_parse,
    build=_build,
)
