"""Per-event isolation, all the way down: one event never costs its batch.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    CAPTURES,
    Client,
    capture_events,
    captured_bodies,
    dead_letters_in,
    delivered,
    make_config,
    make_event,
)
from webhook.config import Config
from webhook.errors import MalformedEventError
from webhook.events import check_event
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.pipeline.workers import MIN_BODY_BYTES
from webhook.server.app import RUNTIME, create_app

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
# Fields that depend on the state earlier events left (they are its baseline; a kept event
# earlier in the batch is one): the change, and what is derived from old and new together.
STATE_FIELDS: Final = ("change", "dns", "findings")

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
            await client.app[RUNTIME].prepare_pool.start()
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
        assert client.app[RUNTIME].prepare_pool.wants(body), "not big enough for a worker"
    else:
        assert len(body) < MIN_BODY_BYTES or not client.app[RUNTIME].prepare_pool.enabled
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


# --- any damage to any one event (Z1 of the review, as a property) ----------------------------

KEEP: Final = compile_filter(DEFAULT_FILTER)
# Small captures keep each example fast; together they hold every kind of kept event.
SMALL: Final = [p.name for p in captured_bodies() if p.stat().st_size < 40_000]
REGIONS: Final = (
    "objectRef",
    "user",
    "responseStatus",
    "requestObject",
    "responseObject",
    "annotations",
    None,
)
RAW: Final = {
    "number": [b"1e999", b"-1e999", b"1.5e400"],
    "surrogate": [b'"\\ud800"', b'"x\\udfff"', b'"\\udbff\\u0041"'],
    "utf8": [b'"a\xffb"', b'"\xc3\x28"', b'"\xed\xa0\x80"', b'"\xf8\x88\x80\x80\x80"', b'"\x80"'],
}
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)


@dataclass(frozen=True, slots=True)
class Damage:
    capture: str
    items: list[Any]  # POISON marks where ``poison`` goes, if any
    victim: int
    poison: bytes | None
    audit_id: str
    stage: str
    root: bool  # the whole event was replaced: nothing left to trace it by

    def body(self, *, workers: int) -> bytes:
        body = _body(self.items, workers=workers)
        return body if self.poison is None else _poisoned(body, self.poison)

    def undecodable(self) -> bool:
        victim = orjson.dumps(self.items[self.victim])
        try:
            orjson.loads(victim if self.poison is None else _poisoned(victim, self.poison))
        except orjson.JSONDecodeError:
            return True
        return False


def _kept(item: Any) -> bool:
    try:
        return KEEP(check_event(item))
    except MalformedEventError:
        return False


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):
            found += _paths(child, (*prefix, index))
    return found


def _damage(draw: st.DrawFn, items: list[Any], victim: int, how: str) -> tuple[tuple[Any, ...], bytes | None]:
    """Damage one place of ``items[victim]``: returns where, and the raw bytes for POISON."""
    region = draw(st.sampled_from(REGIONS))
    paths = [p for p in _paths(items[victim]) if p != ("auditID",)]
    inside = [p for p in paths if p[0] == region]
    path: tuple[Any, ...] = draw(st.sampled_from(inside or [(), *paths]))
    *steps, last = (victim, *path)
    parent: Any = items
    for step in steps:
        parent = parent[step]
    event(f"damage: {how}, in {path[0] if path else 'the whole event'}")
    if how == "type":
        before = parent[last]
        parent[last] = draw(json_value.filter(lambda v: v is not None and type(v) is not type(before)))
        return path, None
    if how == "key" and isinstance(parent[last], dict):
        parent[last][POISON] = 1
        return path, draw(st.sampled_from(RAW["utf8"] + RAW["surrogate"]))
    parent[last] = POISON
    if how == "deep":
        depth = draw(st.integers(min_value=200, max_value=1100))
        return path, b"[" * depth + b"]" * depth
    return path, draw(st.sampled_from(RAW.get(how, RAW["utf8"])))


@st.composite
def damages(draw: st.DrawFn) -> Damage:
    """One event of a captured batch damaged in one to three places: values of another JSON
    type anywhere, then maybe raw bytes no decoder takes (nesting, numbers, surrogates,
    invalid UTF-8, in a value or a key)."""
    capture = draw(st.sampled_from(SMALL))
    items = capture_events(capture)
    kept = [i for i, item in enumerate(items) if _kept(item)]
    among_kept = bool(kept) and draw(st.booleans())
    victim = draw(st.sampled_from(kept) if among_kept else st.integers(0, len(items) - 1))
    audit_id, stage = items[victim]["auditID"], items[victim]["stage"]
    places = draw(st.integers(min_value=1, max_value=3))
    poison: bytes | None = None
    root = False
    for place in range(places):
        last = place == places - 1
        how = (
            draw(st.sampled_from(["deep", "number", "surrogate", "utf8", "key", "type"])) if last else "type"
        )
        path, poison = _damage(draw, items, victim, how)
        if not path:  # the whole event is gone: nothing more to damage, nothing to trace it by
            root = True
            break
    return Damage(capture, items, victim, poison, audit_id, stage, root=root)


_REFERENCE: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}


async def _reference(root: Path, capture: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The records of the undamaged capture, by (auditID, stage), from a fresh app."""
    if capture not in _REFERENCE:
        async with _app(root, workers=0) as (client, config):
            status, _ = await _post(client, _body(capture_events(capture), workers=0), workers=0)
            assert status == 200
            _REFERENCE[capture] = _by_event(await delivered(client, config))
    return _REFERENCE[capture]


async def _check(root: Path, damage: Damage, *, workers: int) -> None:
    expected = await _reference(root, damage.capture)
    async with _app(root, workers=workers) as (client, config):
        status, answer = await _post(client, damage.body(workers=workers), workers=workers)
        records = await delivered(client, config)
        letters = dead_letters_in(config)

    assert status == 200, answer
    victim = (damage.audit_id, damage.stage)
    order = {(e.get("auditID"), e.get("stage")): i for i, e in enumerate(capture_events(damage.capture))}

    def others(by_event: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """All but the victim's record; after a kept victim, without what it was the baseline of."""
        later = victim in expected
        return {
            key: {
                k: v
                for k, v in record.items()
                if not (later and order[key] > damage.victim and k in STATE_FIELDS)
            }
            for key, record in by_event.items()
            if key != victim
        }

    assert others(_by_event(records)) == others(expected)
    if not damage.root and (victim in expected or damage.undecodable()):
        assert _traced(damage.audit_id, records, letters)


ISOLATION = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(ISOLATION, max_examples=40)
@given(damage=damages())
async def test_any_damage_to_one_event_costs_only_that_event(tmp_path: Path, damage: Damage) -> None:
    """In the event loop: 200, every other record as undamaged, the damaged event traceable."""
    await _check(tmp_path, damage, workers=0)


@settings(ISOLATION, max_examples=12)
@given(damage=damages())
async def test_any_damage_to_one_event_costs_only_that_event_in_a_worker(
    tmp_path: Path, damage: Damage
) -> None:
    """The same through a worker process (a body big enough for one)."""
    await _check(tmp_path, damage, workers=1)
