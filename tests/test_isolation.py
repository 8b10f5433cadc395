"""Per-event isolation, all the way down: one event never costs its batch (#17, part 1).

The regression tests reproduce findings 1 and 2 of the security review (a poisoned patch body,
a failed Gateway create) through the real app, in the event loop and in a worker process. The
property tests damage any one event of a captured batch in any way and check that the answer is
200, that every other event's record is what the undamaged batch gave, and that the damaged
event can be found by its auditID.
"""

from __future__ import annotations

import copy
import io
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import (
    CAPTURES,
    Client,
    dead_letters_in,
    delivered,
    make_config,
    make_event,
)

from webhook.config import Config
from webhook.prepare_pool import MIN_BODY_BYTES
from webhook.server import RUNTIME, create_app

JSON: Final = {"Content-Type": "application/json"}
POISON: Final = "@@poison@@"
POISON_JSON: Final = orjson.dumps(POISON)
# Filtered out (a get of pods), so they add no record: they only make a body big enough for a
# worker process.
FILLER: Final = [
    make_event(verb="get", api_group="", resource="pods", name=f"p{n}", audit_id=f"filler-{n:06d}")
    for n in range(160)
]
# Fields of a record that depend on the run, not on the event: when it was received.
RUN_FIELDS: Final = ("received_at",)

_runs = itertools.count()


def _config(root: Path, workers: int) -> Config:
    config = make_config(root / f"run-{next(_runs)}", workers=workers)
    # One fingerprint key for every run, so that records of different runs compare whole.
    key_file = root / "fingerprint.key"
    return replace(config, redaction=replace(config.redaction, fingerprint_key_file=key_file))


@asynccontextmanager
async def _app(root: Path, *, workers: int) -> AsyncIterator[tuple[Client, Config]]:
    """A fresh app (empty state, empty dedupe window); with ``workers``, they have started."""
    config = _config(root, workers)
    client: Client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        if workers:
            await client.app[RUNTIME].ingestor.prepare_pool.start()
        yield client, config
    finally:
        await client.close()


def _body(items: list[Any], *, workers: int) -> bytes:
    """An EventList with ``POISON`` (a string, wherever it is) still to be replaced."""
    if workers:
        items = [*items, *FILLER]
    return orjson.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    )


def _poisoned(body: bytes, poison: bytes) -> bytes:
    assert body.count(POISON_JSON) == 1
    return body.replace(POISON_JSON, poison)


async def _post(client: Client, body: bytes, *, workers: int) -> tuple[int, dict[str, Any]]:
    if workers:
        assert client.app[RUNTIME].ingestor.prepare_pool.wants(body), "not big enough for a worker"
    else:
        assert len(body) < MIN_BODY_BYTES or not client.app[RUNTIME].ingestor.prepare_pool.enabled
    resp = await client.post("/audit?timeout=30s", data=io.BytesIO(body), headers=JSON)
    answer: dict[str, Any] = await resp.json()
    return resp.status, answer


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in RUN_FIELDS}


def _by_event(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["audit_id"], r["stage"]): _comparable(r) for r in records if r.get("type") == "audit"}


def _traced(audit_id: str, records: list[dict[str, Any]], letters: list[dict[str, Any]]) -> bool:
    return any(r.get("audit_id") == audit_id for r in records) or any(
        d.get("event", {}).get("auditID") == audit_id for d in letters
    )


# --- finding 1: a poisoned patch body ---------------------------------------------------------

A11: Final = CAPTURES / "0016.json"  # kubectl patch ingress: 6 events, 2 kept
PATCH_ID: Final = "5e0c2a53-0000-4000-8000-00000000p0p1"
POISONS: Final = {
    "nested-1030": b"[" * 1030 + b"]" * 1030,
    "number-1e999": b'{"spec":{"x":1e999}}',
    "lone-surrogate": b'{"spec":{"x":"\\ud800"}}',
    "invalid-utf8-0xff": b'{"spec":{"x":"a\xffb"}}',
}


def _a11_with_patch() -> list[Any]:
    """The A11 batch and one more patch of the Ingress, its body still to be poisoned."""
    items: list[dict[str, Any]] = orjson.loads(A11.read_bytes())["items"]
    patch = next(e for e in items if e["verb"] == "patch" and e["stage"] == "ResponseComplete")
    extra = copy.deepcopy(patch)
    extra["auditID"] = PATCH_ID
    extra["requestObject"] = POISON
    return [*items, extra]


