"""Partition ranges: periods, what to create ahead, what is old enough to drop."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmlops.domain.serving.partitions import TimeRange, missing, period_of, wanted, wholly_before


def _d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_months_roll_over_the_year_and_are_named_by_their_first_day() -> None:
    ranges = wanted(_d(2026, 11, 28, 13, 5), "month", 2)
    assert ranges == [
        TimeRange(_d(2026, 11, 1), _d(2026, 12, 1)),
        TimeRange(_d(2026, 12, 1), _d(2027, 1, 1)),
        TimeRange(_d(2027, 1, 1), _d(2027, 2, 1)),
    ]
    assert [r.name for r in ranges] == [
        "predictions_p20261101",
        "predictions_p20261201",
        "predictions_p20270101",
    ]


def test_a_time_with_an_offset_falls_in_its_utc_period() -> None:
    from datetime import timedelta, timezone

    just_after_midnight_in_paris = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert period_of(just_after_midnight_in_paris, "month").lo == _d(2026, 11, 1)
    assert period_of(just_after_midnight_in_paris, "day").lo == _d(2026, 11, 30)


def test_nothing_is_missing_when_existing_partitions_cover_the_need() -> None:
    existing = wanted(_d(2026, 11, 5), "month", 2)
    assert missing(wanted(_d(2026, 11, 28), "month", 2), existing) == []


def test_daily_need_inside_monthly_partitions_creates_only_the_uncovered_days() -> None:
    existing = [TimeRange(_d(2026, 11, 1), _d(2026, 12, 1))]
    need = wanted(_d(2026, 11, 29), "day", 3)  # Nov 29, Nov 30, Dec 1, Dec 2
    assert missing(need, existing) == [
        TimeRange(_d(2026, 12, 1), _d(2026, 12, 2)),
        TimeRange(_d(2026, 12, 2), _d(2026, 12, 3)),
    ]


def test_a_monthly_need_over_daily_partitions_fills_only_the_gaps() -> None:
    existing = [
        TimeRange(_d(2026, 12, 1), _d(2026, 12, 2)),
        TimeRange(_d(2026, 12, 10), _d(2026, 12, 11)),
    ]
    assert missing([period_of(_d(2026, 12, 5), "month")], existing) == [
        TimeRange(_d(2026, 12, 2), _d(2026, 12, 10)),
        TimeRange(_d(2026, 12, 11), _d(2027, 1, 1)),
    ]
    assert TimeRange(_d(2026, 12, 2), _d(2026, 12, 10)).name == "predictions_p20261202"


def test_only_partitions_wholly_older_than_the_cutoff_are_old() -> None:
    parts = wanted(_d(2026, 9, 1), "month", 3)  # Sep, Oct, Nov, Dec
    assert wholly_before(parts, _d(2026, 11, 15)) == parts[:2]
    assert wholly_before(parts, _d(2026, 11, 1)) == parts[:2]
    assert wholly_before(parts, _d(2026, 10, 31)) == parts[:1]
