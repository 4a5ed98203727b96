"""The policy across agents on the real broker: what a peer may be sent, the label a task carries to the agent
that takes it, and what may be shared with a zone."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core import events as ev
from core.errors import PolicyDenied
from core.providers.scripted import tool_call
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import eventually, group_overrides

CODER = [{"name": "coder", "description": "writes code", "handler": "agent"}]
REMOTE = {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-test"}


def with_policy(overrides: dict[str, object], folder: Path, text: str) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.toml").write_text(text)
    return {**overrides, "policy": {"file": str(folder / "policy.toml")}}


async def test_a_confidential_conversation_is_not_delegated(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    alice_steps = [[tool_call("delegate", {"skill": "coder", "task": "fix my payroll script"})], "I kept it here."]
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    b_over = group_overrides(kafka_broker, group, "bob", tmp_path / "b", skills=CODER)
    async with (
        scripted_core(alice_steps, overrides=a_over) as (alice, alice_model),
        scripted_core(["never"], overrides=b_over) as (_bob, bob_model),
    ):
        await eventually(lambda: len(alice.group.members()) == 2, timeout=20)
        session = await alice.new_session()
        events = [e async for e in alice.send(session.id, "my payroll script is broken", label="confidential")]
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert not result.ok and "builtin:peers" in (result.error or "") and "skill:coder" in (result.error or "")
        assert "confidential" in alice_model.calls[1][-1].content
        assert isinstance(events[-1], ev.TurnFinished)
        [denied] = [
            d
            for d in await alice.timeline.events(session_id=session.id, kind="policy.decision")
            if d.status == "denied"
        ]
        assert denied.payload["action"] == "peer" and denied.payload["target"] == "skill:coder"
        assert not alice.group.dispatcher.handles and bob_model.calls == []  # nothing was sent


async def test_a_task_carries_its_label_and_the_taker_applies_its_own_policy(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    allow_confidential = (
        '[[rules]]\nname = "team"\neffect = "allow"\naction = "peer"\ntarget = "bob"\nmax_label = "confidential"\n'
    )
    a_base = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    a_over = with_policy(a_base, tmp_path / "pa", allow_confidential)
    b_over = {**group_overrides(kafka_broker, group, "bob", tmp_path / "b", skills=CODER), "model": REMOTE}
    async with (
        scripted_core(["unused"], overrides=a_over) as (alice, _),
        scripted_core(["never"], overrides=b_over) as (bob, bob_model),
    ):
        await eventually(lambda: len(alice.group.members()) == 2, timeout=20)
        handle = await alice.group.dispatch("summarise my medical notes", to="bob", label="confidential", deadline=20)
        result = await handle.result()
        # Bob's model is a remote endpoint: a confidential task may not go there, whoever sent it
        assert result.status == "error" and "builtin:remote-model" in result.error["message"], result
        assert bob_model.calls == []
        bob_decisions = await bob.timeline.events(kind="policy.decision")
        denied = next(d for d in bob_decisions if d.status == "denied")
        assert denied.payload["requester"] == "peer:alice" and denied.payload["label"] == "confidential"
        started = next(e for e in await bob.timeline.events(kind="user.message"))
        assert started.payload["label"] == "confidential"


async def test_sharing_with_a_zone_follows_the_label(
    kafka_broker: TansuBroker, tmp_path: Path, embedding_client: object
) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    over = group_overrides(kafka_broker, group, "alice", tmp_path / "a")  # zone: public (the default)
    async with scripted_core(["unused"], overrides=over, embedder=embedding_client) as (alice, _):
        shared = alice.group.shared
        with pytest.raises(PolicyDenied, match="builtin:zone-public"):
            await shared.share("The staging database is refreshed on Mondays.")  # internal: the default label
        itemid = await shared.share("The office closes at six.", fallback="public")
        assert itemid
        denied, allowed = await alice.timeline.events(kind="policy.decision")
        assert (denied.status, allowed.status) == ("denied", "ok")
        assert allowed.payload["label"] == "public" and allowed.payload["target"] == "public"
        sources = await alice.memory.sources(kind="shared")
        assert [s["label"] for s in sources] == ["public"]


async def test_an_answer_comes_back_with_its_label(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    bob_rules = '[[classify]]\nname = "health"\npattern = "(?i)diagnosis"\nlabel = "confidential"\n'
    alice_steps = [[tool_call("ask_peer", {"agent": "bob", "task": "is my diagnosis in?"})], "Thanks."]
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    b_over = with_policy(group_overrides(kafka_broker, group, "bob", tmp_path / "b"), tmp_path / "pb", bob_rules)
    async with (
        scripted_core(alice_steps, overrides=a_over) as (alice, _),
        scripted_core(["It came back fine."], overrides=b_over) as (_bob, _),
    ):
        await eventually(lambda: len(alice.group.members()) == 2, timeout=20)
        session = await alice.new_session()
        events = [e async for e in alice.send(session.id, "ask bob about it")]
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert result.ok and "came back fine" in result.output, result
        # bob's own rule labelled the task, so its answer is confidential, and alice keeps it so
        labelled = await alice.sessions.labelled_messages(session.id)
        assert [label for m, label in labelled if m.role == "tool"] == ["confidential"]
        [call] = await alice.timeline.events(session_id=session.id, kind="tool.result")
        assert call.payload["data"]["label"] == "confidential"


async def test_a_rate_limited_task_makes_no_session_or_turn(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    bob_rules = '[[rate_limits]]\nname = "one-task"\nscope = "peer"\nrate = 0.001\nburst = 1\n'
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    b_over = with_policy(group_overrides(kafka_broker, group, "bob", tmp_path / "b"), tmp_path / "pb", bob_rules)
    async with (
        scripted_core([], overrides=a_over) as (alice, _),
        scripted_core(["Done."], overrides=b_over) as (bob, _),
    ):
        await eventually(lambda: len(alice.group.members()) == 2, timeout=20)
        first = await (await alice.group.dispatch("the first one", to="bob", deadline=20)).result()
        assert first.status == "ok", first
        refused = await (await alice.group.dispatch("and the other one?", to="bob", deadline=20)).result()
        assert refused.status == "error" and "one-task" in refused.error["message"], refused
        assert len([s for s in await bob.sessions.recent() if s.title.startswith("Task from")]) == 1
        assert len(await bob.timeline.events(kind="user.message")) == 1
        [denied] = [d for d in await bob.timeline.events(kind="policy.decision") if d.status == "denied"]
        assert denied.payload["rule"] == "one-task" and denied.payload["requester"] == "peer:alice"
