"""The roster: joining, heartbeats, drop-out after three missed heartbeats, and cards replayed from history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.group.envelope import ROSTER_ANNOUNCE, ROSTER_LEAVE, Envelope, make
from core.group.identity import Identity
from core.group.roster import Roster
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
