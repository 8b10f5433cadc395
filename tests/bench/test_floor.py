"""The floor: decoding and filtering the senders' bodies, timed with the cyclic collector off."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

import bench.floor
from bench.floor import measure_floor
from webhook.filter import compile_filter


def _body(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(events)})


_KEPT = {
    "stage": "ResponseComplete",
    "verb": "create",
    "objectRef": {"resource": "secrets", "apiGroup": "", "namespace": "a", "name": "b"},
}
_DROPPED = {"stage": "ResponseComplete", "verb": "get", "objectRef": {"resource": "pods", "namespace": "a"}}
_BODIES = [_body(_KEPT, _DROPPED, _DROPPED), _body(_DROPPED)]


@pytest.fixture
def collector_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether the collector was on, each time the floor's filter ran."""
    seen: list[bool] = []

    def spying(spec: Any) -> Callable[[Any], bool]:
        keep = compile_filter(spec)

        def spy(event: Any) -> bool:
            seen.append(gc.isenabled())
            return keep(event)

        return spy

    monkeypatch.setattr(bench.floor, "compile_filter", spying)
    enabled = gc.isenabled()
    yield seen
    if enabled:
        gc.enable()


def test_the_floor_is_timed_with_the_collector_off(collector_seen: list[bool]) -> None:
    """With the default thresholds the collector runs every 700 allocations of decoded events
    and scans the benchmark's whole heap: a cost the server's tuned collector does not pay."""
    gc.enable()
    floor = measure_floor(_BODIES, repeats=2, min_s=0.01)
    assert collector_seen
    assert not any(collector_seen)
    assert gc.isenabled()  # on again after
    assert floor.matched == 1
    assert len(floor.runs) == 2
    assert floor.events_per_s > 0


def test_a_collector_that_was_off_stays_off(collector_seen: list[bool]) -> None:
    gc.disable()
    measure_floor(_BODIES, repeats=1, min_s=0.0)
    assert collector_seen
    assert not gc.isenabled()
