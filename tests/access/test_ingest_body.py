"""POST /ingest/access bodies as Fluent Bit's http output and Vector's http sink send them."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.access.entry import AccessParseError
from webhook.access.ingest_body import IngestError, IngestItem, decode_body
from webhook.access.parsers import build_parser

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
