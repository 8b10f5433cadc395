"""The printed comparison: each load's figures, ratios measured in one run, the targets, the soak.

Every figure here divides or subtracts two figures of the same run, so that a busy machine moves
both sides: the median-window events/s of each batch-mode load, and the median-window latency
percentiles of each blocking-mode load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.measure import ModeResult
from bench.report import fmt, slope

__all__ = [
    "BLOCKING_P99_MS",
    "FLAT_MB_PER_MIN",
    "Comparison",
    "Soak",
    "added_ms",
    "mode_rows",
    "ratio",
    "soak_report",
    "soak_summary",
    "targets",
]

BATCH_TARGET: Final = 60_000
RATIO_TARGET: Final = 0.5
NAIVE_TARGET: Final = 1.0  # the naive standard-library server keeps no guarantee: we must beat it
BLOCKING_P99_MS: Final = 2.0  # added over the null server at the same percentile
RSS_TARGET_MB: Final = 150
FLAT_MB_PER_MIN: Final = 0.5  # our reading of "flat": under this over the soak's second half


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when either was not measured or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def added_ms(ours: float, null: float) -> float:
    """Latency our server adds over the null server at the same percentile (may be negative: noise)."""
    return ours - null


def _events_per_s(mode: ModeResult | None) -> float:
    return mode.median("events_per_s") if mode is not None else math.nan


def _latency(mode: ModeResult | None, q: int) -> float:
    return mode.median(f"p{q}_ms") if mode is not None else math.nan


def _cores(mode: ModeResult | None) -> float:
    return mode.median("server_cores") if mode is not None else math.nan


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """ingress-audit (batch, blocking) beside the floor, the naive server and the null server."""

    floor: float  # events/s, one core, in-process
    batch: ModeResult | None = None
    naive: ModeResult | None = None  # batch load against the naive standard-library server
    null_batch: ModeResult | None = None
    blocking: ModeResult | None = None
    null_blocking: ModeResult | None = None

    @property
    def batch_to_floor(self) -> float:
        return ratio(_events_per_s(self.batch), self.floor)

    @property
    def naive_to_floor(self) -> float:
        return ratio(_events_per_s(self.naive), self.floor)

    @property
    def null_to_floor(self) -> float:
        return ratio(_events_per_s(self.null_batch), self.floor)

    @property
    def ours_to_naive(self) -> float:
        return ratio(_events_per_s(self.batch), _events_per_s(self.naive))

    def added_ms(self, q: int) -> float:
        """Blocking mode: our p``q`` minus the null server's, both at the same concurrency."""
        return added_ms(_latency(self.blocking, q), _latency(self.null_blocking, q))

    def rows(self) -> list[list[str]]:
        def latency(q: int) -> str:
            ours, null = _latency(self.blocking, q), _latency(self.null_blocking, q)
            return f"{fmt(self.added_ms(q), '+.2f')} ({fmt(ours, '.2f')} - {fmt(null, '.2f')})"

        def cores(mode: ModeResult | None) -> str:
            return fmt(_cores(mode), ".2f")

        return [
            ["batch: ingress-audit ÷ floor", fmt(self.batch_to_floor, ".2f")],
            ["batch: naive server ÷ floor", fmt(self.naive_to_floor, ".2f")],
            ["batch: null server ÷ floor (HTTP and the body read alone)", fmt(self.null_to_floor, ".2f")],
            ["batch: ingress-audit ÷ naive server", fmt(self.ours_to_naive, ".2f")],
            [
                "batch: server CPU (cores) ingress-audit / naive / null",
                " / ".join(cores(m) for m in (self.batch, self.naive, self.null_batch)),
            ],
            ["blocking: p50 added over the null server (ms)", latency(50)],
            ["blocking: p99 added over the null server (ms)", latency(99)],
        ]

    def figures(self) -> dict[str, float]:
        return {
            "batch_to_floor": self.batch_to_floor,
            "naive_to_floor": self.naive_to_floor,
            "null_to_floor": self.null_to_floor,
            "ours_to_naive": self.ours_to_naive,
            "blocking_p50_added_ms": self.added_ms(50),
            "blocking_p99_added_ms": self.added_ms(99),
            "batch_server_cores": _cores(self.batch),
            "naive_server_cores": _cores(self.naive),
            "null_batch_server_cores": _cores(self.null_batch),
        }


