"""The benchmark (bench/): its generator of realistic EventLists.

bench/ is not installed (it runs from a checkout), so the repository root goes on sys.path.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Final

import orjson

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generate import STAMP, build_pool, load_captures  # noqa: E402
from webhook.events import check_event  # noqa: E402
from webhook.filter import DEFAULT_FILTER, compile_filter  # noqa: E402

KEEP = compile_filter(DEFAULT_FILTER)
CAPTURES = load_captures()
POOL = build_pool(seed=7, batches=10, batch_size=400, captures=CAPTURES)
# The order in which kube-apiserver writes an event's keys (../shared/fixtures/.../README.md).
KEY_ORDER: Final = [
    *("level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser", "sourceIPs"),
    *("userAgent", "objectRef", "responseStatus", "requestObject", "responseObject"),
    *("requestReceivedTimestamp", "stageTimestamp", "annotations"),
]


def _events(stamp: int) -> list[dict[str, object]]:
    return [e for body in POOL.batches for e in orjson.loads(body.render(stamp))["items"]]


def test_the_pool_is_deterministic_from_the_seed() -> None:
    """The same seed gives the same bytes; another seed gives other bytes."""
    again = build_pool(seed=7, batches=10, batch_size=400, captures=CAPTURES)
    other = build_pool(seed=8, batches=10, batch_size=400, captures=CAPTURES)

    assert again == POOL
    assert other.batches[0].parts != POOL.batches[0].parts


def test_each_send_carries_fresh_auditids() -> None:
    """Within a pool and across stamps, no two sent events share an auditID."""
    ids = [e["auditID"] for stamp in (0, 1, 0xFFFFFFFF) for e in _events(stamp)]

    assert len(ids) == len(set(ids)) == 3 * POOL.events
    assert all(STAMP not in part for body in POOL.singles for part in body.parts[1:-1])


def test_the_mix_looks_like_a_busy_cluster() -> None:
    """~5 % matched; the rest is system traffic on pods, leases, configmaps, endpoints, events at ~1 kB."""
    events = [check_event(e) for e in _events(0)]
    kept = [e for e in events if KEEP(e)]
    rest = [e for e in events if not KEEP(e)]
    resources = Counter(e["objectRef"]["resource"] for e in rest)
    users = Counter(e["user"]["username"].split(":")[1] for e in rest)
    sizes = [len(orjson.dumps(e)) for e in rest]

    assert 0.03 < len(kept) / len(events) < 0.07
    assert POOL.matched == len(kept)
    busy = ("pods", "leases", "configmaps", "endpoints", "events")
    assert sum(resources[r] for r in busy) > 0.7 * len(rest)
    assert users["node"] + users["serviceaccount"] + users["kube-scheduler"] > 0.8 * len(rest)
    assert 900 < sum(sizes) / len(sizes) < 1300
    assert {e["objectRef"]["resource"] for e in kept} >= {"ingresses", "secrets", "httproutes"}
    assert {e["responseStatus"]["code"] for e in kept} >= {401, 403}
    for event in events:
        keys = list(event)
        assert keys == sorted(keys, key=KEY_ORDER.index)


def test_bodies_are_written_the_way_the_apiserver_writes_them() -> None:
    """Compact JSON, trailing newline, Go's HTML-safe escaping of & < >."""
    body = POOL.batches[0].render(1)

    assert body.startswith(b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[')
    assert body.endswith(b"]}\n")
    assert b"&" not in body
    assert b"\\u0026" in body
    assert POOL.batches[0].size == len(body)
