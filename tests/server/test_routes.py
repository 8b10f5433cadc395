"""Any HTTP source the server mounts: the same admission, refusals, dead letters and metrics."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from pytest_aiohttp import AiohttpClient

from tests.conftest import Client, dead_letters_in, make_config
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.config import AuthConfig, Config
from webhook.errors import (
    BodyTooLargeError,
    StorageError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.runtime import Runtime
from webhook.server.app import METRICS, create_app, mount
from webhook.sources.base import Answer, Authenticate, Delivery, Headers, Principal, Refuse

TOKEN: Final = "test-routes-bearer-token-0123456789"
KEY: Final = "test-routes-source-key-9876543210"
BEARER: Final = {"Authorization": f"Bearer {TOKEN}"}
ECHO: Final = {"Content-Type": "application/x-echo"}


@dataclass
class Echo:
    """Answers 202 with what it was handed; refusals of the wrong type leave a dead letter."""

    name: str = "echo"
    content_types: frozenset[str] = frozenset({"application/x-echo"})
    content_type_error: str = "Content-Type must be application/x-echo"
    lost: tuple[type[WebhookError], ...] = (UnsupportedMediaTypeError,)
    authenticate: Authenticate | None = None
    refuse: Refuse | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    fail: WebhookError | None = None
    closed: bool = False

    async def receive(self, delivery: Delivery) -> Answer:
        if self.fail is not None:
            raise self.fail
        self.deliveries.append(delivery)
        doc = {"bytes": len(delivery.body), "caller": delivery.caller.method}
        return Answer.json(doc, 202, {"X-Echo": "yes"})

    async def aclose(self) -> None:
        self.closed = True


async def _keyed(headers: Headers) -> Principal:
    """A cloud's check: its own header, never the server's certificate or token."""
    if headers.get("x-source-key") != KEY:
        raise UnauthorizedError("X-Source-Key is missing or not one of ours")
    return Principal("source-key", "keys/one", frozenset({"prod"}))


def _own_shape(error: WebhookError, headers: Headers) -> Answer:
    """A sender that retries anything but 200, and backs up a 400 but drops a 413."""
    status = 400 if isinstance(error, BodyTooLargeError) else error.http_status
    return Answer.json({"requestId": headers.get("x-request-id", ""), "errorMessage": error.code}, status)


def _config(tmp_path: Path, **server: Any) -> Config:
    """The server's bearer token required, as for ``/audit``."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return make_config(tmp_path, auth=AuthConfig(bearer_token_files=(token,)), **server)


async def _mounted(aiohttp_client: AiohttpClient, config: Config, source: Echo) -> Client:
    app = create_app(config)

    def build(runtime: Runtime) -> Echo:
        return source

    mount(app, "/echo", build)
    return await aiohttp_client(app)


def _sample(client: Client, name: str, **labels: str) -> float:
    return client.app[METRICS].registry.get_sample_value(name, labels) or 0.0


