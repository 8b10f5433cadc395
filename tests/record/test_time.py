"""The one time format of records, written and read back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.record.time import format_time, now, parse_time, record_time

T = 1795530040.463683  # 2026-11-24T14:20:40.463683Z
T_TEXT = "2026-11-24T14:20:40.463683Z"
T_DATETIME = datetime(2026, 11, 24, 14, 20, 40, 463683, tzinfo=UTC)


def test_seconds_are_written_with_microseconds_in_utc() -> None:
    """Always six digits and ``Z``, whole seconds and the epoch included."""
    assert format_time(T) == T_TEXT
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_time(1795530000) == "2026-11-24T14:20:00.000000Z"


def test_an_aware_datetime_is_written_in_utc() -> None:
    """A datetime in another zone is written as the same moment in UTC."""
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 11, 24, 16, 20, 40, 463683, tzinfo=plus_two)) == T_TEXT
    assert format_time(T_DATETIME) == T_TEXT


def test_now_is_the_clock_in_that_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """``now`` reads the wall clock once and writes it as every record time."""
    monkeypatch.setattr(time, "time", lambda: T)
    assert now() == T_TEXT


@given(st.floats(min_value=0, max_value=4102444799.999999))
def test_now_writes_what_format_time_writes(seconds: float) -> None:
    """Its kept second and its own rounding give format_time's text, to the microsecond."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: seconds)
        assert now() == format_time(seconds)


@pytest.mark.parametrize(
    "seconds",
    [
        1795530000.0000005,  # half a microsecond: to even
        1795530000.0000015,
        1795530000.9999995,  # rounds up into the next second
        1795530000.999999,
        1795530001.0,  # then that second, written from the kept text
        1795530000.5,  # and back: the kept second is not this one
        86399.9999999,  # over a day
    ],
)
def test_now_rounds_and_carries_as_format_time(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(time, "time", lambda: seconds)
    assert now() == format_time(seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (T_TEXT, T_DATETIME),
        ("2026-11-24T16:20:40.463683+02:00", T_DATETIME),  # another offset: the same moment
        ("2026-11-24T14:20:40.463683", T_DATETIME),  # no offset: records are UTC
        ("2026-11-24T14:20:40Z", T_DATETIME.replace(microsecond=0)),  # the apiserver's seconds
        ("2026-11-24T14:20:40.463Z", T_DATETIME.replace(microsecond=463000)),
    ],
)
def test_times_are_read_as_aware_utc(text: str, expected: datetime) -> None:
    """Whatever the precision or offset, the result is an aware datetime in UTC."""
    when = parse_time(text)
    assert when == expected
    assert when is not None
    assert when.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, 17, "", "yesterday", "2026-13-01T00:00:00Z", ["2026-11-24"]])
def test_anything_else_reads_as_no_time(value: object) -> None:
    """None, for the caller to name the field in its own words."""
    assert parse_time(value) is None


def test_written_times_read_back_exactly() -> None:
    """A written time parses to the same microsecond."""
    for seconds in (0.0, T, 1795530000.000001, 4102444799.999999):
        when = parse_time(format_time(seconds))
        assert when is not None
        assert format_time(when) == format_time(seconds)
        assert round(when.timestamp(), 6) == round(seconds, 6)


def test_a_record_is_placed_by_its_time_else_when_it_was_received() -> None:
    """``time`` first; ``received_at`` when there is no readable ``time``; None without either."""
    received = "2026-11-24T14:21:00.000000Z"
    assert record_time({"time": T_TEXT, "received_at": received}) == T_DATETIME
    assert record_time({"time": None, "received_at": received}) == parse_time(received)
    assert record_time({"time": "not a time", "received_at": received}) == parse_time(received)
    assert record_time({"time": None}) is None
    assert record_time({}) is None
