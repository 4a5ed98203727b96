"""The missed-run rule: what to do about a job whose time came while Shoal could not run it.

Shoal was closed, the computer slept, the clock jumped, or the scheduler was paused. Running every missed time
on return would fire a burst of identical prompts (a laptop closed over a weekend would run an every-30-minutes
job a hundred times), so the rule is, per job (docs/schedule.md says the same for users):

1. A time that is at most `ON_TIME` old is simply due: it runs, with trigger `schedule` (the newest, when
   several are that recent; the others count as missed, as in 4).
2. Otherwise look at the newest missed time. If the job's `catch_up` (or, unset, the setting
   `schedule.catch_up`) is `once` and that time is within `schedule.catch_up_window_hours`, ONE run happens now
   for it, with trigger `catch_up`.
3. Otherwise (`skip`, or too old) nothing runs.
4. Every other missed time is recorded as one `missed` run with a count ("10,000+" past `MISSED_CAP`), never
   as a run each.
5. The next run is the first scheduled time after now (an interval keeps its phase).

`decide` is a pure function of the schedule, the job's due time and the clock, so the rule is tested without
waiting for anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from core.schedule.spec import MISSED_CAP, Spec

ON_TIME = timedelta(minutes=2)  # the runner wakes at least every 30 s: later than this, the run was missed


@dataclass(frozen=True)
class Decision:
    run_for: datetime | None  # run now, for this scheduled time; None: nothing runs
    trigger: str  # schedule | catch_up (meaningful when run_for is set)
    missed_count: int  # scheduled times recorded as one `missed` run; 0: none
    missed_first: datetime | None
    missed_last: datetime | None
    next_run: datetime | None  # the first time after now; None: a one-off that is done
    reason: str  # why the missed times did not run (the missed row's summary)


def decide(spec: Spec, due: datetime, now: datetime, *, catch_up: str, window: timedelta, zone: tzinfo) -> Decision:
    """For a job whose next run, `due`, is at or before `now`. Every scheduled time from `due` to `now` is either
    run or counted in the `missed` row: when several are at most `ON_TIME` old (a job every minute after a short
    sleep), the newest runs on time and the others are missed, never dropped without a trace. Counting a long
    absence can take a while (up to `MISSED_CAP` cron times): the runner calls this off its event loop then."""
    next_run = spec.next_after(now, zone, anchor=due)
    newest = spec.last_at_or_before(now, zone, anchor=due) or due
    if newest == due and now - due <= ON_TIME:
        return Decision(due, "schedule", 0, None, None, next_run, "")
    count = spec.count_between(due, now, zone)
    capped = count >= MISSED_CAP
    if now - newest <= ON_TIME or (catch_up == "once" and now - newest <= window):
        trigger = "schedule" if now - newest <= ON_TIME else "catch_up"
        older = count if capped else count - 1
        last = spec.last_at_or_before(newest - timedelta(microseconds=1), zone, anchor=due) if older else None
        reason = (
            f"{_runs(older, capped)} missed while Shoal was not running; "
            + ("the next one ran on time" if trigger == "schedule" else "one catch-up run took their place")
            if older
            else ""
        )
        return Decision(newest, trigger, older, due if older else None, last, next_run, reason)
    if catch_up == "once":
        hours = window.total_seconds() / 3600
        reason = (
            f"{_runs(count, capped)} missed while Shoal was not running; the newest was {_age(now - newest)} ago, "
            f"older than the catch-up window of {hours:g} hours"
        )
    else:
        reason = f"{_runs(count, capped)} missed while Shoal was not running; catch-up is off (skip)"
    return Decision(None, "", count, due, newest, next_run, reason)


def _runs(count: int, capped: bool = False) -> str:
    if capped:
        return f"{MISSED_CAP:,}+ runs"  # counting stopped there: the exact number helps nobody
    return "1 run" if count == 1 else f"{count:,} runs"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