async def test_a_mounted_source_is_admitted_like_the_webhook(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The server's token, POST, the source's Content-Types and the size limit, with /audit's
    answers; what passes reaches the source with its body, headers, time and caller."""
    source = Echo()
    client = await _mounted(aiohttp_client, _config(tmp_path, max_body_bytes=1024), source)

    unauthenticated = await client.post("/echo", data=b"x", headers=ECHO)
    method = await client.get("/echo", headers=BEARER)
    media = await client.post("/echo", data=b"x", headers={**BEARER, "Content-Type": "text/plain"})
    large = await client.post("/echo", data=b"x" * 1025, headers={**BEARER, **ECHO})
    taken = await client.post("/echo?x=1", data=b"hello", headers={**BEARER, **ECHO, "X-Trace": "t1"})

    assert unauthenticated.status == 401
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="ingress-audit"'
    assert (await unauthenticated.json())["error"] == "unauthenticated"
    assert (method.status, method.headers["Allow"]) == (405, "POST")
    assert media.status == 415
    assert await media.json() == {
        "error": "unsupported-media-type",
        "reason": "Content-Type must be application/x-echo",
    }
    assert large.status == 413
    assert (taken.status, taken.headers["X-Echo"]) == (202, "yes")
    assert await taken.read() == b'{"bytes":5,"caller":"token"}\n'
    (delivery,) = source.deliveries
    assert delivery.body == b"hello"
    assert delivery.headers["x-trace"] == "t1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", delivery.received_at)
    assert delivery.caller == Principal("token", "token")
    await client.close()
    assert source.closed


async def test_a_source_that_checks_its_callers_is_not_asked_for_the_servers_token(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Its own check replaces the server's, first, before the body is read: the server's token
    does not let a caller in, and a refusal comes in the shape the source's sender expects."""
    source = Echo(authenticate=_keyed, refuse=_own_shape)
    client = await _mounted(aiohttp_client, _config(tmp_path, max_body_bytes=1024), source)
    keyed = {**ECHO, "X-Source-Key": KEY, "X-Request-Id": "r-1"}

    taken = await client.post("/echo", data=b"hello", headers=keyed)
    with_token = await client.post("/echo", data=b"hello", headers={**BEARER, **ECHO, "X-Request-Id": "r-2"})
    large_without_key = await client.post("/echo", data=b"x" * 2048, headers=ECHO)
    large = await client.post("/echo", data=b"x" * 2048, headers=keyed)

    assert (taken.status, await taken.json()) == (202, {"bytes": 5, "caller": "source-key"})
    assert source.deliveries[0].caller == Principal("source-key", "keys/one", frozenset({"prod"}))
    assert (with_token.status, await with_token.json()) == (
        401,
        {"requestId": "r-2", "errorMessage": "unauthenticated"},
    )
    assert large_without_key.status == 401  # checked before the size
    assert (large.status, await large.json()) == (400, {"requestId": "r-1", "errorMessage": "body-too-large"})
    assert len(source.deliveries) == 1


async def test_refusals_its_sender_drops_leave_a_dead_letter(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The source's ``lost`` refusals are dead-lettered; the others (405, its own 503) are not,
    and every refusal is counted by reason."""
    config = _config(tmp_path)
    source = Echo()
    client = await _mounted(aiohttp_client, config, source)

    media = await client.post("/echo", data=b"x", headers={**BEARER, "Content-Type": "text/plain"})
    method = await client.get("/echo", headers=BEARER)
    source.fail = StorageError("cannot keep records now")
    storage = await client.post("/echo", data=b"x", headers={**BEARER, **ECHO})

    assert (media.status, method.status, storage.status) == (415, 405, 503)
    assert storage.headers["Retry-After"] == "1"
    assert [letter["reason"] for letter in dead_letters_in(config)] == ["unsupported-media-type"]
    for reason in ("unsupported-media-type", "method-not-allowed", "storage"):
        assert _sample(client, "ingress_audit_requests_rejected_total", reason=reason) == 1


async def test_every_source_is_in_flight_and_timed(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """A request to any source is in the in-flight gauge while it runs and in the latency
    histogram once answered: /ingest/access as /audit."""
    syslog = AccessSyslogConfig(udp=None, tcp=None)
    config = replace(_config(tmp_path), access=AccessConfig(enabled=True, syslog=syslog))
    started, release = asyncio.Event(), asyncio.Event()

    class Held(Echo):
        async def receive(self, delivery: Delivery) -> Answer:
            started.set()
            await release.wait()
            return await super().receive(delivery)

    client = await _mounted(aiohttp_client, config, Held())
    held = asyncio.create_task(client.post("/echo", data=b"x", headers={**BEARER, **ECHO}))
    await asyncio.wait_for(started.wait(), 10)
    in_flight = _sample(client, "ingress_audit_requests_in_flight")
    release.set()
    assert (await held).status == 202
    line = b"a line of no known format\n"  # dead-lettered: the body is still answered 200
    access = await client.post("/ingest/access", data=line, headers={**BEARER, "Content-Type": "text/plain"})

    assert in_flight == 1
    assert _sample(client, "ingress_audit_requests_in_flight") == 0
    assert access.status == 200
    assert _sample(client, "ingress_audit_request_duration_seconds_count", code="202") == 1
    assert _sample(client, "ingress_audit_request_duration_seconds_count", code="200") == 1
