"""The benchmark (bench/): its generator, its statistics, and a smoke run so that it cannot rot.

bench/ is not installed (it runs from a checkout); the checkout is on sys.path because tests/ is a package.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Final

import orjson
import pytest

from bench.certs import main as certs_bench
from bench.certs import tls_secrets
from bench.generate import STAMP, build_pool, load_captures
from bench.profile import read_profile
from bench.report import percentile, slope
from bench.spool_choice import main as spool_choice
from bench.stages import stage_costs
from tests.paths import ROOT
from webhook.events import check_event
from webhook.filter import DEFAULT_FILTER, compile_filter

KEEP = compile_filter(DEFAULT_FILTER)
CAPTURES = load_captures()
POOL = build_pool(seed=7, batches=10, batch_size=400, captures=CAPTURES)
# The order in which kube-apiserver writes an event's keys (tests/fixtures/apiserver-v1.26/README.md).
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


def test_statistics() -> None:
    """Percentiles interpolate between ranks; the slope is least squares."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)


def test_profile_summary_counts_self_and_inclusive_samples() -> None:
    """py-spy's collapsed stacks: a function's own samples, and every sample it is on the stack of."""
    profile = read_profile(
        [
            "run (asyncio/runners.py:1);f (webhook/server/app.py:10);"
            "decode_event_list (webhook/events.py:5) 3\n",
            "run (asyncio/runners.py:1);f (webhook/server/app.py:12) 1\n",
            "Thread._bootstrap (threading.py:1002);Spool._write (webhook/spool/segments.py:240) 2\n",
        ]
    )

    assert profile.samples == 6
    assert profile.own["decode_event_list (webhook/events.py)"] == 3
    assert profile.total["f (webhook/server/app.py)"] == 4
    assert profile.threads == {"main": 4, "worker threads": 2}
    assert profile.stages == {
        "decode (orjson)": 3,
        "handler (rest, incl. freeing the batch)": 1,
        "spool: write + fsync (thread)": 2,
    }


def test_spool_choice_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The spool micro-benchmark appends with both kinds and prints both rows."""
    assert spool_choice(["--batches", "3", "--repeats", "1", "--sizes", "5"]) == 0

    out = capsys.readouterr().out
    assert "segment files, 5 records/batch" in out
    assert "SQLite WAL, synchronous=FULL, 5 records/batch" in out


def test_certs_bench_runs_every_mix(capsys: pytest.CaptureFixture[str]) -> None:
    """The certificate-cache micro-benchmark prints the repeated, shared-CA and worst-case rows."""
    assert certs_bench(["--secrets", "6", "--repeated", "2", "--cache-size", "3", "--passes", "1"]) == 0

    out = capsys.readouterr().out
    for mix in ("2 certificates repeated", "distinct leaves, one CA", "all distinct, no CA (worst case)"):
        assert mix in out


def test_certs_bench_secrets_share_only_what_they_say() -> None:
    """Repeated mixes cycle through their leaves; the worst case shares no certificate bytes."""
    repeated = tls_secrets(6, distinct=2)
    distinct = tls_secrets(4, distinct=4, with_ca=False)

    assert len({s["tls.crt"] for s in repeated}) == 2
    assert len({s["ca.crt"] for s in repeated}) == 1
    assert len({s["tls.crt"] for s in distinct}) == 4
    assert all(set(s) == {"tls.crt", "tls.key"} for s in distinct)


async def test_stage_costs_cover_unmatched_and_matched_events() -> None:
    """bench.stages times every stage for both kinds of event through the real pipeline."""
    costs = await stage_costs(build_pool(seed=7, batches=1, large_every=0, captures=CAPTURES), repeats=1)

    assert set(costs) == {"unmatched", "matched"}
    assert costs["unmatched"]["to_json of the records"] < costs["matched"]["to_json of the records"]
    assert all(value > 0 for value in costs["matched"].values())


def test_smoke_run_prints_the_figures_and_checks_the_records(tmp_path: Path) -> None:
    """``python -m bench --smoke``: both modes against the real server, the same loads against the naive
    and the null server, the ratios between them; every matched event is recorded."""
    figures_file = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "record check: ok" in done.stdout
    for label in (
        "floor (orjson.loads + compiled filter",
        "events/s accepted",
        "ratio to the floor",
        "request latency p50 / p95 / p99 (ms)",
        "server CPU (cores)",
        "server RSS at start / peak (MB)",
        "client CPU (cores)",
        "bare HTTP round trip",
        "batch ≥ 60,000 events/s",
        "batch ≥ 1 x the naive server",
        "blocking p99 added over the null server ≤ 2.0 ms",
        "batch: naive server ÷ floor",
        "blocking: p50 added over the null server (ms)",
        "alternating, window by window, with the null server",
        "in turns, window by window: ingress-audit, the floor, the naive server",
        "the floor in turns with the loads",
    ):
        assert label in done.stdout, label
    figures = orjson.loads(figures_file.read_bytes())
    assert figures["floor"] > 0
    for mode in ("batch", "blocking"):
        result = figures["modes"][mode]
        assert result["record_check"], mode
        assert result["records"] == result["matched"] > 0, mode
        assert result["events_per_s"] > 0, mode
        assert result["latency_ms"]["p99"] >= result["latency_ms"]["p50"] > 0, mode
        assert result["rss_peak_mb"] + 1 >= result["rss_peak_sampled_mb"] > 0, mode  # VmHWM lags
        assert result["errors"] == {}, mode
    for mode in ("naive-batch", "null-batch", "null-blocking"):
        result = figures["modes"][mode]
        assert result["events_per_s"] > 0, mode
        assert result["errors"] == {}, mode
        assert result["records"] is None, mode
    # measured in turns, each window on its own
    for mode in ("batch", "naive-batch", "null-batch", "blocking", "null-blocking"):
        assert len(figures["modes"][mode]["windows_events_per_s"]) == 3, mode
    # the ratios are to the floor measured between the batch windows, not the one at the start
    assert len(figures["floor_windows"]) == 3
    assert figures["floor"] == statistics.median(figures["floor_windows"]) > 0
    assert figures["floor_at_start"] > 0
    ratios = figures["ratios"]
    batch_events = figures["modes"]["batch"]["events_per_s"]
    assert ratios["batch_to_floor"] == pytest.approx(batch_events / figures["floor"])
    assert ratios["naive_to_floor"] > 0
    assert ratios["ours_to_naive"] > 0
    blocking, null = (
        figures["modes"]["blocking"]["latency_ms"],
        figures["modes"]["null-blocking"]["latency_ms"],
    )
    assert ratios["blocking_p99_added_ms"] == pytest.approx(blocking["p99"] - null["p99"])


def test_access_mode_smoke_counts_every_line(tmp_path: Path) -> None:
    """``python -m bench --mode access --smoke``: every line parsed and aggregated, RSS sampled."""
    figures_file = tmp_path / "access.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--mode", "access", "--smoke", "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr.decode()[-2000:]
    figures = orjson.loads(figures_file.read_bytes())["access"]
    assert figures["lines"] == 20_000
    assert figures["lines_per_s"] > 0
    assert figures["summaries"] > 0
    assert len(figures["rss_mb"]) == 10
    assert b"lines/s" in run.stdout
