"""What a measured load reports: the record check of the real server, and of a baseline (writes nothing)."""

from __future__ import annotations

from bench.measure import ModeResult


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
