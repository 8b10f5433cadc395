"""``python -m bench``: the floor, then batch mode and blocking mode against the real server.

``--smoke`` runs the same steps with small counts in a few seconds (the test suite runs it);
``--soak MINUTES`` runs steady batch load instead and reports RSS over time and its slope.
Exit status 1 means a record check failed (the figures are reported either way).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson

from bench.floor import Floor, measure_floor
from bench.generate import Pool, build_pool
from bench.measure import Load, ModeResult, run_mode
from bench.report import machine, slope, table

__all__ = ["Settings", "main"]

BATCH_TARGET: Final = 60_000
RATIO_TARGET: Final = 0.5
BLOCKING_P99_MS: Final = 2.0
RSS_TARGET_MB: Final = 150
FLAT_MB_PER_MIN: Final = 0.5  # our reading of "flat": under this over the soak's second half
MAX_SOAK_MIN: Final = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    seed: int = 20261124
    batches: int = 48
    batch_size: int = 400
    batch_s: float = 24.0
    blocking_s: float = 15.0
    baseline_s: float = 3.0
    senders: int = 4
    sender_procs: int = 1
    concurrency: int = 8
    floor_min_s: float = 0.5
    soak_min: float = 0.0
    sample_s: float = 5.0
    rate: float = 0.0
    blocking_rate: float = 0.0
    large_every: int = 10_000
    catch_up_s: float = 120.0


SMOKE: Final = Settings(
    batches=3, batch_size=100, batch_s=1.5, blocking_s=1.5, baseline_s=0.5, senders=2, floor_min_s=0.05
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    default = Settings()
    parser.add_argument("--smoke", action="store_true", help="a few seconds, small counts (CI)")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help=f"steady batch load (≤ {MAX_SOAK_MIN})")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--batches", type=int, help=f"distinct bodies in the pool ({default.batches})")
    parser.add_argument("--batch-size", type=int, help=f"events per batch-mode body ({default.batch_size})")
    parser.add_argument("--duration", type=float, help=f"batch-mode seconds ({default.batch_s})")
    parser.add_argument(
        "--blocking-duration", type=float, help=f"blocking-mode seconds ({default.blocking_s})"
    )
    parser.add_argument("--senders", type=int, help=f"concurrent batch senders ({default.senders})")
    parser.add_argument("--sender-procs", type=int, help=f"sender processes ({default.sender_procs})")
    parser.add_argument(
        "--concurrency", type=int, help=f"blocking-mode requests in flight ({default.concurrency})"
    )
    parser.add_argument("--rate", type=float, help="events/s to pace batch senders at (default: flat out)")
    parser.add_argument(
        "--blocking-rate", type=float, help="requests/s to pace blocking mode at (default: back to back)"
    )
    parser.add_argument(
        "--sample", type=float, help=f"soak: seconds between RSS samples ({default.sample_s})"
    )
    parser.add_argument(
        "--mode",
        choices=["both", "batch", "blocking", "access"],
        default="both",
        help="access: access-log lines parsed and aggregated per core, in-process",
    )
    parser.add_argument(
        "--access-lines", type=int, default=2_000_000, help="access mode: lines (smoke: 20,000)"
    )
    parser.add_argument(
        "--access-clients",
        type=int,
        default=1_000_000,
        help="access mode: distinct client addresses (smoke: 10,000)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--config", type=Path, help="serve with this config (keep the jsonl sink at records.jsonl)"
    )
    parser.add_argument(
        "--large-every", type=int, help="one very large list response per N events (10000; 0: none)"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="profile the server with py-spy, one file per mode (.svg, .json, else collapsed stacks)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = SMOKE if args.smoke else Settings()
    overrides = {
        "seed": args.seed,
        "batches": args.batches,
        "batch_size": args.batch_size,
        "batch_s": args.duration,
        "blocking_s": args.blocking_duration,
        "senders": args.senders,
        "sender_procs": args.sender_procs,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "blocking_rate": args.blocking_rate,
        "sample_s": args.sample,
        "soak_min": args.soak,
        "large_every": args.large_every,
    }
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _profile_path(args: argparse.Namespace, mode: str) -> Path | None:
    """``--py-spy prof.svg`` writes prof-batch.svg and prof-blocking.svg."""
    path: Path | None = args.py_spy
    return path.with_name(f"{path.stem}-{mode}{path.suffix}") if path else None


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _pool_line(pool: Pool, settings: Settings) -> str:
    sizes = [b.size for b in pool.batches]
    singles = [b.size for b in pool.singles]
    unmatched = [s for s, b in zip(singles, pool.singles, strict=True) if not b.matched]
    envelope = len(b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n')
    return (
        f"pool: {len(pool.batches)} bodies x {settings.batch_size} events = {pool.events:,} events (seed "
        f"{settings.seed}), {pool.matched / pool.events:.1%} matched, mean unmatched event "
        f"{sum(unmatched) / len(unmatched) - envelope:.0f} B, "
        f"mean body {sum(sizes) / len(sizes) / 1e3:.0f} kB, "
        f"{sum(1 for s in singles if s > 200_000)} list responses > 200 kB"
    )


def _fmt(value: float, spec: str = ",.0f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def _mode_rows(modes: Sequence[ModeResult], floor: Floor) -> list[list[str]]:
    def row(label: str, get: Any) -> list[str]:
        return [label, *(get(m) for m in modes)]

    return [
        row("events/s accepted (median of 3 windows)", lambda m: _fmt(m.median("events_per_s"))),
        row("  the 3 windows", lambda m: " / ".join(_fmt(w.events_per_s) for w in m.windows)),
        row("ratio to the floor", lambda m: _fmt(m.median("events_per_s") / floor.events_per_s, ".2f")),
        row("requests/s", lambda m: _fmt(m.median("requests_per_s"))),
        row(
            "request latency p50 / p95 / p99 (ms)",
            lambda m: " / ".join(_fmt(m.median(f"p{q}_ms"), ".2f") for q in (50, 95, 99)),
        ),
        row(
            "p50 / p99 (ms): requests without | with a matched event",
            lambda m: " | ".join(
                " / ".join(_fmt(v, ".2f") for v in m.latency_by_kind.get(kind, (math.nan, math.nan)))
                for kind in ("unmatched", "matched")
            ),
        ),
        row("server CPU (cores)", lambda m: _fmt(m.median("server_cores"), ".2f")),
        row("server CPU per event (µs)", lambda m: _fmt(m.cpu_us_per_event, ".1f")),
        row(
            "server RSS at start / peak (MB), incl. workers",
            lambda m: f"{m.rss_start / 1e6:.0f} / {m.rss_peak / 1e6:.0f}",
        ),
        row("client CPU (cores)", lambda m: _fmt(m.client_cores, ".2f")),
        row("matched sent / records written", lambda m: f"{m.matched:,} / {m.summary()['records']:,.0f}"),
        row("errors", lambda m: ", ".join(f"{k}: {v}" for k, v in m.errors.items()) or "none"),
        row("record check", lambda m: "ok" if m.record_check else "FAILED"),
    ]


def _targets(batch: ModeResult | None, blocking: ModeResult | None, floor: Floor) -> list[list[str]]:
    rows = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if batch is not None:
        rate = batch.median("events_per_s")
        rows.append([f"batch ≥ {BATCH_TARGET:,} events/s", _fmt(rate), verdict(rate >= BATCH_TARGET)])
        ratio = rate / floor.events_per_s
        rows.append([f"batch ≥ {RATIO_TARGET} x floor", _fmt(ratio, ".2f"), verdict(ratio >= RATIO_TARGET)])
    if blocking is not None:
        p99 = blocking.median("p99_ms")
        rows.append(
            [f"blocking p99 ≤ {BLOCKING_P99_MS} ms", _fmt(p99, ".2f"), verdict(p99 <= BLOCKING_P99_MS)]
        )
    modes = [m for m in (batch, blocking) if m is not None]
    if modes:
        peak = max(m.rss_peak for m in modes) / 1e6
        rows.append([f"RSS ≤ {RSS_TARGET_MB} MB", f"{peak:.0f}", verdict(peak <= RSS_TARGET_MB)])
    return rows


def _soak_report(soak: ModeResult) -> list[str]:
    series = [(t / 60, rss / 1e6) for t, _, rss in soak.samples]
    half = [p for p in series if p[0] >= series[-1][0] / 2]
    whole, second = slope(series), slope(half)
    lines = ["RSS series (min, MB): " + ", ".join(f"{t:.2f}:{mb:.1f}" for t, mb in series)]
    lines.append(
        f"RSS slope: {_fmt(whole, '+.2f')} MB/min over the soak, {_fmt(second, '+.2f')} MB/min over its "
        f"second half; peak {soak.rss_peak / 1e6:.0f} MB; "
        + ("flat" if abs(second) < FLAT_MB_PER_MIN else "GROWING")
        + f" (flat: |second-half slope| < {FLAT_MB_PER_MIN} MB/min)"
    )
    return lines


def _access_mode(args: argparse.Namespace) -> int:
    from bench.access import ACCESS_TARGET, report, run_access

    lines, clients = (20_000, 10_000) if args.smoke else (args.access_lines, args.access_clients)
    info = machine()
    _out(f"ingress-audit bench --mode access, {info['date']}, commit {info['commit']}")
    _out(f"machine: nproc {info['nproc']}, {info['cpu']}, load average {info['load_average_1m']} at start")
    result = run_access(lines=lines, clients=clients, seed=args.seed)
    for line in report(result):
        _out(line)
    if args.json:
        figures = {
            "machine": info,
            "access": {
                "lines": result.lines,
                "clients": result.clients,
                "lines_per_s": result.lines_per_s,
                "target_lines_per_s": ACCESS_TARGET,
                "records": result.records,
                "summaries": result.summaries,
                "rss_mb": result.rss_mb,
            },
        }
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0 if result.lines == lines else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "access":
        return _access_mode(args)
    settings = _settings(args)
    if settings.soak_min and not 0 < settings.soak_min <= MAX_SOAK_MIN:
        _parser().error(f"--soak takes 0 < MINUTES ≤ {MAX_SOAK_MIN}")
    started = time.monotonic()
    info = machine()
    _out(f"ingress-audit bench, {info['date']}, commit {info['commit']}")
    _out(
        f"machine: nproc {info['nproc']}, {info['cpu']}, {info['memory_gib']} GiB, Python {info['python']}, "
        f"load average {info['load_average_1m']} at start"
    )
    pool = build_pool(
        seed=settings.seed,
        batches=settings.batches,
        batch_size=settings.batch_size,
        large_every=settings.large_every,
    )
    _out(_pool_line(pool, settings))
    rendered = [body.render(n) for n, body in enumerate(pool.batches)]
    floor = measure_floor(rendered, min_s=settings.floor_min_s)
    if floor.matched != pool.matched:
        raise RuntimeError(f"the floor kept {floor.matched} events, the generator counted {pool.matched}")
    runs = " / ".join(_fmt(r) for r in floor.runs)
    _out(
        f"floor (orjson.loads + compiled filter, 1 core): {_fmt(floor.events_per_s)} events/s, "
        f"{floor.mb_per_s:.0f} MB/s (runs: {runs})"
    )
    batch_load = Load(pool.batches, settings.senders, settings.sender_procs, settings.batch_s, settings.rate)
    figures: dict[str, Any] = {"machine": info, "settings": asdict(settings), "floor": floor.events_per_s}
    results: list[ModeResult] = []
    batch = blocking = None
    if settings.soak_min:
        soak_load = replace(batch_load, duration_s=settings.soak_min * 60, sample_s=settings.sample_s)
        _out(f"soak: {settings.soak_min:g} min of batch load, RSS every {settings.sample_s:g} s ...")
        batch, _ = run_mode("soak", soak_load, catch_up_s=settings.catch_up_s, config=args.config)
        results.append(batch)
        soak_lines = _soak_report(batch)
        figures["soak_rss_mb"] = [(t, rss / 1e6) for t, _, rss in batch.samples]
    else:
        if args.mode in ("both", "batch"):
            what = f"{settings.senders} senders x {settings.batch_size} events, {settings.batch_s:g} s"
            _out(f"batch mode: {what} ...")
            batch, _ = run_mode(
                "batch",
                batch_load,
                catch_up_s=settings.catch_up_s,
                py_spy=_profile_path(args, "batch"),
                config=args.config,
            )
            results.append(batch)
        if args.mode in ("both", "blocking"):
            what = f"concurrency {settings.concurrency}, {settings.blocking_s:g} s"
            if settings.blocking_rate:
                what += f", paced at {settings.blocking_rate:g} requests/s"
            _out(f"blocking mode: 1 event per request, {what} ...")
            blocking_load = Load(
                pool.singles, settings.concurrency, 1, settings.blocking_s, settings.blocking_rate
            )
            baseline_load = Load((), settings.concurrency, 1, settings.baseline_s)
            blocking, baseline = run_mode(
                "blocking",
                blocking_load,
                warmup=baseline_load,
                catch_up_s=settings.catch_up_s,
                py_spy=_profile_path(args, "blocking"),
                config=args.config,
            )
            results.append(blocking)
            if baseline is not None:
                q = " / ".join(_fmt(baseline.median(f"p{p}_ms"), ".2f") for p in (50, 95, 99))
                cpu = _fmt(baseline.cpu_us_per_request, ".0f")
                _out(
                    f"  bare HTTP round trip (GET /healthz, same concurrency) p50 / p95 / p99: {q} ms, "
                    f"server CPU {cpu} µs per request"
                )
                figures["healthz_latency_ms"] = q
    _out()
    _out(table(["figure", *(m.name for m in results)], _mode_rows(results, floor)))
    _out()
    _out(table(["target", "measured", "verdict"], _targets(batch, blocking, floor)))
    if settings.soak_min and batch is not None:
        for line in soak_lines:
            _out(line)
    figures["modes"] = {m.name: m.summary() for m in results}
    ok = all(m.record_check for m in results)
    _out(f"\nrecord check: {'ok' if ok else 'FAILED'}; finished in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0 if ok else 1
