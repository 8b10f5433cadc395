"""Fuzzing /audit: 10,000+ generated bodies, no 500s, no crash, valid events still recorded.

Bodies are valid captured batches, mutated captured batches (a field removed, retyped or
replaced; bytes cut or inserted; events duplicated or replaced by junk) and plain junk. The
app is the real one, driven over HTTP by aiohttp's test client; it is shared by all examples,
so retried events may come back as duplicates, which counts as kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CAPTURES, Client, make_config
from webhook.config import Config
from webhook.events import check_event
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.server.app import create_app

KEEP = compile_filter(DEFAULT_FILTER)
OK_STATUSES = {200, 400, 413, 415}
# Small captures keep 10k examples fast; they still hold every kind of kept event.
SMALL = sorted(p for p in CAPTURES.glob("[0-9][0-9][0-9][0-9].json") if p.stat().st_size < 40_000)
BATCHES = [orjson.loads(p.read_bytes()) for p in SMALL]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:5]):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_batches(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A captured batch with one event damaged; returns the body and the untouched kept indexes."""
    batch = copy.deepcopy(draw(st.sampled_from(BATCHES)))
    items: list[Any] = batch["items"]
    victim = draw(st.integers(min_value=0, max_value=len(items) - 1))
    operation = draw(st.sampled_from(["delete", "retype", "replace-event", "duplicate"]))
    if operation == "replace-event":
        items[victim] = draw(json_value)
    elif operation == "duplicate":
        items.insert(victim, copy.deepcopy(items[victim]))
    else:
        paths = _paths(items[victim])
        if paths:
            path = draw(st.sampled_from(paths))
            parent = items[victim]
            for step in path[:-1]:
                parent = parent[step]
            if operation == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_value)
    untouched = [i for i, item in enumerate(items) if i != victim and isinstance(item, dict) and _kept(item)]
    return orjson.dumps(batch) + b"\n", untouched


def _kept(item: dict[str, Any]) -> bool:
    try:
        return KEEP(check_event(item))
    except Exception:  # noqa: BLE001 - a damaged event is simply not expected to be kept
        return False


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    body = orjson.dumps(draw(st.sampled_from(BATCHES)))
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    if draw(st.booleans()):
        return body[:cut]
    return body[:cut] + draw(st.binary(min_size=1, max_size=8)) + body[cut:]


junk = st.one_of(
    st.binary(max_size=64),
    json_value.map(orjson.dumps),
    st.fixed_dictionaries(
        {"kind": st.just("EventList"), "apiVersion": st.just("audit.k8s.io/v1"), "items": json_value}
    ).map(orjson.dumps),
)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> tuple[Client, Config]:
    config = make_config(tmp_path)
    app_client: Client = await aiohttp_client(create_app(config))
    return app_client, config


FUZZ = settings(
    max_examples=4000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(case=mutated_batches())
async def test_mutated_captures_keep_their_valid_events(
    client: tuple[Client, Config], case: tuple[bytes, list[int]]
) -> None:
    """A damaged event costs only itself: every untouched kept event is recorded (or a duplicate)."""
    app_client, _ = client
    body, untouched = case
    resp = await app_client.post(
        "/audit?timeout=30s", data=body, headers={"Content-Type": "application/json"}
    )
    payload = await resp.json()

    assert resp.status == 200, payload
    assert payload["records"] + payload["duplicates"] >= len(untouched)


@FUZZ
@given(body=byte_mutations())
async def test_byte_mutations_never_fail_the_server(client: tuple[Client, Config], body: bytes) -> None:
    """Cut or corrupted bytes get a documented status, never a 500 or 503."""
    app_client, _ = client
    resp = await app_client.post("/audit", data=body, headers={"Content-Type": "application/json"})

    assert resp.status in OK_STATUSES


@settings(FUZZ, max_examples=2500)
@given(body=junk)
async def test_junk_never_fails_the_server(client: tuple[Client, Config], body: bytes) -> None:
    """Arbitrary bytes and JSON get a documented status, never a 500 or 503."""
    app_client, _ = client
    resp = await app_client.post("/audit", data=body, headers={"Content-Type": "application/json"})

    assert resp.status in OK_STATUSES
    assert (await resp.read()).startswith(b"{")
