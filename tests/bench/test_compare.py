"""The ratios of one run, the targets' verdicts and the soak's RSS summary."""

from __future__ import annotations

import math

import pytest

from bench.compare import Comparison, added_ms, mode_rows, ratio, soak_summary, targets
from bench.measure import ModeResult, Window


def _mode(
    name: str, events_per_s: float, p50: float = 1.0, p99: float = 2.0, cores: float = 1.0
) -> ModeResult:
    """A load whose three windows all measured the same figures."""
    window = Window(
        events_per_s=events_per_s,
        requests_per_s=events_per_s,
        server_cores=cores,
        p50_ms=p50,
        p95_ms=p99,
        p99_ms=p99,
    )
    return ModeResult(name=name, windows=[window] * 3, rss_peak=100_000_000)


def test_ratio_and_added_latency() -> None:
    """Ratios divide figures of the same run; a figure not measured gives NaN, not a verdict."""
    assert ratio(30_000, 100_000) == pytest.approx(0.3)
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 2.0))
    assert added_ms(3.5, 1.25) == pytest.approx(2.25)


def test_the_comparison_divides_and_subtracts_figures_of_the_same_run() -> None:
    """Batch against the floor and the naive server; blocking latency against the null server."""
    compared = Comparison(
        floor=100_000,
        batch=_mode("batch", 50_000, cores=1.6),
        naive=_mode("naive-batch", 40_000),
        null_batch=_mode("null-batch", 90_000),
        blocking=_mode("blocking", 3_000, p50=2.5, p99=6.0),
        null_blocking=_mode("null-blocking", 6_000, p50=1.0, p99=3.5),
    )

    assert compared.batch_to_floor == pytest.approx(0.5)
    assert compared.naive_to_floor == pytest.approx(0.4)
    assert compared.null_to_floor == pytest.approx(0.9)
    assert compared.ours_to_naive == pytest.approx(1.25)
    assert compared.added_ms(50) == pytest.approx(1.5)
    assert compared.added_ms(99) == pytest.approx(2.5)
    assert ["blocking: p99 added over the null server (ms)", "+2.50 (6.00 - 3.50)"] in compared.rows()
    verdicts = {row[0]: (row[1], row[2]) for row in targets(compared, None)}
    assert verdicts["batch ≥ 0.5 x floor"] == ("0.50 (server used 1.60 cores)", "met")
    assert verdicts["batch ≥ 1 x the naive server"] == ("1.25", "met")
    assert verdicts["blocking p99 added over the null server ≤ 2.0 ms"] == ("+2.50", "MISSED")


def test_every_cell_fits_in_a_markdown_table() -> None:
    """No label or value holds a pipe: the tables are pasted into RESULTS.md as printed."""
    modes = [_mode("batch", 50_000), _mode("null-batch", 90_000)]
    compared = Comparison(floor=100_000, batch=modes[0], null_batch=modes[1])
    soak = soak_summary([(t / 2, 100.0) for t in range(5)])
    rows = [*mode_rows(modes, 100_000), *compared.rows(), *targets(compared, soak)]

    assert all("|" not in cell for row in rows for cell in row)


def test_without_baselines_the_ratios_to_them_are_not_measured() -> None:
    """``--no-baselines``: the rows say n/a and the targets that need a baseline say so."""
    compared = Comparison(floor=100_000, batch=_mode("batch", 20_000), blocking=_mode("blocking", 3_000))

    assert math.isnan(compared.ours_to_naive)
    assert math.isnan(compared.added_ms(99))
    assert ["batch: ingress-audit ÷ naive server", "n/a"] in compared.rows()
    verdicts = {row[0]: row[2] for row in targets(compared, None)}
    assert verdicts["batch ≥ 1 x the naive server"] == "not measured"
    assert verdicts["blocking p99 added over the null server ≤ 2.0 ms"] == "not measured"
    assert verdicts["batch ≥ 0.5 x floor"] == "MISSED"


def test_a_soak_that_levels_off_is_flat() -> None:
    """RSS rising in the first minutes and level in the second half: flat, first and last minute shown."""
    series = [(t / 2, min(60 + 20 * t / 2, 120) + (t % 2) * 0.1) for t in range(21)]  # 0 to 10 min

    soak = soak_summary(series)

    assert soak.first_minute_mb == (60.0, 80.0)
    assert soak.last_minute_mb == (120.0, 120.1)
    assert soak.slope_mb_per_min > 0.5
    assert abs(soak.second_half_mb_per_min) < 0.5
    assert soak.verdict == "flat"
    assert targets(Comparison(floor=100_000), soak)[-1][-1] == "met"


def test_a_soak_still_growing_in_its_second_half_is_not_flat() -> None:
    """One MB a minute to the end is growth, whatever the level; one sample cannot tell."""
    soak = soak_summary([(t / 2, 100 + t / 2) for t in range(21)])

    assert soak.second_half_mb_per_min == pytest.approx(1.0)
    assert soak.verdict == "GROWING"
    assert soak_summary([(0.0, 100.0)]).verdict == "too short to tell"


def test_the_cores_are_split_between_the_serve_process_and_its_workers() -> None:
    batch = _mode("batch", 50_000, cores=1.5)
    batch.duration_s, batch.serve_cpu_s, batch.workers_cpu_s = 20.0, 11.0, 18.0
    naive = _mode("naive-batch", 40_000)  # never measured: n/a
    rows = {row[0]: row[1:] for row in mode_rows([batch, naive], 100_000)}

    assert rows["  of which the serve process / its workers"] == ["0.55 / 0.90", "n/a / n/a"]
