"""``python -m bench``: the floor, then batch mode and blocking mode against the real server.

Each load is also sent, in the same run and in turns with ours, window by window, to servers that
keep no guarantee (bench/baselines.py): the naive standard-library server (batch) and the null
aiohttp server (batch and blocking); batch mode measures the floor in turns too. Throughput and
added latency are so reported as ratios and differences of the same moments.

``--smoke`` runs the same steps with small counts in a few seconds (the test suite runs it);
``--soak MINUTES`` runs steady batch load instead and reports RSS over time and its slope.
Exit status 1 means a record check failed (the figures are reported either way).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson

from bench.baselines import Kind
from bench.compare import Comparison, mode_rows, soak_report, targets
from bench.floor import measure_floor
from bench.generate import Pool, build_pool
from bench.measure import Load, ModeResult, run_in_turns, run_mode
from bench.report import fmt, machine, table

__all__ = ["Settings", "main"]

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
    floor_turn_s: float = 1.5  # the floor's window between batch mode's load windows
    soak_min: float = 0.0
    sample_s: float = 5.0
    rate: float = 0.0
    blocking_rate: float = 0.0
    large_every: int = 10_000
    catch_up_s: float = 120.0
    baselines: bool = True  # the naive and the null server under the same loads


SMOKE: Final = Settings(
    batches=3,
    batch_size=100,
    batch_s=1.5,
    blocking_s=1.5,
    baseline_s=0.5,
    senders=2,
    floor_min_s=0.05,
    floor_turn_s=0.05,
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
        "--baselines",
        action=argparse.BooleanOptionalAction,
        help="also load the naive and the null server, for the ratios (default: yes; not in a soak)",
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
        "baselines": args.baselines,
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


def _batch_phase(
    args: argparse.Namespace,
    settings: Settings,
    load: Load,
    rendered: Sequence[bytes],
    compared: Comparison,
    results: list[ModeResult],
    figures: dict[str, Any],
) -> Comparison:
    """ingress-audit under batch load, in turns, window by window, with the floor and with the
    naive and the null server under the same load."""
    what = f"{settings.senders} senders x {settings.batch_size} events, {settings.batch_s:g} s"
    _out(f"batch mode: {what} ...")
    baselines: list[tuple[str, Kind]] = [("naive-batch", "naive"), ("null-batch", "null")]
    _out(
        "  in turns, window by window: ingress-audit, the floor"
        + (
            ", the naive server (http.server + json.loads, writes nothing), the null server"
            " (aiohttp, reads the body, answers 200)"
            if settings.baselines
            else ""
        )
    )
    turns = run_in_turns(
        "batch",
        load,
        baselines if settings.baselines else (),
        between=lambda: measure_floor(rendered, repeats=1, min_s=settings.floor_turn_s).events_per_s,
        catch_up_s=settings.catch_up_s,
        py_spy=_profile_path(args, "batch"),
        config=args.config,
    )
    floor = statistics.median(turns.between)
    _out(
        f"  the floor in turns with the loads: {fmt(floor)} events/s "
        f"(windows: {' / '.join(fmt(f) for f in turns.between)}); the ratios below are to it"
    )
    figures["floor"] = floor
    figures["floor_windows"] = turns.between
    results += [turns.ours, *turns.baselines]
    compared = replace(compared, floor=floor, batch=turns.ours)
    if settings.baselines:
        naive, null = turns.baselines
        compared = replace(compared, naive=naive, null_batch=null)
    return compared


def _blocking_phase(
    args: argparse.Namespace,
    settings: Settings,
    pool: Pool,
    compared: Comparison,
    results: list[ModeResult],
    figures: dict[str, Any],
) -> Comparison:
    """ingress-audit one event per request, alternating window by window with the null server."""
    what = f"concurrency {settings.concurrency}, {settings.blocking_s:g} s"
    if settings.blocking_rate:
        what += f", paced at {settings.blocking_rate:g} requests/s"
    _out(f"blocking mode: 1 event per request, {what} ...")
    load = Load(pool.singles, settings.concurrency, 1, settings.blocking_s, settings.blocking_rate)
    baseline_load = Load((), settings.concurrency, 1, settings.baseline_s)
    null = None
    if settings.baselines:
        # Window by window with the null server: a p99 difference of 2 ms is smaller than what the
        # host's drift moves a p99 between two runs of 15 s.
        _out("  alternating, window by window, with the null server (aiohttp, reads the body, answers 200)")
        turns = run_in_turns(
            "blocking",
            load,
            [("null-blocking", "null")],
            warmup=baseline_load,
            catch_up_s=settings.catch_up_s,
            py_spy=_profile_path(args, "blocking"),
            config=args.config,
        )
        blocking, baseline, (null,) = turns.ours, turns.warmup, turns.baselines
    else:
        blocking, baseline = run_mode(
            "blocking",
            load,
            warmup=baseline_load,
            catch_up_s=settings.catch_up_s,
            py_spy=_profile_path(args, "blocking"),
            config=args.config,
        )
    results.append(blocking)
    compared = replace(compared, blocking=blocking)
    if baseline is not None:
        q = " / ".join(fmt(baseline.median(f"p{p}_ms"), ".2f") for p in (50, 95, 99))
        cpu = fmt(baseline.cpu_us_per_request, ".0f")
        _out(
            f"  bare HTTP round trip (GET /healthz, same concurrency) p50 / p95 / p99: {q} ms, "
            f"server CPU {cpu} µs per request"
        )
        figures["healthz_latency_ms"] = q
    if null is not None:
        results.append(null)
        compared = replace(compared, null_blocking=null)
    return compared


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
    runs = " / ".join(fmt(r) for r in floor.runs)
    _out(
        f"floor (orjson.loads + compiled filter, 1 core): {fmt(floor.events_per_s)} events/s, "
        f"{floor.mb_per_s:.0f} MB/s (runs: {runs})"
    )
    batch_load = Load(pool.batches, settings.senders, settings.sender_procs, settings.batch_s, settings.rate)
    # "floor": what the ratios are to; the batch phase measures it again in turns with its loads.
    figures: dict[str, Any] = {
        "machine": info,
        "settings": asdict(settings),
        "floor": floor.events_per_s,
        "floor_at_start": floor.events_per_s,
    }
    results: list[ModeResult] = []
    compared = Comparison(floor=floor.events_per_s)
    soak = None
    if settings.soak_min:
        soak_load = replace(batch_load, duration_s=settings.soak_min * 60, sample_s=settings.sample_s)
        _out(f"soak: {settings.soak_min:g} min of batch load, RSS every {settings.sample_s:g} s ...")
        batch, _ = run_mode("soak", soak_load, catch_up_s=settings.catch_up_s, config=args.config)
        results.append(batch)
        compared = replace(compared, batch=batch)
        soak, soak_lines = soak_report(batch)
        figures["soak_rss_mb"] = [(t, rss / 1e6) for t, _, rss in batch.samples]
        figures["soak"] = asdict(soak) | {"verdict": soak.verdict}
    else:
        if args.mode in ("both", "batch"):
            compared = _batch_phase(args, settings, batch_load, rendered, compared, results, figures)
        if args.mode in ("both", "blocking"):
            compared = _blocking_phase(args, settings, pool, compared, results, figures)
    _out()
    _out(table(["figure", *(m.name for m in results)], mode_rows(results, compared.floor)))
    if not settings.soak_min:
        _out()
        _out(table(["ratio, measured in this run", "value"], compared.rows()))
        figures["ratios"] = compared.figures()
    _out()
    _out(table(["target", "measured", "verdict"], targets(compared, soak)))
    if soak is not None:
        for line in soak_lines:
            _out(line)
    figures["modes"] = {m.name: m.summary() for m in results}
    ok = all(m.record_check for m in results if m.writes_records)
    _out(f"\nrecord check: {'ok' if ok else 'FAILED'}; finished in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0 if ok else 1
