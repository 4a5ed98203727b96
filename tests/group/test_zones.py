"""Private zones on the real broker: the founder defines a zone, a task dispatched to it is sealed for its
members (the broker holds only ciphertext), one of them takes it, and an outsider never processes it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.errors import UserError
from core.group.envelope import TASK_REQUEST, parse
from core.group.identity import load_or_create
from core.group.invite import Invite
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import eventually, read_all
from tests.group.test_onboarding import ECHO, member

SECRET_TEXT = "quarterly numbers: 4,2 million"


async def test_private_zone_task_is_sealed_and_only_members_take_it(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"z{uuid.uuid4().hex[:8]}"
    fdata = tmp_path / "founder"
    founder_id = load_or_create(group, str(fdata.resolve()))
    invite = Invite.create(group, founder_id.agent_id, [kafka_broker.bootstrap])
    async with (
        member(kafka_broker, group, "founder", fdata, invite) as founder,
        member(kafka_broker, group, "insider", tmp_path / "a", invite, skills=ECHO) as insider,
        member(kafka_broker, group, "outsider", tmp_path / "b", invite, skills=ECHO) as outsider,
    ):
        fnode, anode, bnode = founder.group.node, insider.group.node, outsider.group.node
        await fnode.onboarding.found()
        await anode.onboarding.join(20)
        await bnode.onboarding.join(20)
        await eventually(lambda: all(fnode.roster.get(n.agent_id) for n in (anode, bnode)))
        with pytest.raises(UserError, match="founder"):
            await anode.onboarding.define_zone("finance", [anode.agent_id])  # only the founder defines zones
        await fnode.onboarding.define_zone("finance", [fnode.agent_id, anode.agent_id], "money")
        for node in (fnode, anode, bnode):
            await eventually(lambda node=node: node.zones.is_private("finance"))
        assert bnode.zones.zones_of(bnode.agent_id) == ["public", "shared"]

        handle = await founder.group.dispatch(SECRET_TEXT, skill="echo", zone="finance", deadline=20)
        result = await handle.result()
        assert result.status == "ok" and result.output == SECRET_TEXT
        assert result.agent["agentid"] == anode.agent_id  # a member of the zone took it

        requests = await read_all(kafka_broker.bootstrap, f"group.{group}.requests")
        responses = await read_all(kafka_broker.bootstrap, f"group.{group}.responses")
        wire = b"".join(r.value for r in requests + responses)
        assert SECRET_TEXT.encode() not in wire and b"4,2 million" not in wire  # only ciphertext on the broker
        sealed = [parse(r.value) for r in requests if TASK_REQUEST.encode() in r.value]
        assert sealed and all(e.zone == "finance" and set(e.attrs["data"]) == {"sealed"} for e in sealed)

        outsider_saw = [e for e in await outsider.timeline.events(limit=500) if e.kind == "group.received"]
        assert not any(e.name == TASK_REQUEST for e in outsider_saw)  # never processed, never recorded

        with pytest.raises(UserError, match="not in zone"):  # an outsider cannot send into the zone either
            await outsider.group.dispatch("let me see", zone="finance", to=anode.agent_id)


async def test_plaintext_task_from_a_zone_the_agent_is_not_in_is_dropped(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    """A (foreign) peer that sends a private zone's task in plaintext: a non-member drops and audits it."""
    group = f"z{uuid.uuid4().hex[:8]}"
    fdata = tmp_path / "founder"
    founder_id = load_or_create(group, str(fdata.resolve()))
    invite = Invite.create(group, founder_id.agent_id, [kafka_broker.bootstrap])
    async with (
        member(kafka_broker, group, "founder", fdata, invite) as founder,
        member(kafka_broker, group, "outsider", tmp_path / "b", invite, skills=ECHO) as outsider,
    ):
        fnode, bnode = founder.group.node, outsider.group.node
        await fnode.onboarding.found()
        await bnode.onboarding.join(20)
        await fnode.onboarding.define_zone("finance", [fnode.agent_id])
        await eventually(lambda: bnode.zones.is_private("finance"))
        fnode._sealed = lambda event_type, data, zone: (data, None)  # type: ignore[method-assign]  # a broken sender: plaintext
        await founder.group.dispatch("plain", to=bnode.agent_id, zone="finance", deadline=5)

        async def dropped() -> bool:
            events = await outsider.timeline.events(limit=500)
            return any(e.kind == "group.dropped" and e.payload["reason"] == "not-in-zone" for e in events)

        from tests.group.test_onboarding import _eventually_async

        await _eventually_async(dropped, 20)
