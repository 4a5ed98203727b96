"""The missed-run rule as a pure function of the schedule, the due time and the clock (docs/schedule.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.schedule.rules import ON_TIME, decide
from core.schedule.spec import Spec

DAILY = Spec("cron", "0 8 * * *")
DUE = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def test_a_time_just_passed_is_simply_due() -> None:
    decision = decide(DAILY, DUE, DUE + timedelta(seconds=40), catch_up="skip", window=DAY, zone=UTC)
    assert decision.run_for == DUE and decision.trigger == "schedule"
    assert decision.missed_count == 0 and decision.reason == ""
    assert decision.next_run == DUE + DAY


def test_once_runs_one_catch_up_for_the_newest_and_records_the_rest_as_one_missed_row() -> None:
    now = DUE + 2 * DAY + timedelta(hours=1)  # three 08:00s passed; the newest an hour ago
    decision = decide(DAILY, DUE, now, catch_up="once", window=DAY, zone=UTC)
    assert decision.run_for == DUE + 2 * DAY and decision.trigger == "catch_up"
    assert decision.missed_count == 2
    assert (decision.missed_first, decision.missed_last) == (DUE, DUE + DAY)
    assert "2 runs missed" in decision.reason and "one catch-up run" in decision.reason
    assert decision.next_run == DUE + 3 * DAY


def test_skip_runs_nothing_and_records_every_missed_time_as_one_row() -> None:
    now = DUE + 2 * DAY + timedelta(hours=1)
    decision = decide(DAILY, DUE, now, catch_up="skip", window=DAY, zone=UTC)
    assert decision.run_for is None
    assert decision.missed_count == 3 and decision.missed_last == DUE + 2 * DAY
    assert "catch-up is off (skip)" in decision.reason
    assert decision.next_run == DUE + 3 * DAY


def test_once_skips_a_time_older_than_the_window() -> None:
    now = DUE + timedelta(hours=5)
    inside = decide(DAILY, DUE, now, catch_up="once", window=timedelta(hours=6), zone=UTC)
    assert inside.run_for == DUE and inside.missed_count == 0
    outside = decide(DAILY, DUE, now, catch_up="once", window=timedelta(hours=4), zone=UTC)
    assert outside.run_for is None and outside.missed_count == 1
    assert "older than the catch-up window of 4 hours" in outside.reason and "5.0 hours ago" in outside.reason


def test_an_interval_after_a_long_sleep_runs_its_current_time_and_never_a_burst() -> None:
    """An every-30-minutes job over a closed laptop lid from Friday 18:00 to Monday 09:10."""
    every = Spec("interval", "30m")
    friday = datetime(2026, 6, 5, 18, 0, tzinfo=UTC)
    monday = datetime(2026, 6, 8, 9, 10, tzinfo=UTC)
    decision = decide(every, friday, monday, catch_up="once", window=DAY, zone=UTC)
    assert decision.run_for == datetime(2026, 6, 8, 9, 0, tzinfo=UTC) and decision.trigger == "catch_up"
    assert decision.missed_count == 2 * (24 * 2 + 15)  # every other half hour, as one row
    assert decision.next_run == datetime(2026, 6, 8, 9, 30, tzinfo=UTC), "the phase is kept"
    # the newest time only seconds old is on time even when catch-up is off
    just = datetime(2026, 6, 8, 9, 0, 30, tzinfo=UTC)
    skipped = decide(every, friday, just, catch_up="skip", window=DAY, zone=UTC)
    assert skipped.run_for == datetime(2026, 6, 8, 9, 0, tzinfo=UTC) and skipped.trigger == "schedule"
    assert skipped.missed_count == 2 * (24 * 2 + 15) and "the next one ran on time" in skipped.reason


def test_a_missed_one_off_follows_the_rule_and_is_then_done() -> None:
    once = Spec("once", "2026-06-01T08:00+00:00")
    late = DUE + timedelta(hours=3)
    caught = decide(once, DUE, late, catch_up="once", window=DAY, zone=UTC)
    assert caught.run_for == DUE and caught.trigger == "catch_up" and caught.next_run is None
    dropped = decide(once, DUE, late, catch_up="skip", window=DAY, zone=UTC)
    assert dropped.run_for is None and dropped.missed_count == 1 and dropped.next_run is None


def test_the_on_time_grace_is_small() -> None:
    assert timedelta(minutes=2) >= ON_TIME
    late = decide(DAILY, DUE, DUE + ON_TIME + timedelta(seconds=1), catch_up="once", window=DAY, zone=UTC)
    assert late.trigger == "catch_up"


def test_two_times_within_the_grace_run_the_newest_and_record_the_other() -> None:
    """A job every minute, looked at 90 s after its due time: 08:01 also passed; it was dropped silently."""
    minutely = Spec("cron", "* * * * *")
    decision = decide(minutely, DUE, DUE + timedelta(seconds=90), catch_up="skip", window=DAY, zone=UTC)
    assert decision.run_for == DUE + timedelta(minutes=1) and decision.trigger == "schedule"
    assert (decision.missed_count, decision.missed_first, decision.missed_last) == (1, DUE, DUE)
    assert "1 run missed" in decision.reason and decision.next_run == DUE + timedelta(minutes=2)


def test_a_very_long_absence_is_counted_up_to_a_cap_and_said_so() -> None:
    minutely = Spec("cron", "* * * * *")
    now = DUE + 30 * DAY
    skipped = decide(minutely, DUE, now, catch_up="skip", window=DAY, zone=UTC)
    assert skipped.missed_count == 10_000 and skipped.reason.startswith("10,000+ runs missed")
    caught = decide(minutely, DUE, now + timedelta(seconds=30), catch_up="once", window=DAY, zone=UTC)
    assert caught.run_for == now and caught.reason.startswith("10,000+ runs missed")
