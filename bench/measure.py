"""One measured load against a fresh server: throughput per window, latency, CPU, RSS, the record check."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench.baselines import BaselineProcess, Kind
from bench.generate import Body
from bench.report import median, percentile
from bench.senders import LoadPlan, LoadResult, start_load
from bench.server import PeakSampler, ServeProcess, cpu_seconds, cpu_split, memory

__all__ = ["Load", "ModeResult", "Turns", "Window", "run_in_turns", "run_mode"]

MB = 1e6
_STAMPS_PER_WINDOW = 24  # bits: 16 million requests a window before auditIDs repeat


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: bodies (empty: GET /healthz), on how many connections, for how long."""

    bodies: Sequence[Body]
    connections: int
    processes: int = 1
    duration_s: float = 10.0
    rate: float = 0.0
    windows: int = 3
    sample_s: float = 0.0  # 0: sample only at the window boundaries
    first_stamp: int = 0  # of the auditIDs (LoadPlan)


@dataclass(frozen=True, slots=True)
class Window:
    events_per_s: float
    requests_per_s: float
    server_cores: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(slots=True)
class ModeResult:
    name: str
    windows: list[Window] = field(default_factory=list)
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (s since start, CPU s, RSS)
    rss_start: int = 0
    rss_peak: int = 0  # each process's own peak (VmHWM), added: an upper bound of the total's
    rss_peak_sampled: int = 0  # the total read 10 times a second over the load: a lower bound
    # CPU seconds over the load of the server's own process and of its worker processes
    serve_cpu_s: float = math.nan
    workers_cpu_s: float = math.nan
    client_cpu_s: float = 0.0
    duration_s: float = 0.0
    requests: int = 0
    events: int = 0
    matched: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    delivered: bool = True
    records: int = 0
    records_complete: bool = True
    records_metric: float = math.nan
    server_exit: int | None = None
    writes_records: bool = True  # False: a baseline server, nothing to check records against
    # p50, p99 (ms) of requests with no matched event and of those with at least one, whole run
    latency_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return median([getattr(w, name) for w in self.windows])

    @property
    def cpu_us_per_event(self) -> float:
        rate = self.median("events_per_s")
        return self.median("server_cores") / rate * 1e6 if rate else math.nan

    @property
    def cpu_us_per_request(self) -> float:
        rate = self.median("requests_per_s")
        return self.median("server_cores") / rate * 1e6 if rate else math.nan

    @property
    def cores_split(self) -> tuple[float, float]:
        """Cores used over the load by the server's own process, and by its worker processes."""
        if not self.duration_s:
            return math.nan, math.nan
        return self.serve_cpu_s / self.duration_s, self.workers_cpu_s / self.duration_s

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.duration_s if self.duration_s else math.nan

    @property
    def record_check(self) -> bool:
        """Every matched event sent and answered 200 became exactly one record in the sink."""
        if self.errors or not self.delivered or self.server_exit not in (0, None):
            return False
        if not self.writes_records:
            return True
        written = self.records if self.records_complete else self.records_metric
        return written == self.matched

    def summary(self) -> dict[str, Any]:
        return {
            "events_per_s": self.median("events_per_s"),
            "windows_events_per_s": [round(w.events_per_s) for w in self.windows],
            "requests_per_s": self.median("requests_per_s"),
            "latency_ms": {q: self.median(f"{q}_ms") for q in ("p50", "p95", "p99")},
            "server_cores": self.median("server_cores"),
            "server_cores_serve_workers": self.cores_split,
            "server_cpu_us_per_event": self.cpu_us_per_event,
            "client_cores": self.client_cores,
            "rss_start_mb": self.rss_start / MB,
            "rss_peak_mb": self.rss_peak / MB,
            "rss_peak_sampled_mb": self.rss_peak_sampled / MB,
            "requests": self.requests,
            "events": self.events,
            "matched": self.matched,
            "records": (self.records if self.records_complete else self.records_metric)
            if self.writes_records
            else None,
            "errors": self.errors,
            "record_check": self.record_check,
            "latency_by_kind_ms": self.latency_by_kind,
        }