@dataclass(frozen=True, slots=True)
class Soak:
    """RSS over a soak: slopes, the first and the last minute, and the verdict."""

    slope_mb_per_min: float  # least squares over the whole soak
    second_half_mb_per_min: float  # the same over its second half: the dedupe window has filled by then
    first_minute_mb: tuple[float, float]  # (lowest, highest) sample
    last_minute_mb: tuple[float, float]

    @property
    def verdict(self) -> str:
        """ "flat" when the second-half slope is within ±FLAT_MB_PER_MIN MB/min."""
        if math.isnan(self.second_half_mb_per_min):
            return "too short to tell"
        return "flat" if abs(self.second_half_mb_per_min) < FLAT_MB_PER_MIN else "GROWING"


def soak_summary(series: Sequence[tuple[float, float]]) -> Soak:
    """``series``: (minutes since the load started, RSS in MB), in time order, at least one sample."""
    end = series[-1][0]
    second = [p for p in series if p[0] >= end / 2]
    first_minute = [mb for t, mb in series if t <= 1.0]
    last_minute = [mb for t, mb in series if t >= end - 1.0]
    return Soak(
        slope_mb_per_min=slope(series),
        second_half_mb_per_min=slope(second),
        first_minute_mb=(min(first_minute), max(first_minute)),
        last_minute_mb=(min(last_minute), max(last_minute)),
    )


def mode_rows(modes: Sequence[ModeResult], floor: float) -> list[list[str]]:
    """The figures of each load, one column per load; ``floor``: the events/s ratios are to."""

    def row(label: str, get: Any) -> list[str]:
        return [label, *(get(m) for m in modes)]

    return [
        row("events/s accepted (median of 3 windows)", lambda m: fmt(m.median("events_per_s"))),
        row("  the 3 windows", lambda m: " / ".join(fmt(w.events_per_s) for w in m.windows)),
        row("ratio to the floor", lambda m: fmt(ratio(m.median("events_per_s"), floor), ".2f")),
        row("requests/s", lambda m: fmt(m.median("requests_per_s"))),
        row(
            "request latency p50 / p95 / p99 (ms)",
            lambda m: " / ".join(fmt(m.median(f"p{q}_ms"), ".2f") for q in (50, 95, 99)),
        ),
        row(
            "p50 / p99 (ms): requests without ; with a matched event",
            lambda m: " ; ".join(
                " / ".join(fmt(v, ".2f") for v in m.latency_by_kind.get(kind, (math.nan, math.nan)))
                for kind in ("unmatched", "matched")
            ),
        ),
        row("server CPU (cores)", lambda m: fmt(m.median("server_cores"), ".2f")),
        row(
            "  of which the serve process / its workers",
            lambda m: " / ".join(fmt(cores, ".2f") for cores in m.cores_split),
        ),
        row("server CPU per event (µs)", lambda m: fmt(m.cpu_us_per_event, ".1f")),
        row(
            "server RSS at start / peak (MB), incl. workers",
            lambda m: f"{m.rss_start / 1e6:.0f} / {m.rss_peak / 1e6:.0f}",
        ),
        row(
            "  the peak: each process's own, added / the total, read 10 times a second",
            lambda m: f"{m.rss_peak / 1e6:.0f} / {m.rss_peak_sampled / 1e6:.0f}",
        ),
        row("client CPU (cores)", lambda m: fmt(m.client_cores, ".2f")),
        row(
            "matched sent / records written",
            lambda m: (
                f"{m.matched:,} / {m.summary()['records']:,.0f}"
                if m.writes_records
                else f"{m.matched:,} / n/a (writes nothing)"
            ),
        ),
        row("errors", lambda m: ", ".join(f"{k}: {v}" for k, v in m.errors.items()) or "none"),
        row(
            "record check",
            lambda m: ("ok" if m.record_check else "FAILED") if m.writes_records else "n/a",
        ),
    ]


