"""The roster: joining, heartbeats, drop-out after three missed heartbeats, and cards replayed from history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.group.envelope import ROSTER_ANNOUNCE, ROSTER_LEAVE, Envelope, make
from core.group.identity import Identity
from core.group.roster import KEY_GRACE, Roster
from core.timeline.ids import TraceContext

GROUP = "team"


def card(identity: Identity, name: str, heartbeatms: int = 1000, **extra: Any) -> Envelope:
    data = {"agentid": identity.agent_id, "name": name, "description": "", "skills": [{"name": "echo"}],
            "model": "", "zone": "public", "publickey": identity.public_b64, "capabilities": ["task"],
            "version": "t", "heartbeatms": heartbeatms, "startedat": "2026-01-01T00:00:00Z", "status": "idle",
            "activetasks": 0, **extra}  # fmt: skip
    return make(identity, GROUP, ROSTER_ANNOUNCE, data, correlationid=identity.agent_id, trace=TraceContext.new_root())


def test_a_card_joins_and_a_second_updates() -> None:
    roster, alice = Roster("me"), Identity.generate()
    assert roster.apply(card(alice, "alice"))[0] == "joined"
    assert roster.apply(card(alice, "alice-2"))[0] == "updated"
    assert [m.name for m in roster.members()] == ["alice-2"] and roster.key_for(alice.agent_id) is not None


def test_a_member_silent_for_three_heartbeats_drops_out() -> None:
    roster, alice = Roster("me"), Identity.generate()
    roster.apply(card(alice, "alice", heartbeatms=1000))
    assert roster.expire(time.monotonic() + 2.9) == []
    assert [m.name for m in roster.expire(time.monotonic() + 3.1)] == ["alice"]
    assert roster.members() == []


def test_a_leave_removes_the_member() -> None:
    roster, alice = Roster("me"), Identity.generate()
    roster.apply(card(alice, "alice"))
    leave = make(alice, GROUP, ROSTER_LEAVE, {"agentid": alice.agent_id, "reason": "quit"},
                 correlationid=alice.agent_id, trace=TraceContext.new_root())  # fmt: skip
    roster.apply(leave)
    assert roster.members() == []


@pytest.mark.parametrize(("age", "live"), [(0.5, True), (10.0, False)])
def test_a_replayed_card_counts_from_when_it_was_sent(age: float, live: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catching up on the topic's history: a member whose last card is older than three heartbeats is not
    listed (it crashed long ago); a live card read now counts from now whatever its timestamp says."""
    roster, ghost = Roster("me"), Identity.generate()
    import core.timeline.ids as ids

    then = datetime.now(UTC) - timedelta(seconds=age)
    monkeypatch.setattr(ids, "now_iso", lambda: then.isoformat(timespec="microseconds").replace("+00:00", "Z"))
    import core.group.envelope as envelope_module

    monkeypatch.setattr(envelope_module, "now_iso", ids.now_iso)
    old = card(ghost, "ghost", heartbeatms=1000)
    roster.apply(old, replayed=True)
    assert [m.name for m in roster.members()] == ["ghost"]  # applied either way
    roster.expire()
    assert bool(roster.members()) is live
    roster.apply(old)  # the same card read live: heard now
    roster.expire()
    assert [m.name for m in roster.members()] == ["ghost"]


def test_a_departed_agents_key_is_kept_an_hour_then_forgotten_unless_it_came_back() -> None:
    roster = Roster("me")
    sessions = [Identity.generate() for _ in range(50)]  # command-line sessions: a new agent each
    for session in sessions:
        roster.apply(card(session, "cli"))
        roster.apply(make(session, GROUP, ROSTER_LEAVE, {"agentid": session.agent_id},
                          correlationid=session.agent_id, trace=TraceContext.new_root()))  # fmt: skip
    back, silent = Identity.generate(), Identity.generate()
    roster.apply(card(silent, "silent", heartbeatms=1000))
    now = time.monotonic()
    roster.expire(now + 5)  # silent drops out
    assert roster.members() == [] and all(roster.key_for(s.agent_id) for s in [*sessions, silent]), "late envelopes"
    roster.apply(card(back, "back"))
    roster.apply(card(sessions[0], "cli"))  # came back: its key stays
    roster.expire(now + 5 + KEY_GRACE + 1)
    assert [s for s in sessions[1:] if roster.key_for(s.agent_id)] == [] and roster.key_for(silent.agent_id) is None
    assert roster.key_for(sessions[0].agent_id) is not None and roster.key_for(back.agent_id) is not None


async def test_a_wait_for_a_key_that_never_comes_leaves_nothing_behind() -> None:
    roster = Roster("me")
    for n in range(20):
        assert await roster.wait_for_key(f"stranger{n}", 0.001) is None
    assert roster._waiters == {}


def test_senders_not_waited_for_are_remembered_only_while_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.group import intake

    checker = intake.Intake(None, set())  # type: ignore[arg-type]  # `_quiet` needs no node
    clock = [1000.0]
    monkeypatch.setattr(intake.time, "monotonic", lambda: clock[0])
    for n in range(100):  # a flood of forged ids, one each
        checker._quiet(f"forged{n}")
    assert len(checker._unknown) == 100, "all still quiet"
    clock[0] += intake.UNKNOWN_SENDER_QUIET + 1
    checker._quiet("one more")
    assert list(checker._unknown) == ["one more"], "the ones whose quiet time is over are gone"
