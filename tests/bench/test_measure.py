"""What a measured load reports: the record check of the real server, and of a baseline (writes nothing)."""

from __future__ import annotations

import pytest

from bench.measure import Load, ModeResult, _ticks


def test_the_real_server_must_write_one_record_per_matched_event() -> None:
    """A record missing fails the check; so does any request that was not answered 200."""
    assert ModeResult(name="batch", matched=5, records=5).record_check
    assert not ModeResult(name="batch", matched=5, records=4).record_check
    assert not ModeResult(name="batch", matched=5, records=5, errors={"503": 1}).record_check


def test_a_baseline_writes_nothing_so_only_its_answers_are_checked() -> None:
    """A baseline's summary has no record count; errors or a bad exit still fail it."""
    baseline = ModeResult(name="null-batch", matched=5, writes_records=False, server_exit=0)

    assert baseline.record_check
    assert baseline.summary()["records"] is None
    assert not ModeResult(name="null-batch", writes_records=False, errors={"503": 1}).record_check
    assert not ModeResult(name="null-batch", writes_records=False, server_exit=1).record_check


@pytest.mark.parametrize(("duration_s", "windows"), [(15.0, 3), (20.0, 3), (20.0 / 3, 1), (10.0, 7)])
def test_every_window_ends_on_a_tick(duration_s: float, windows: int) -> None:
    """The CPU of a window is read at its end: a duration the windows do not divide evenly
    must still get that reading (a dropped last tick measured the load over no time at all)."""
    ticks = _ticks(Load(bodies=(), connections=1, duration_s=duration_s, windows=windows))
    width = duration_s / windows
    assert ticks == [round(k * width, 6) for k in range(1, windows + 1)]
