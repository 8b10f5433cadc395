"""The tolerant scanner finds each value whatever it holds, and refuses broken structure."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.jsonscan import ScanError, count_items, elements, members, read_fields, top_members

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids, max_size=5),
    max_leaves=25,
)
LAYOUTS = [0, orjson.OPT_INDENT_2]


@settings(max_examples=100, deadline=None)
@given(items=st.lists(json_value, max_size=8), layout=st.sampled_from(LAYOUTS))
def test_elements_are_the_items(items: list[Any], layout: int) -> None:
    """Every element's span decodes to that element, however it is nested or spaced."""
    buf = orjson.dumps(items, option=layout)

    spans = elements(buf, 0, len(buf))

    assert [orjson.loads(buf[start:end]) for start, end in spans] == items


@settings(max_examples=100, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=8), json_value, max_size=8), layout=st.sampled_from(LAYOUTS))
def test_members_are_the_fields(doc: dict[str, Any], layout: int) -> None:
    buf = b"  " + orjson.dumps(doc, option=layout) + b"\n"

    found = top_members(buf)

    assert {key: orjson.loads(buf[start:end]) for key, start, end in found} == doc


@pytest.mark.parametrize(
    "poison",
    [
        b"[" * 5000 + b"]" * 5000,
        b"1e999",
        b'"\\ud800"',
        b'"a\xffb"',
        b'"x\\"]}],{"',
        b'{"a":"\\\\"}',
        b"NaN",
    ],
)
def test_what_a_value_holds_does_not_move_the_boundaries(poison: bytes) -> None:
    buf = b'[{"auditID":"a"}, {"auditID":"b","requestObject":' + poison + b'} ,{"auditID":"c"}]'

    spans = elements(buf, 0, len(buf))

    assert [buf[s:e][:14] for s, e in spans] == [b'{"auditID":"a"', b'{"auditID":"b"', b'{"auditID":"c"']
    assert read_fields(buf, *spans[1], names=("auditID", "requestObject")).get("auditID") == "b"


def test_read_fields_decodes_only_what_is_asked() -> None:
    """Fields named and members of the nested objects named; a field that does not decode is
    left out, and so is everything else."""
    buf = b'{"auditID":"a","stage":1e999,"objectRef":{"name":"n","uid":"\\ud800","x":"y"},"body":"z"}'

    fields = read_fields(buf, 0, len(buf), ("auditID", "stage"), {"objectRef": ("name", "uid")})

    assert fields == {"auditID": "a", "objectRef": {"name": "n"}}


@pytest.mark.parametrize(
    "broken",
    [b"", b"[", b"[1,]", b"[,1]", b'["abc]', b"[[1]", b"{}x", b'{"a" 1}', b'{"a":}', b"{1:2}"],
)
def test_broken_structure_is_refused(broken: bytes) -> None:
    scan = (lambda b: elements(b, 0, len(b))) if broken.startswith(b"[") else top_members

    with pytest.raises(ScanError):
        scan(broken)


def test_members_of_an_empty_object_and_array() -> None:
    assert members(b"{ }", 0, 3) == []
    assert elements(b"[\n]", 0, 3) == []


@pytest.mark.parametrize(
    "inner",
    [
        b"[" * 2_000_000 + b"]" * 2_000_000,  # deep
        b"[" + b"[]," * 1_000_000 + b"1]",  # many shallow values
        b"[" + b"[[[[[[[[]]]]]]]]," * 200_000 + b"1]",  # deeper than the regular expressions reach
        b"[" + b'"a\\"b",' * 500_000 + b"1]",  # strings with escapes
    ],
    ids=["deep", "flat", "stairs", "strings"],
)
def test_hostile_shapes_scan_in_bounded_time(inner: bytes) -> None:
    """A few MB of any shape scan in well under a second per MB (no byte-by-byte Python loop)."""
    buf = b"[" + inner + b"]"
    started = time.process_time()

    spans = elements(buf, 0, len(buf))

    assert len(spans) == 1
    assert time.process_time() - started < 1.0 * (len(buf) >> 20 or 1)


@pytest.mark.parametrize(
    ("body", "stop", "expected"),
    [
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}', 5, 0),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{},[],1]}', 5, 3),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{},[],1]}', 2, 2),
        (b' {"items": [{"a": "],["}, {"b": [[[]]]}], "kind": "EventList"}', 9, 2),
        (b'{"kind":"EventList","items":null}', 9, 0),
    ],
)
def test_count_items_stops_at_stop(body: bytes, stop: int, expected: int) -> None:
    """The items are counted in either member order, through strings and nesting, up to ``stop``."""
    assert count_items(body, stop) == expected


def test_count_items_of_millions_of_tiny_items_is_quick() -> None:
    """22 million ``{}`` items: counting stops after ``stop``, long before the end."""
    head = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
    body = head + b"{}," * 22_000_000 + b"{}]}"

    started = time.perf_counter()
    assert count_items(body, 10_001) == 10_001
    assert time.perf_counter() - started < 1.0
