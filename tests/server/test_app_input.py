"""The security review's input rows (I1-I28) against /audit, each as its own case.

Every case: the documented answer, a dead letter for what is refused or dropped, and a server
that records the next valid batch. The memory side of the large ones (I19, I20, I29-I31) is in
tests/scenarios/test_memory_limits.py; these check the answers.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Client, dead_letters_in, delivered, event_list, make_config, make_event
from webhook.config import Config
from webhook.server.app import create_app

MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['


def _kept(n: int) -> dict[str, Any]:
    return make_event(audit_id=f"00000000-0000-4000-8000-{n:012d}", name=f"web-{n}")


async def _post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    data = io.BytesIO(body) if len(body) > MiB else body  # aiohttp warns on large bytes
    resp = await client.post("/audit?timeout=30s", data=data, headers=headers)
    payload = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, payload


async def _records_the_next_batch(client: Client, config: Config) -> None:
    before = len(await delivered(client, config))
    status, _ = await _post(client, event_list(_kept(999_999)), JSON)
    assert status == 200
    assert len(await delivered(client, config)) == before + 1


@pytest.fixture
async def served(aiohttp_client: Any, tmp_path: Path) -> tuple[Client, Config]:
    config = make_config(tmp_path, max_body_bytes=64 * MiB)
    client: Client = await aiohttp_client(create_app(config))
    return client, config


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


_CASES: dict[str, tuple[bytes, dict[str, str], int, str | None]] = {
    # id: (body, headers, status, error or dead-letter reason)
    "I1 empty body": (b"", JSON, 400, "not-json"),
    "I2 not JSON": (b"hello", JSON, 400, "not-json"),
    "I3 a JSON array": (b"[]", JSON, 400, "not-event-list"),
    "I4 a JSON string": (b'"x"', JSON, 400, "not-event-list"),
    "I5 another kind": (b'{"kind":"Pod"}', JSON, 400, "not-event-list"),
    "I6 100k-deep array": (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "not-json"),
    "I7 100k-deep object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JSON, 400, "not-event-list"),
    "I8 1e999 as an item": (HEAD + b"1e999]}", JSON, 200, "event-not-json"),
    "I9 NaN as an item": (HEAD + b"NaN]}", JSON, 200, "event-not-json"),
    "I11 not UTF-8 inside an item": (HEAD + b'{"auditID":"\xff"}]}', JSON, 200, "event-not-json"),
    "I12 text/html": (event_list(_kept(1)), {"Content-Type": "text/html"}, 415, "unsupported-media-type"),
    "I13 no Content-Type": (event_list(_kept(1)), {}, 415, "unsupported-media-type"),
    "I16 a million {} items": (HEAD + b"{}," * 999_999 + b"{}]}", JSON, 413, "body-too-large"),
    "I21 a valid prefix and 1 GiB of spaces, gzip'd": (
        b"",  # built lazily below: too large to keep in the module
        {**JSON, "Content-Encoding": "gzip"},
        413,
        "body-too-large",
    ),
    # One layer is decoded: stacked encodings would multiply a bomb's expansion.
    "I26 gzip, gzip": (
        _gzip(_gzip(event_list(_kept(1)))),
        {**JSON, "Content-Encoding": "gzip, gzip"},
        400,
        "not-json",
    ),
}


@pytest.mark.parametrize("case", list(_CASES))
async def test_input_rows(served: tuple[Client, Config], case: str) -> None:
    client, config = served
    body, headers, status, reason = _CASES[case]
    if case.startswith("I21"):
        body = _gzip(HEAD + orjson.dumps(_kept(2)) + b" " * (1024 * MiB) + b"]}")

    got, payload = await _post(client, body, headers)

    assert got == status, payload
    if status != 200:
        assert payload["error"] == reason
    if reason is not None:
        assert reason in [letter["reason"] for letter in dead_letters_in(config)]
    await _records_the_next_batch(client, config)


async def test_i10_a_duplicate_key_takes_the_last_value(served: tuple[Client, Config]) -> None:
    """I10: ``kind`` twice, the last one an EventList: decoded as orjson does, the last wins."""
    client, config = served
    body = b'{"kind":"Pod",' + event_list(_kept(3))[1:]

    assert (await _post(client, body, JSON))[0] == 200
    assert len(await delivered(client, config)) == 1


async def test_i14_a_charset_parameter_is_accepted(served: tuple[Client, Config]) -> None:
    """I14: ``application/json; charset=latin-1`` is still JSON (the body is bytes to us)."""
    client, config = served

    status, _ = await _post(
        client, event_list(_kept(4)), {"Content-Type": "application/json; charset=latin-1"}
    )

    assert status == 200
    assert len(await delivered(client, config)) == 1


async def test_i15_one_huge_event_is_dead_lettered_alone(served: tuple[Client, Config]) -> None:
    """I15: one kept event with a 20 MiB requestURI beside a normal one: 200, the huge one is
    dead-lettered as too large, the other recorded."""
    client, config = served
    huge = {**_kept(5), "requestURI": "/apis/networking.k8s.io/v1/ingresses?" + "a" * (20 * MiB)}

    status, answer = await _post(client, event_list(huge, _kept(6)), JSON)

    assert (status, answer["records"], answer["dead_lettered"]) == (200, 1, 1)
    assert [letter["reason"] for letter in dead_letters_in(config)] == ["event-too-large"]


async def test_i17_ten_thousand_kept_events_are_all_recorded(served: tuple[Client, Config]) -> None:
    """I17: the event limit's worth of kept events in one batch: all recorded."""
    client, _ = served
    events = [_kept(n) for n in range(10_000)]

    status, answer = await _post(client, orjson.dumps({**orjson.loads(event_list()), "items": events}), JSON)

    assert (status, answer["records"]) == (200, 10_000)


async def test_i22_a_body_of_spaces_under_the_limit_is_recorded(served: tuple[Client, Config]) -> None:
    """I22: a valid EventList padded with 60 MiB of spaces, under the 64 MiB limit: recorded."""
    client, _ = served
    body = HEAD + orjson.dumps(_kept(7)) + b" " * (60 * MiB) + b"]}"

    status, answer = await _post(client, body, JSON)

    assert (status, answer) == (200, {"accepted": 1, "records": 1, "duplicates": 0, "dead_lettered": 0})


async def test_i28_a_declared_length_over_the_limit_is_refused_unread(served: tuple[Client, Config]) -> None:
    """I28: ``Content-Length`` of 70 MiB: 413 before a byte of the body is read."""
    client, _ = served
    resp = await client.post(
        "/audit?timeout=30s", data=b"x", headers={**JSON, "Content-Length": str(70 * MiB)}, chunked=None
    )

    assert resp.status == 413
    assert (await resp.json())["error"] == "body-too-large"
