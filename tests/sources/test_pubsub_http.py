"""``POST /pubsub`` through the real app: the captured requests as GKE logs them, pushed by
Pub/Sub with a signed token, checked against a JWKS file or a real HTTPS key server.

What the push path records is what the webhook path records for the same events (same ids
and content but for when they arrived); a redelivery adds nothing; a message that can never
be valid is dead-lettered once and refused with a 400, so that Pub/Sub keeps it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs

from tests.conftest import (
    Client,
    captured_bodies,
    dead_letters_in,
    make_config,
    records_in,
    scenario_secrets,
    settle,
)
from tests.sources.cloud_apps import (
    GKE_CLUSTER,
    event_lists,
    pubsub_settings,
    sans_arrival,
    webhook_records,
    with_sources,
)
from tests.sources.gke_entries import final_events, log_entry, push_body
from tests.sources.push_tokens import AUDIENCE, PUSHER, bearer, start_key_server, token, write_jwks
from webhook.config import Config
from webhook.redact.leaks import scan
from webhook.server.app import METRICS, create_app, mount
from webhook.sources.cloud import CloudEvent
from webhook.sources.jwks import JwksUrl
from webhook.sources.logfile import as_webhook_item
from webhook.sources.pubsub import decode_push, map_push
from webhook.sources.pubsub_http import PUBSUB_PATH, PubsubSource

JSON: Final = {"Content-Type": "application/json"}


def _config(tmp_path: Path, jwks_file: Path | None = None) -> Config:
    jwks = jwks_file or write_jwks(tmp_path / "jwks.json", "key-a")
    return with_sources(
        make_config(tmp_path), pubsub=pubsub_settings(jwks, AUDIENCE, PUSHER), cluster=GKE_CLUSTER
    )


def fresh_token(**changes: Any) -> str:
    """A token Pub/Sub would send now (the app checks it against the host's clock)."""
    return bearer(token(now=time.time(), **changes))


async def push(client: Client, body: bytes, authorization: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = dict(JSON)
    headers["Authorization"] = fresh_token() if authorization is None else authorization
    if not headers["Authorization"]:
        del headers["Authorization"]
    resp = await client.post(PUBSUB_PATH, data=body, headers=headers)
    answer: dict[str, Any] = orjson.loads(await resp.read())
    return resp.status, answer


def scenario_entries() -> list[dict[str, Any]]:
    """Every request of scenario A as GKE logs it: one entry per request."""
    return [log_entry(native) for body in captured_bodies() for native in final_events(body.name)]


def mapped_event(entry: dict[str, Any]) -> dict[str, Any]:
    """The event the push path makes of ``entry``, as the webhook would send it."""
    item = map_push(decode_push(push_body(entry)), frozenset({GKE_CLUSTER}))
    assert isinstance(item, CloudEvent), item
    return as_webhook_item(orjson.loads(item.event))


def _cloud_items(client: Client, result: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(
        "ingress_audit_cloud_items_total", {"source": "pubsub", "result": result}
    )
    return value or 0.0


# --- the captured scenario ------------------------------------------------------------------------------


async def test_every_captured_request_is_recorded_as_the_webhook_records_it(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """One push per request of the scenario: the records of the same events sent to /audit."""
    config = _config(tmp_path)
    entries = scenario_entries()
    bodies = event_lists([mapped_event(e) for e in entries])
    expected = await webhook_records(tmp_path / "webhook", bodies, key_for=config, cluster=GKE_CLUSTER)
    client: Client = await aiohttp_client(create_app(config))

    statuses = {
        (await push(client, push_body(e, message_id=str(1000 + n))))[0] for n, e in enumerate(entries)
    }
    await settle(client)

    assert statuses == {200}
    assert len(expected) > 30
    assert sans_arrival(records_in(config)) == sans_arrival(expected)
    assert {r["cluster"] for r in records_in(config)} == {GKE_CLUSTER}
    assert dead_letters_in(config) == []


async def test_a_redelivery_never_makes_a_second_record(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    body = push_body(log_entry(next(e for e in final_events("0009.json") if e["verb"] == "create")))

    answers = [await push(client, body) for _ in range(3)]
    await settle(client)

    assert [status for status, _ in answers] == [200, 200, 200]
    assert [a["records"] for _, a in answers] == [1, 0, 0]
    assert [a["duplicates"] for _, a in answers] == [0, 1, 1]
    assert len(records_in(config)) == 1


async def test_denials_are_recorded_as_denials(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The 403s and the 401 of steps A20-A23, pushed from GKE: records with those codes."""
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    denied = [
        next(e for e in final_events(name) if e["responseStatus"]["code"] == code)
        for name, code in [("0028.json", 403), ("0030.json", 403), ("0031.json", 403), ("0032.json", 401)]
    ]

    for n, native in enumerate(denied):
        assert (await push(client, push_body(log_entry(native), message_id=f"d{n}")))[0] == 200
    await settle(client)

    codes = {r["audit_id"]: r["outcome"]["code"] for r in records_in(config)}
    assert [codes[e["auditID"]] for e in denied] == [403, 403, 403, 401]


# --- tokens --------------------------------------------------------------------------------------------

BAD_TOKENS: Final = [
    ("missing", lambda: "", 401, "missing-token"),
    ("wrong audience", lambda: fresh_token(aud="https://elsewhere.example/pubsub"), 401, "wrong-audience"),
    (
        "email not listed",
        lambda: fresh_token(email="intruder@evil.iam.gserviceaccount.com"),
        403,
        "email-not-allowed",
    ),
    ("email unverified", lambda: fresh_token(email_verified=False), 401, "email-unverified"),
    ("expired", lambda: bearer(token(now=time.time() - 7200)), 401, "expired"),
    ("unknown key", lambda: bearer(token("key-z", now=time.time())), 401, "unknown-key"),
    (
        "signed by another key",
        lambda: bearer(token("key-a", signer="key-b", now=time.time())),
        401,
        "bad-signature",
    ),
]


@pytest.mark.parametrize(("case", "make", "status", "code"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
async def test_a_bad_token_is_refused_before_the_body_is_read(
    aiohttp_client: AiohttpClient, tmp_path: Path, case: str, make: Any, status: int, code: str
) -> None:
    """401 or 403 with the failed check's reason; nothing recorded, nothing dead-lettered (Pub/Sub
    keeps the message)."""
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))

    answer = await push(client, push_body(log_entry(final_events("0009.json")[0])), make())
    await settle(client)

    assert answer == (status, {"error": code, "reason": answer[1]["reason"]})
    assert records_in(config) == []
    assert dead_letters_in(config) == []
    rejected = client.app[METRICS].registry.get_sample_value(
        "ingress_audit_requests_rejected_total", {"reason": code}
    )
    assert rejected == 1


async def test_tokens_are_checked_against_keys_fetched_over_https(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Google's keys, as a real HTTPS key server with its own CA publishes them: fetched once,
    and the fetcher is closed with the source."""
    endpoint = await start_key_server(aiohttp_server, "key-a")
    config = with_sources(make_config(tmp_path), cluster=GKE_CLUSTER)
    settings = pubsub_settings(None, AUDIENCE, PUSHER)
    app = create_app(config)
    keys = JwksUrl(endpoint.url, ssl_context=endpoint.client_context, trust_env=False)
    mount(
        app,
        PUBSUB_PATH,
        lambda runtime: PubsubSource(settings, runtime.ingestor, runtime.writer, runtime.metrics, keys=keys),
    )
    client: Client = await aiohttp_client(app)
    entries = [log_entry(e) for e in final_events("0009.json")]

    for n, entry in enumerate(entries):
        assert (await push(client, push_body(entry, message_id=f"m{n}")))[0] == 200
    assert (await push(client, push_body(entries[0]), bearer(token("key-b", now=time.time()))))[0] == 401
    await settle(client)

    assert endpoint.server.fetches == 1  # one fetch for every push; the unknown kid within 30 s of it: none
    assert len(records_in(config)) > 0
    await client.close()
    assert keys._session is None  # the source closed its fetcher


async def test_no_keys_yet_is_503_for_pubsub_to_retry(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    endpoint = await start_key_server(aiohttp_server, "key-a")
    endpoint.server.status = 500
    config = with_sources(make_config(tmp_path), cluster=GKE_CLUSTER)
    settings = pubsub_settings(None, AUDIENCE, PUSHER)
    app = create_app(config)
    keys = JwksUrl(endpoint.url, ssl_context=endpoint.client_context, trust_env=False)
    mount(
        app,
        PUBSUB_PATH,
        lambda runtime: PubsubSource(settings, runtime.ingestor, runtime.writer, runtime.metrics, keys=keys),
    )
    client: Client = await aiohttp_client(app)

    resp = await client.post(
        PUBSUB_PATH,
        data=push_body(log_entry(final_events("0009.json")[0])),
        headers={**JSON, "Authorization": fresh_token()},
    )

    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert (await resp.json())["error"] == "keys-unavailable"


# --- messages that can never be valid ------------------------------------------------------------------


async def test_a_cluster_not_listed_is_dead_lettered_once_and_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """400 (Pub/Sub keeps the message: its dead-letter topic, or a redelivery once the cluster is
    listed); one dead letter with identifiers only, however often it is redelivered."""
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    body = push_body(log_entry(final_events("0009.json")[0], project="other-project"), message_id="77")

    answers = [await push(client, body) for _ in range(3)]
    await settle(client)

    assert {status for status, _ in answers} == {400}
    assert answers[0][1]["error"] == "cluster-not-allowed"
    assert answers[1] == answers[0]
    (letter,) = dead_letters_in(config)
    assert letter["reason"] == "cluster-not-allowed"
    assert letter["event"]["messageId"] == "77"
    assert letter["event"]["claimed_cluster"] == "other-project/prod-eu"
    assert letter["event"]["input"] == "pubsub"
    assert records_in(config) == []
    assert (_cloud_items(client, "rejected"), _cloud_items(client, "repeated_reject")) == (1, 2)


async def test_an_entry_that_is_not_a_k8s_audit_entry_is_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    entry = log_entry(final_events("0009.json")[0])
    entry["protoPayload"]["serviceName"] = "container.googleapis.com"

    status, answer = await push(client, push_body(entry))
    await settle(client)

    assert (status, answer["error"]) == (400, "not-k8s-audit")
    assert [d["reason"] for d in dead_letters_in(config)] == ["not-k8s-audit"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{nope", "not-json"),
        (b'{"subscription": "s"}', "not-push-message"),
        (orjson.dumps({"message": {"messageId": "1", "data": "%%%"}}), "undecodable-data"),
    ],
)
async def test_a_body_that_is_not_a_push_is_400_and_no_dead_letter(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: bytes, code: str
) -> None:
    """Pub/Sub keeps what it is refused: a dead letter per redelivery would only flood the file."""
    config = _config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))

    status, answer = await push(client, body)
    await settle(client)

    assert (status, answer["error"]) == (400, code)
    assert dead_letters_in(config) == []


async def test_routes_exist_only_when_configured(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client: Client = await aiohttp_client(create_app(make_config(tmp_path)))
    assert (await client.post(PUBSUB_PATH, data=b"{}", headers=JSON)).status == 404


# --- no secret value anywhere -------------------------------------------------------------------------


async def test_no_secret_value_reaches_any_output(tmp_path: Path) -> None:
    """Every request of the scenario pushed, and again from an unlisted cluster: records, dead
    letters, the spool, answers, metrics and log lines hold none of the secret values."""
    config = _config(tmp_path)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        with capture_logs() as logs:
            for n, entry in enumerate(scenario_entries()):
                said.append(orjson.dumps(await push(client, push_body(entry, message_id=f"a{n}"))))
                stray = {
                    **entry,
                    "resource": {**entry["resource"], "labels": {"project_id": "x", "cluster_name": "y"}},
                }
                said.append(orjson.dumps(await push(client, push_body(stray, message_id=f"b{n}"))))
            await settle(client)
            said.append(await (await client.get("/metrics")).read())
        said.append(orjson.dumps(logs, default=str))
    finally:
        await client.close()

    assert len(dead_letters_in(config)) == len(scenario_entries())
    outputs = tmp_path / "answers-and-logs"
    outputs.write_bytes(b"\n".join(said))
    assert scan([config.data_dir, outputs], scenario_secrets()) == []