def _windows(
    load: Load, result: LoadResult, samples: list[tuple[float, float, int]], t0: float
) -> list[Window]:
    width = load.duration_s / load.windows
    cpu_at = {round(t, 6): cpu for t, cpu, _ in samples}
    windows = []
    for k in range(load.windows):
        lo, hi = k * width, (k + 1) * width
        picked = [i for i, end in enumerate(result.ends) if lo <= end - t0 < hi]
        latencies = [result.latencies[i] * 1000 for i in picked]
        cpu = cpu_at.get(round(hi, 6), math.nan) - cpu_at.get(round(lo, 6), math.nan)
        windows.append(
            Window(
                events_per_s=sum(result.events[i] for i in picked) / width,
                requests_per_s=len(picked) / width,
                server_cores=cpu / width,
                p50_ms=percentile(latencies, 50),
                p95_ms=percentile(latencies, 95),
                p99_ms=percentile(latencies, 99),
            )
        )
    return windows


def _ticks(load: Load) -> list[float]:
    width = load.duration_s / load.windows
    ticks = {round(k * width, 6) for k in range(1, load.windows + 1)}
    if load.sample_s > 0:
        ticks |= {round(k * load.sample_s, 6) for k in range(1, int(load.duration_s / load.sample_s) + 1)}
    # Compared rounded as the ticks are: a window of 20 / 3 s ends at 6.666667, not 6.666666…
    return sorted(t for t in ticks if t <= round(load.duration_s, 6))