@pytest.mark.parametrize("workers", [0, 1], ids=["event-loop", "worker"])
@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
async def test_finding_1_poisoned_patch_body_costs_only_its_event(
    tmp_path: Path, poison: bytes, workers: int
) -> None:
    """Review finding 1 (P1): a patch body orjson refuses was a 400 for the whole batch; now
    that event alone is dead-lettered with its identity and reason, the rest is recorded."""
    body = _body(_a11_with_patch(), workers=workers)
    async with _app(tmp_path, workers=workers) as (client, config):
        status, control = await _post(client, body.replace(POISON_JSON, b'{"spec":{"x":1}}'), workers=workers)
        assert (status, control["records"]) == (200, 3)
        expected = _by_event([r for r in await delivered(client, config) if r["audit_id"] != PATCH_ID])
    async with _app(tmp_path, workers=workers) as (client, config):
        status, answer = await _post(client, _poisoned(body, poison), workers=workers)
        records = await delivered(client, config)
        letters = dead_letters_in(config)

    assert status == 200, answer
    assert (answer["records"], answer["dead_lettered"]) == (2, 1)
    assert _by_event(records) == expected
    (letter,) = letters
    assert letter["reason"] == ("event-too-deep" if poison.startswith(b"[") else "event-not-json")
    assert letter["index"] == 6
    assert letter["event"] == {
        "auditID": PATCH_ID,
        "stage": "ResponseComplete",
        "verb": "patch",
        "objectRef": {
            "apiGroup": "networking.k8s.io",
            "apiVersion": "v1",
            "resource": "ingresses",
            "namespace": "shop",
            "name": "shop-web",
        },
    }


# --- finding 2: a failed Gateway create -------------------------------------------------------

A32: Final = CAPTURES / "0044.json"  # kubectl create GatewayClass + Gateway: 58 events
GATEWAY_ID: Final = "5e0c2a53-0000-4000-8000-0000000ga7e1"


def _a32_with_failed_gateway(listeners: Any) -> list[Any]:
    """The A32 batch and a Gateway create refused with 422, logged with its request as sent."""
    items: list[dict[str, Any]] = orjson.loads(A32.read_bytes())["items"]
    create = next(
        e
        for e in items
        if e["verb"] == "create"
        and e["stage"] == "ResponseComplete"
        and e["objectRef"]["resource"] == "gateways"
    )
    failed = copy.deepcopy(create)
    failed["auditID"] = GATEWAY_ID
    failed["objectRef"]["name"] = "bad-gw"
    failed["requestObject"]["metadata"]["name"] = "bad-gw"
    failed["requestObject"]["spec"]["listeners"] = listeners
    failed["responseStatus"] = {"metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422}
    failed["responseObject"] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "reason": "Invalid",
        "code": 422,
    }
    return [*items, failed]


@pytest.mark.parametrize("workers", [0, 1], ids=["event-loop", "worker"])
@pytest.mark.parametrize("listeners", [5, True], ids=["listeners-5", "listeners-true"])
async def test_finding_2_failed_gateway_create_costs_only_its_event(
    tmp_path: Path, listeners: Any, workers: int
) -> None:
    """Review finding 2 (P2): ``spec.listeners: 5`` (or ``true``) in a failed create made the
    state lookups raise outside the per-event guard: 503 on every resend. Now: 200, the other
    records as without it, the Gateway traceable, and the identical resend 200 too."""
    control = _body(orjson.loads(A32.read_bytes())["items"], workers=workers)
    async with _app(tmp_path, workers=workers) as (client, config):
        status, _ = await _post(client, control, workers=workers)
        assert status == 200
        expected = _by_event(await delivered(client, config))
    body = _body(_a32_with_failed_gateway(listeners), workers=workers)
    async with _app(tmp_path, workers=workers) as (client, config):
        status, answer = await _post(client, body, workers=workers)
        resent, again = await _post(client, body, workers=workers)
        records = await delivered(client, config)
        letters = dead_letters_in(config)

    assert (status, resent) == (200, 200), (answer, again)
    assert answer["records"] == len(expected) + 1  # the failed create is recorded too
    assert again["records"] == 0
    others = _by_event([r for r in records if r["audit_id"] != GATEWAY_ID])
    assert others == expected
    assert _traced(GATEWAY_ID, records, letters)
    assert letters == []
