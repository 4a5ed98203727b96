"""Schedules as people type them: cron fields, intervals, one-off times; their next times, DST, and words."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.errors import UserError
from core.schedule.clock import from_iso, local_zone, to_iso
from core.schedule.spec import ScheduleExpressionError, Spec, parse_cron, parse_interval, parse_once, parse_spec
from core.schedule.words import describe, relative, when

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)  # Monday 07:00 in Berlin


def local(times: list[datetime], zone: ZoneInfo = BERLIN) -> list[str]:
    return [t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z") for t in times]


def test_a_weekday_cron_runs_at_local_wall_clock_time() -> None:
    spec = parse_cron("0 8 * * 1-5", zone=BERLIN, now=NOW)
    assert spec == Spec("cron", "0 8 * * 1-5")
    friday_noon = datetime(2026, 6, 5, 10, 0, tzinfo=UTC)
    assert local(spec.upcoming(friday_noon, BERLIN, 3)) == [
        "Mon 2026-06-08 08:00 CEST",
        "Tue 2026-06-09 08:00 CEST",
        "Wed 2026-06-10 08:00 CEST",
    ]
    # strictly after: at 08:00 exactly, the next one is tomorrow's
    eight = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    assert local([spec.next_after(eight, BERLIN)]) == ["Tue 2026-06-02 08:00 CEST"]  # type: ignore[list-item]
    assert spec.last_at_or_before(eight, BERLIN) == eight


@pytest.mark.parametrize(
    ("expr", "field", "words"),
    [
        ("61 8 * * *", "minute", "0-59"),
        ("0 25 * * *", "hour", "0-23"),
        ("0 8 32 * *", "day-of-month", "1-31"),
        ("0 8 * 13 *", "month", "1-12"),
        ("0 8 * * 9", "day-of-week", "0-6"),
        ("0 8 * * noday", "day-of-week", "sun-sat"),
        ("*/0 * * * *", "minute", "step"),
    ],
)
def test_a_bad_cron_field_is_named_with_what_it_takes(expr: str, field: str, words: str) -> None:
    with pytest.raises(ScheduleExpressionError) as caught:
        parse_cron(expr, zone=BERLIN, now=NOW)
    error = caught.value
    assert isinstance(error, UserError) and error.exit_code == 2
    assert error.field == field
    fields = ["minute", "hour", "day-of-month", "month", "day-of-week"]
    assert f"The {field} field {expr.split()[fields.index(field)]!r}" in error.message
    assert words in error.fix


def test_cron_shape_and_impossible_dates_are_refused_with_a_fix() -> None:
    with pytest.raises(ScheduleExpressionError, match="has 4 fields; it needs 5") as four:
        parse_cron("0 8 * *", zone=BERLIN, now=NOW)
    assert "minute hour day-of-month month day-of-week" in four.value.fix
    with pytest.raises(ScheduleExpressionError, match="never matches a real date"):
        parse_cron("0 8 30 2 *", zone=BERLIN, now=NOW)
    assert parse_cron("@daily", zone=BERLIN, now=NOW).next_after(NOW, BERLIN) == datetime(2026, 6, 1, 22, tzinfo=UTC)


def test_spring_forward_a_missing_time_runs_when_the_clocks_have_moved() -> None:
    """Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night."""
    spec = parse_cron("30 2 * * *", zone=BERLIN, now=NOW)
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert local(spec.upcoming(before, BERLIN, 3)) == [
        "Sun 2026-03-29 03:00 CEST",  # the first minute after the gap
        "Mon 2026-03-30 02:30 CEST",
        "Tue 2026-03-31 02:30 CEST",
    ]
    daily = parse_cron("0 8 * * *", zone=BERLIN, now=NOW)
    times = daily.upcoming(before, BERLIN, 3)
    assert local(times) == ["Sun 2026-03-29 08:00 CEST", "Mon 2026-03-30 08:00 CEST", "Tue 2026-03-31 08:00 CEST"]
    assert times[0] - datetime(2026, 3, 28, 7, 0, tzinfo=UTC) == timedelta(hours=23)  # the short day


def test_fall_back_a_repeated_time_runs_once() -> None:
    """Europe/Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice."""
    spec = parse_cron("30 2 * * *", zone=BERLIN, now=NOW)
    before = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    times = spec.upcoming(before, BERLIN, 2)
    assert local(times) == ["Sun 2026-10-25 02:30 CEST", "Mon 2026-10-26 02:30 CET"]
    half_hourly = parse_cron("*/30 * * * *", zone=BERLIN, now=NOW)
    run = half_hourly.upcoming(datetime(2026, 10, 24, 23, 0, tzinfo=UTC), BERLIN, 5)
    assert local(run) == [
        "Sun 2026-10-25 01:30 CEST",
        "Sun 2026-10-25 02:00 CEST",
        "Sun 2026-10-25 02:30 CEST",
        "Sun 2026-10-25 03:00 CET",
        "Sun 2026-10-25 03:30 CET",
    ]
    assert all(b > a for a, b in itertools.pairwise(run)), "always forward, never a time twice"
    # asked from inside the second 02:xx, the next run is not the earlier 02:30 again
    second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET
    assert local([half_hourly.next_after(second_pass, BERLIN)]) == ["Sun 2026-10-25 03:00 CET"]  # type: ignore[list-item]


def test_new_york_dst_keeps_eight_oclock() -> None:
    spec = parse_cron("0 8 * * *", zone=NEW_YORK, now=NOW)
    times = spec.upcoming(datetime(2026, 3, 7, 20, 0, tzinfo=UTC), NEW_YORK, 2)
    assert local(times, NEW_YORK) == ["Sun 2026-03-08 08:00 EDT", "Mon 2026-03-09 08:00 EDT"]
    assert [t.astimezone(UTC).hour for t in times] == [12, 12]


def test_intervals_parse_normalise_and_keep_their_phase() -> None:
    assert parse_interval("every 30m") == Spec("interval", "30m")
    assert parse_interval("2 hours and 15 minutes").expr == "2h15m"
    assert parse_interval("every hour").expr == "1h"
    assert parse_interval("1d").expr == "1d"
    with pytest.raises(ScheduleExpressionError, match="too often") as often:
        parse_interval("30s")
    assert "1 minute" in often.value.fix
    for bad in ("soon", "5 fortnights", "every", "0m"):
        with pytest.raises(ScheduleExpressionError, match="not an interval"):
            parse_interval(bad)
    spec = parse_interval("30m")
    anchor = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    late = anchor + timedelta(hours=5, minutes=7)
    assert spec.next_after(late, UTC, anchor=anchor) == anchor + timedelta(hours=5, minutes=30)
    assert spec.last_at_or_before(late, UTC, anchor=anchor) == anchor + timedelta(hours=5)
    assert spec.count_between(anchor, late, UTC) == 11
    # across DST an interval is elapsed time: 24 hours apart, whatever the clock on the wall says
    day = parse_interval("1d")
    start = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    assert day.next_after(start, BERLIN, anchor=start) == start + timedelta(days=1)


def test_one_off_times_in_local_time_with_their_offset() -> None:
    spec = parse_once("2026-12-01 08:00", zone=BERLIN, now=NOW)
    assert spec == Spec("once", "2026-12-01T08:00+01:00")
    assert spec.next_after(NOW, BERLIN) == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert spec.next_after(datetime(2026, 12, 2, tzinfo=UTC), BERLIN) is None
    assert parse_once("08:00", zone=BERLIN, now=NOW).at() == datetime(2026, 6, 1, 8, 0, tzinfo=BERLIN)
    assert parse_once("06:30", zone=BERLIN, now=NOW).at() == datetime(2026, 6, 2, 6, 30, tzinfo=BERLIN)  # tomorrow
    assert parse_once("2026-12-01T08:00:00Z", zone=BERLIN, now=NOW).at() == datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(ScheduleExpressionError, match="is in the past"):
        parse_spec(at="2026-05-31 12:00", zone=BERLIN, now=NOW)
    with pytest.raises(ScheduleExpressionError, match="not a date and time") as bad:
        parse_spec(at="next tuesday", zone=BERLIN, now=NOW)
    assert "YYYY-MM-DD HH:MM" in bad.value.fix


def test_exactly_one_kind_of_schedule() -> None:
    with pytest.raises(ScheduleExpressionError, match="exactly one"):
        parse_spec(zone=UTC, now=NOW)
    with pytest.raises(ScheduleExpressionError, match="only one"):
        parse_spec(cron="0 8 * * *", every="1h", zone=UTC, now=NOW)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (Spec("cron", "0 8 * * 1-5"), "every weekday at 08:00"),
        (Spec("cron", "30 7 * * *"), "every day at 07:30"),
        (Spec("cron", "0 9 * * mon"), "every Monday at 09:00"),
        (Spec("cron", "0 8,18 * * *"), "every day at 08:00 and 18:00"),
        (Spec("cron", "*/15 * * * *"), "every 15 minutes"),
        (Spec("cron", "5 * * * *"), "every hour at :05"),
        (Spec("cron", "0 6 1 * *"), "on the 1st of every month at 06:00"),
        (Spec("cron", "0 8 * * 1,3,5"), "on Mon, Wed, Fri at 08:00"),
        (Spec("cron", "0 4 1 1 *"), "cron 0 4 1 1 *"),
        (Spec("interval", "30m"), "every 30 minutes"),
        (Spec("interval", "1h30m"), "every 1 hour 30 minutes"),
        (Spec("interval", "1d"), "every day"),
        (Spec("once", "2026-12-01T08:00+01:00"), "once, Tue 1 Dec 2026 at 08:00"),
    ],
)
def test_schedules_in_words(spec: Spec, words: str) -> None:
    assert describe(spec, BERLIN) == words


def test_times_for_lists_and_the_stored_form() -> None:
    now = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert when("2026-06-01T06:00:00.000000Z", zone=BERLIN, now=now) == "today 08:00"
    assert when(datetime(2026, 6, 2, 6, 0, tzinfo=UTC), zone=BERLIN, now=now) == "tomorrow 08:00"
    assert when("2026-06-09T06:00:00Z", zone=BERLIN, now=now) == "Tue 9 Jun 08:00"
    assert when(None) == "—"
    assert relative(now + timedelta(minutes=5), now) == "in 5 min"
    assert relative(now - timedelta(hours=3), now) == "3 h ago"
    stored = to_iso(datetime(2026, 6, 1, 8, 0, tzinfo=BERLIN))
    assert stored == "2026-06-01T06:00:00.000000Z" and from_iso(stored) == datetime(2026, 6, 1, 6, tzinfo=UTC)


def test_the_local_zone_is_a_real_zone_with_dst_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    zone = local_zone()
    assert isinstance(zone, ZoneInfo) and zone.key == "Europe/Berlin"
    monkeypatch.setenv("TZ", "Not/A_Zone")
    assert local_zone().utcoffset(datetime(2026, 1, 1)) is not None  # falls back to the system's zone


def test_a_date_without_a_time_is_refused_rather_than_taken_as_midnight() -> None:
    with pytest.raises(ScheduleExpressionError, match="date without a time") as bare:
        parse_spec(at="2027-12-01", zone=BERLIN, now=NOW)
    assert '"2027-12-01 09:00"' in bare.value.fix
    assert parse_spec(at="2027-12-01 00:00", zone=BERLIN, now=NOW).at() == datetime(2027, 12, 1, tzinfo=BERLIN)
    assert parse_spec(at="2027-12-01T09", zone=BERLIN, now=NOW).at() == datetime(2027, 12, 1, 9, tzinfo=BERLIN)


def test_counting_missed_cron_times_walks_one_iterator_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting a month of an every-minute job built a croniter per time (seconds on the event loop)."""
    built: list[datetime] = []
    make = Spec._cron
    monkeypatch.setattr(Spec, "_cron", lambda self, start: built.append(start) or make(self, start))
    minutely = Spec("cron", "* * * * *")
    assert minutely.count_between(NOW, NOW + timedelta(days=30), BERLIN) == 10_000
    assert len(built) == 1
    # the walk keeps the DST rules of `next_after`: the same times as asking one by one, never one twice
    half_hourly = Spec("cron", "*/30 * * * *")
    start, end = datetime(2026, 10, 24, 20, 0, tzinfo=UTC), datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    one_by_one = [t for t in half_hourly.upcoming(start, BERLIN, 40) if t <= end]
    assert half_hourly.count_between(start, end, BERLIN) == len(one_by_one) + 1  # `start` counts itself
    gap = Spec("cron", "*/15 2 * * *")  # every quarter of 02:xx, on the night 02:xx does not exist
    spring = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert local(gap.upcoming(spring, BERLIN, 2)) == ["Sun 2026-03-29 03:00 CEST", "Mon 2026-03-30 02:00 CEST"]