def _verdict(value: float, ok: bool) -> str:
    return "not measured" if math.isnan(value) else ("met" if ok else "MISSED")


def targets(compared: Comparison, soak: Soak | None) -> list[list[str]]:
    """Each target of the README, what this run measured, and whether it is met."""
    rows = []
    batch, blocking = compared.batch, compared.blocking
    if batch is not None:
        rate = batch.median("events_per_s")
        rows.append([f"batch ≥ {BATCH_TARGET:,} events/s", fmt(rate), _verdict(rate, rate >= BATCH_TARGET)])
        to_floor = compared.batch_to_floor
        cores = fmt(batch.median("server_cores"), ".2f")
        rows.append(
            [
                f"batch ≥ {RATIO_TARGET} x floor",
                f"{fmt(to_floor, '.2f')} (server used {cores} cores)",
                _verdict(to_floor, to_floor >= RATIO_TARGET),
            ]
        )
        to_naive = compared.ours_to_naive
        rows.append(
            [
                f"batch ≥ {NAIVE_TARGET:g} x the naive server",
                fmt(to_naive, ".2f"),
                _verdict(to_naive, to_naive >= NAIVE_TARGET),
            ]
        )
    if blocking is not None:
        added = compared.added_ms(99)
        rows.append(
            [
                f"blocking p99 added over the null server ≤ {BLOCKING_P99_MS} ms",
                fmt(added, "+.2f"),
                _verdict(added, added <= BLOCKING_P99_MS),
            ]
        )
    modes = [m for m in (batch, blocking) if m is not None]
    if modes:
        peak = max(m.rss_peak for m in modes) / 1e6
        sampled = max(m.rss_peak_sampled for m in modes) / 1e6
        rows.append(
            [
                f"RSS ≤ {RSS_TARGET_MB} MB (each process's peak, added)",
                f"{peak:.0f} (the total, read 10/s: {sampled:.0f})",
                _verdict(peak, peak <= RSS_TARGET_MB),
            ]
        )
    if soak is not None:
        second = soak.second_half_mb_per_min
        rows.append(
            [
                f"RSS flat over the soak (second-half slope within ±{FLAT_MB_PER_MIN} MB/min)",
                f"{fmt(second, '+.2f')} MB/min",
                _verdict(second, soak.verdict == "flat"),
            ]
        )
    return rows


def soak_report(soak: ModeResult) -> tuple[Soak, list[str]]:
    """RSS over the soak: the series, the first and last minute, the slopes and the verdict."""
    series = [(t / 60, rss / 1e6) for t, _, rss in soak.samples]
    summary = soak_summary(series)
    first, last = summary.first_minute_mb, summary.last_minute_mb
    lines = ["RSS series (min, MB): " + ", ".join(f"{t:.2f}:{mb:.1f}" for t, mb in series)]
    lines.append(
        f"RSS first minute {first[0]:.0f} to {first[1]:.0f} MB, "
        f"last minute {last[0]:.0f} to {last[1]:.0f} MB; "
        f"slope {fmt(summary.slope_mb_per_min, '+.2f')} MB/min over the soak, "
        f"{fmt(summary.second_half_mb_per_min, '+.2f')} MB/min over its second half; "
        f"peak {soak.rss_peak / 1e6:.0f} MB (each process's own, added; the total read 10 times a "
        f"second peaked at {soak.rss_peak_sampled / 1e6:.0f}); {summary.verdict} "
        f"(flat: |second-half slope| < {FLAT_MB_PER_MIN} MB/min)"
    )
    return summary, lines