def _profile(server: _Target, out: Path, duration_s: float) -> subprocess.Popen[bytes] | None:
    """py-spy, if installed (optional, not a dependency): samples the server during the load."""
    beside = Path(sys.executable).with_name("py-spy")
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        return None
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    command = [py_spy, "record", "--pid", str(server.pid), "--duration", str(max(int(duration_s), 1))]
    command += ["--subprocesses"]  # the worker processes of server.workers
    command += ["--rate", "250", "--nonblocking", "--format", fmt, "--output", str(out)]
    return subprocess.Popen(  # noqa: S603 - py-spy with fixed arguments
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


class _Target(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def pid(self) -> int: ...


def _measure(server: _Target, load: Load, out: ModeResult, py_spy: Path | None) -> LoadResult:
    start_at = time.monotonic() + 1.0  # time for the senders to fork and connect
    plan = LoadPlan(
        url=server.url,
        bodies=load.bodies,
        connections=load.connections,
        processes=load.processes,
        start_at=start_at,
        end_at=start_at + load.duration_s,
        rate=load.rate,
        first_stamp=load.first_stamp,
    )
    running = start_load(plan)
    time.sleep(max(start_at - time.monotonic(), 0))
    profiler = _profile(server, py_spy, load.duration_s) if py_spy else None
    out.samples.append((0.0, cpu_seconds(server.pid), memory(server.pid)[0]))
    serve_at_start, workers_at_start = cpu_split(server.pid)
    with PeakSampler(server.pid) as sampler:
        for tick in _ticks(load):
            time.sleep(max(start_at + tick - time.monotonic(), 0))
            out.samples.append((tick, cpu_seconds(server.pid), memory(server.pid)[0]))
    out.rss_peak_sampled = sampler.peak
    serve_at_end, workers_at_end = cpu_split(server.pid)
    out.serve_cpu_s = serve_at_end - serve_at_start
    out.workers_cpu_s = workers_at_end - workers_at_start
    result = running.collect()
    if profiler is not None:
        try:
            profiler.wait(60)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait(10)
    out.windows = _windows(load, result, out.samples, start_at)
    return result


def _collect(out: ModeResult, result: LoadResult) -> None:
    """What the senders saw, whole run."""
    out.client_cpu_s = result.cpu_s
    out.requests = len(result.ends)
    out.events = sum(result.events)
    out.matched = sum(result.matched)
    out.errors = dict(result.errors)
    for kind, wanted in (("unmatched", False), ("matched", True)):
        picked = [
            lat * 1000 for lat, m in zip(result.latencies, result.matched, strict=True) if bool(m) == wanted
        ]
        out.latency_by_kind[kind] = (percentile(picked, 50), percentile(picked, 99))


def _warmed(server: ServeProcess, name: str, warmup: Load | None) -> ModeResult | None:
    """``warmup`` measured on ``server`` (e.g. the bare HTTP round trip), if there is one."""
    if warmup is None:
        return None
    before = ModeResult(name=f"{name}-baseline", duration_s=warmup.duration_s)
    _measure(server, warmup, before, None)
    return before


def _check_records(server: ServeProcess, out: ModeResult, catch_up_s: float) -> None:
    """Once the sinks have caught up: the records written, by the JSONL file and by the counter."""
    out.delivered = server.wait_delivered(catch_up_s)
    out.records, out.records_complete = server.records_written()
    # by cluster: the sum over its labels
    out.records_metric = server.metric_total("ingress_audit_records_written_total")
    out.rss_peak = memory(server.pid)[1]


def _slice(server: _Target, load: Load, out: ModeResult, py_spy: Path | None) -> LoadResult:
    """One window of ``out`` measured on its own: its window, CPU and sampled peak added to ``out``."""
    part = ModeResult(name=out.name, duration_s=load.duration_s)
    result = _measure(server, load, part, py_spy)
    offset = out.samples[-1][0] if out.samples else 0.0
    out.samples += [(offset + at, cpu, rss) for at, cpu, rss in part.samples]
    out.windows += part.windows
    out.serve_cpu_s += part.serve_cpu_s
    out.workers_cpu_s += part.workers_cpu_s
    out.rss_peak_sampled = max(out.rss_peak_sampled, part.rss_peak_sampled)
    return result


@dataclass(slots=True)
class Turns:
    """What ``run_in_turns`` measured: ours, its warm-up, each baseline server, and the figure
    ``between`` gave after each of our windows."""

    ours: ModeResult
    warmup: ModeResult | None
    baselines: list[ModeResult]
    between: list[float]


def run_in_turns(
    name: str,
    load: Load,
    baselines: Sequence[tuple[str, Kind]] = (),
    *,
    between: Callable[[], float] | None = None,
    warmup: Load | None = None,
    catch_up_s: float = 120.0,
    py_spy: Path | None = None,
    config: Path | None = None,
) -> Turns:
    """``run_mode`` with the baseline servers (``(name, kind)`` each) running beside ours: ``load``
    goes to each in turn, one window at a time (ours, then ``between``, e.g. a floor window while
    every server idles, then each baseline; ours again …), so that on a host whose speed drifts
    all are measured at the same moments. Each keeps its own windows, whose medians are
    compared; ``py_spy`` profiles our first window."""
    window = replace(load, duration_s=load.duration_s / load.windows, windows=1)
    span = load.duration_s
    with tempfile.TemporaryDirectory(prefix="ingress-audit-bench-") as tmp:
        server = ServeProcess(Path(tmp), config)
        others = [BaselineProcess(kind) for _, kind in baselines]
        ours = ModeResult(name=name, duration_s=span, serve_cpu_s=0, workers_cpu_s=0)
        theirs = [
            ModeResult(name=n, duration_s=span, writes_records=False, serve_cpu_s=0, workers_cpu_s=0)
            for n, _ in baselines
        ]
        figures: list[float] = []
        try:
            server.start()
            for other in others:
                other.start()
            before = _warmed(server, name, warmup)
            ours.rss_start = memory(server.pid)[0]
            for other, out in zip(others, theirs, strict=True):
                out.rss_start = memory(other.pid)[0]
            sent = LoadResult()
            sent_base = [LoadResult() for _ in others]
            for index in range(load.windows):
                turn = replace(window, first_stamp=index << _STAMPS_PER_WINDOW)  # fresh auditIDs
                sent.merge(_slice(server, turn, ours, py_spy if index == 0 else None))
                if between is not None:
                    figures.append(between())
                for other, out, result in zip(others, theirs, sent_base, strict=True):
                    result.merge(_slice(other, turn, out, None))
            _collect(ours, sent)
            for out, result in zip(theirs, sent_base, strict=True):
                _collect(out, result)
            _check_records(server, ours, catch_up_s)
            for other, out in zip(others, theirs, strict=True):
                out.rss_peak = memory(other.pid)[1]
        finally:
            for other, out in zip(others, theirs, strict=True):
                out.server_exit = other.stop()
            ours.server_exit = server.stop()
        return Turns(ours=ours, warmup=before, baselines=theirs, between=figures)


def run_mode(
    name: str,
    load: Load,
    *,
    warmup: Load | None = None,
    catch_up_s: float = 120.0,
    py_spy: Path | None = None,
    config: Path | None = None,
) -> tuple[ModeResult, ModeResult | None]:
    """Start a fresh server, optionally measure ``warmup`` (e.g. the bare HTTP round trip), then ``load``."""
    with tempfile.TemporaryDirectory(prefix="ingress-audit-bench-") as tmp:
        server = ServeProcess(Path(tmp), config)
        try:
            server.start()
            before = _warmed(server, name, warmup)
            out = ModeResult(name=name, duration_s=load.duration_s, rss_start=memory(server.pid)[0])
            _collect(out, _measure(server, load, out, py_spy))
            _check_records(server, out, catch_up_s)
        finally:
            out_exit = server.stop()
        out.server_exit = out_exit
        return out, before
