"""POST /ingest/access bodies as Fluent Bit's http output and Vector's http sink send them."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.access.entry import AccessParseError
from webhook.access.parsers import build_parser
from webhook.errors import BodyTooLargeError
from webhook.sources.access_body import IngestError, IngestItem, decode_body

LINE = (
    '10.244.0.1 - - [25/Nov/2026:20:25:05 +0000] "GET /api HTTP/1.1" 200 612 "-" "curl/8.5.0" 523 0.005 '
    "[shop-api-80] [] 10.244.1.7:8080 612 0.004 200 6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c"
)
# Fluent Bit tail + kubernetes filter record; "date" is json_date_key's default.
FLUENT_BIT = {
    "date": 1795638305.25,
    "time": "2026-11-25T20:25:05.250000000Z",
    "stream": "stdout",
    "log": LINE + "\n",
    "kubernetes": {"pod_name": "ingress-nginx-controller-7d9f", "namespace_name": "ingress-nginx"},
}
# Vector kubernetes_logs event.
VECTOR = {
    "message": LINE,
    "timestamp": "2026-11-25T20:25:05.250Z",
    "host": "node-1",
    "source_type": "kubernetes_logs",
    "stream": "stdout",
}
TRAEFIK = {"ClientHost": "10.0.0.1", "DownstreamStatus": 200, "RequestPath": "/"}
AUTO = build_parser("auto")


def _values(body: bytes) -> list[Any]:
    items = list(decode_body(body))
    assert all(isinstance(i, IngestItem) for i in items), items
    return [i.value for i in items if isinstance(i, IngestItem)]


def test_fluent_bit_json_array() -> None:
    """``format json``: an array of records, the line under ``log`` (trailing newline removed)."""
    assert _values(orjson.dumps([FLUENT_BIT, FLUENT_BIT])) == [LINE, LINE]


def test_fluent_bit_json_lines() -> None:
    """``format json_lines``: one record per line."""
    body = orjson.dumps(FLUENT_BIT) + b"\n" + orjson.dumps(FLUENT_BIT) + b"\n"

    assert _values(body) == [LINE, LINE]


def test_fluent_bit_json_stream() -> None:
    """``format json_stream``: records concatenated with no separator."""
    body = orjson.dumps(FLUENT_BIT) + orjson.dumps(VECTOR) + orjson.dumps(FLUENT_BIT)

    assert _values(body) == [LINE, LINE, LINE]


def test_vector_json_array_and_ndjson() -> None:
    """Vector ``codec: json`` as an array (no framing) or ``newline_delimited``; line under ``message``."""
    assert _values(orjson.dumps([VECTOR, VECTOR])) == [LINE, LINE]
    assert _values(b"\n".join([orjson.dumps(VECTOR)] * 3)) == [LINE] * 3


def test_vector_text_codec() -> None:
    """Vector ``codec: text`` (or a plain file): raw lines, CRLF and blank lines tolerated."""
    body = (LINE + "\r\n\n" + LINE + "\n").encode()

    assert _values(body) == [LINE.encode(), LINE.encode()]


def test_structured_records_pass_through() -> None:
    """A record without a message key is access fields already (Traefik JSON, nginx JSON)."""
    values = _values(orjson.dumps([TRAEFIK, {"message": TRAEFIK}]))

    assert values == [TRAEFIK, TRAEFIK]
    assert all(AUTO(v).format == "traefik-json" for v in values)


def test_items_feed_the_parsers() -> None:
    """Every shape ends as entries the auto parser reads."""
    for body in (orjson.dumps([FLUENT_BIT, VECTOR]), (LINE + "\n").encode(), orjson.dumps(VECTOR)):
        assert all(AUTO(v).request_id == "6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c" for v in _values(body))


def test_message_keys_configurable() -> None:
    """Shippers that put the line elsewhere name their key."""
    items = list(decode_body(orjson.dumps([{"msg": LINE}]), message_keys=("msg",)))

    assert items == [IngestItem(0, LINE)]


def test_bad_items_do_not_fail_the_body() -> None:
    """A broken line or a non-record is one error with its index; the others still decode."""
    body = b"\n".join(
        [orjson.dumps(VECTOR), b'{"message": "cut', b"42", orjson.dumps({"log": ""}), orjson.dumps(VECTOR)]
    )

    items = list(decode_body(body))

    assert [type(i).__name__ for i in items] == [
        "IngestItem",
        "IngestError",
        "IngestError",
        "IngestError",
        "IngestItem",
    ]
    errors = [i for i in items if isinstance(i, IngestError)]
    assert [(e.index, e.reason) for e in errors] == [(1, "not-json"), (2, "bad-item"), (3, "empty")]
    assert all("cut" not in e.message for e in errors)
    assert [i.index for i in items] == [0, 1, 2, 3, 4]


def test_array_items_errors() -> None:
    """In an array, non-record items are errors with their index."""
    items = list(decode_body(orjson.dumps([VECTOR, 7, None, [1], "raw line"])))

    assert [(i.index, i.reason) for i in items if isinstance(i, IngestError)] == [
        (1, "bad-item"),
        (2, "bad-item"),
        (3, "bad-item"),
    ]
    assert items[4] == IngestItem(4, "raw line")


def test_broken_array_is_one_error() -> None:
    """An array that is not valid JSON cannot be split: one error for the body."""
    assert list(decode_body(b'[{"message": "a"},')) == [
        IngestError(0, "not-json", "body starts like a JSON array but is not valid JSON")
    ]


def test_empty_body() -> None:
    """An empty or blank body has no items."""
    assert list(decode_body(b"")) == list(decode_body(b" \n\t")) == []


_JSONISH = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\n", b"{}", b'"log"', b":", b","])


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | st.lists(_JSONISH).map(b"".join))
def test_arbitrary_bodies_never_raise(body: bytes) -> None:
    """Any body decodes to items and errors, and every item parses or fails with AccessParseError."""
    for item in decode_body(body):
        if isinstance(item, IngestItem):
            try:
                AUTO(item.value)
            except AccessParseError:
                continue


# -- max_items: refused before the rest is split (security review finding 7, I18/I19) -----------

LIMIT = 100
HUGE = 64 * 1024 * 1024


def _shapes(n: int) -> dict[str, bytes]:
    record = orjson.dumps(VECTOR)
    return {
        "text": b"\n".join([b"ab"] * n),
        "json-lines": b"\n".join([record] * n),
        "json-stream": record * n,
        "array": b"[" + b",".join([record] * n) + b"]",
        "array-of-empty": b"[" + b",".join([b"{}"] * n) + b"]",
    }


@pytest.mark.parametrize("shape", ["text", "json-lines", "json-stream", "array", "array-of-empty"])
def test_at_the_limit_every_shape_is_read(shape: str) -> None:
    """Exactly max_items items, with blank lines between, all come out."""
    body = _shapes(LIMIT)[shape].replace(b"\n", b"\n \r\n\n")
    assert len(list(decode_body(body, max_items=LIMIT))) == LIMIT


@pytest.mark.parametrize("shape", ["text", "json-lines", "json-stream", "array", "array-of-empty"])
def test_one_more_item_is_refused_in_every_shape(shape: str) -> None:
    """Item max_items + 1 raises BodyTooLargeError, whatever the shape."""
    with pytest.raises(BodyTooLargeError, match=f"limit of {LIMIT} lines"):
        list(decode_body(_shapes(LIMIT + 1)[shape], max_items=LIMIT))


def test_blank_lines_do_not_count() -> None:
    """Blank lines are skipped, however many: only lines with content are items."""
    body = b"\n" * 1_000_000 + b" \t\r\n" * 1000 + b"ab\n"
    assert [item.index for item in decode_body(body, max_items=1)] == [0]


def _huge(shape: str) -> bytes:
    if shape == "text":
        return b"a\n" * (HUGE // 2)
    if shape == "array":
        return b"[" + b"{}," * (HUGE // 3) + b"{}]"
    return b"{}" * (HUGE // 2)


@pytest.mark.parametrize("shape", ["text", "array", "json-stream"])
def test_a_huge_body_is_refused_without_splitting_it(shape: str) -> None:
    """64 MiB of 2-byte lines (33 million) or of {} items is refused in well under a second.

    Splitting them first took 18 s of event-loop CPU and 675 MB."""
    body = _huge(shape)
    started = time.process_time()
    with pytest.raises(BodyTooLargeError):
        list(decode_body(body, max_items=10_000))
    assert time.process_time() - started < 1.0
