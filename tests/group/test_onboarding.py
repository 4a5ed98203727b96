"""Onboarding on the real broker: found a closed group, join with an invite, and every refusal the docs list
(wrong secret, replayed exchange, stolen key, another name, never admitted, revoked), each one audited."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import UserError
from core.group.invite import Invite, store_invite
from core.group.membership import CONTROL_JOIN, CONTROL_PROOF
from core.service import AgentCore
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import RawPeer, eventually, group_overrides, read_all

ECHO = [{"name": "echo", "handler": "echo"}]


@contextlib.asynccontextmanager
async def member(
    broker: TansuBroker, group: str, name: str, data: Path, invite: Invite | None, **extra: Any
) -> AsyncIterator[AgentCore]:
    """A core in `group` holding `invite` (stored in the keyring under its own data folder, as `join` does)."""
    if invite is not None:
        store_invite(invite, str(data.resolve()))
    overrides = group_overrides(broker, group, name, data, **extra)
    async with scripted_core(["ok"], overrides=overrides) as (core, _):
        await core.group.node.wait_online(15)
        await core.group.node.roster_caught_up(15)
        yield core


@contextlib.asynccontextmanager
async def founded(broker: TansuBroker, tmp_path: Path, **extra: Any) -> AsyncIterator[tuple[AgentCore, Invite]]:
    """A founder serving `echo`, admitted by its own genesis record; the invite it would print."""
    from core.group.identity import load_or_create

    group = f"g{uuid.uuid4().hex[:8]}"
    data = tmp_path / "founder"
    identity = load_or_create(group, str(data.resolve()))
    invite = Invite.create(group, identity.agent_id, [broker.bootstrap])
    async with member(broker, group, "founder", data, invite, skills=ECHO, **extra) as core:
        node = core.group.node
        assert node.agent_id == identity.agent_id
        await node.onboarding.found()
        assert await node.membership.wait_admitted(node.agent_id, 10)
        assert node.membership.status(node.agent_id) == "admitted"
        yield core, invite


def _membership_events(core: AgentCore) -> Any:
    async def read() -> list[Any]:
        return [e for e in await core.timeline.events(limit=1000) if e.kind == "group.membership"]

    return read()


def _dropped(core: AgentCore) -> Any:
    async def read() -> list[Any]:
        return [e for e in await core.timeline.events(limit=1000) if e.kind == "group.dropped"]

    return read()


async def test_invite_join_admit_and_work_together(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):
        group = invite.group
        async with member(kafka_broker, group, "newbie", tmp_path / "n", Invite.parse(invite.code())) as newbie:
            node = newbie.group.node
            assert node.membership.status(node.agent_id) == "unknown"  # not in yet
            admission = await node.onboarding.join(20)
            assert admission.name == "newbie" and admission.admitted_by == founder.group.node.agent_id
            fnode = founder.group.node
            await eventually(lambda: fnode.membership.status(node.agent_id) == "admitted")
            await eventually(lambda: fnode.roster.get(node.agent_id) is not None)  # its held card let in
            handle = await newbie.group.dispatch("hello", skill="echo", deadline=20)
            result = await handle.result()
            assert result.status == "ok" and result.output == "hello"
            events = await _membership_events(founder)
            assert [e.name for e in events] == ["admitted"] and events[0].payload["name"] == "newbie"
        audit = await read_all(kafka_broker.bootstrap, f"group.{group}.audit")
        assert b'"membership"' in b"".join(r.value for r in audit)  # the admission reached the audit trail
        control = await read_all(kafka_broker.bootstrap, f"group.{group}.control")
        kinds = _validate_against_schema(control)
        assert {"shoal.control.join", "shoal.control.challenge", "shoal.control.proof", "shoal.control.admit"} <= kinds


def _validate_against_schema(records: list[Any]) -> set[str]:
    """Every control record as docs/protocol.md's JSON Schema describes it; the types seen."""
    import json

    from jsonschema import Draft202012Validator

    schema_path = Path(__file__).resolve().parents[2] / "resources" / "schemas" / "envelope.schema.json"
    validator = Draft202012Validator(json.loads(schema_path.read_text()))
    kinds = set()
    for record in records:
        attrs = json.loads(record.value)
        errors = [e.message for e in validator.iter_errors(attrs)]
        assert not errors, (attrs["type"], errors)
        kinds.add(attrs["type"])
    return kinds


async def test_never_admitted_agent_is_ignored_and_audited(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):  # noqa: SIM117 - the inner needs `invite`
        async with RawPeer(kafka_broker, invite.group, "stranger") as stranger:
            await stranger.announce()
            await stranger.send("skill.echo.requests", stranger.request("echo", "let me in"))
            dropped: list[Any] = []

            async def seen() -> bool:
                dropped[:] = [e for e in await _dropped(founder) if e.payload["reason"] == "not-admitted"]
                return bool(dropped)

            await _eventually_async(seen, 20)
            assert dropped[0].payload["envelope"]["agentid"] == stranger.agent_id
            assert founder.group.node.roster.get(stranger.agent_id) is None  # its card is held back
            assert (stranger.agent_id, "stranger") in founder.group.node.membership.held()


async def test_wrong_secret_is_refused_and_audited(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):
        forged = Invite(invite.group, b"x" * 32, invite.founder, invite.bootstrap)
        async with member(kafka_broker, invite.group, "guesser", tmp_path / "w", forged) as guesser:
            with pytest.raises(UserError, match="wrong-secret") as caught:
                await guesser.group.node.onboarding.join(20)
            assert "fresh invite" in (caught.value.fix or "")
            events = await _membership_events(founder)
            assert [(e.name, e.status) for e in events] == [("wrong-secret", "error")]
            assert founder.group.node.membership.status(guesser.group.node.agent_id) != "admitted"


async def test_replayed_join_exchange_is_refused(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):
        async with member(kafka_broker, invite.group, "first", tmp_path / "n", invite) as newbie:
            await newbie.group.node.onboarding.join(20)
        control = await read_all(kafka_broker.bootstrap, f"group.{invite.group}.control")
        recorded = [r for r in control if CONTROL_PROOF.encode() in r.value or CONTROL_JOIN.encode() in r.value]
        assert len(recorded) >= 2
        async with RawPeer(kafka_broker, invite.group) as attacker:  # re-sends the recorded bytes as they were
            for record in recorded:
                await attacker.send("control", record.value, key=record.key.decode())

        async def refused() -> bool:
            return len([e for e in await _membership_events(founder) if e.name == "join-replayed"]) >= 2

        await _eventually_async(refused, 20)
        admitted = [e for e in await _membership_events(founder) if e.name == "admitted"]
        assert len(admitted) == 1  # the replay admitted nobody again


async def test_stolen_key_with_another_name_is_refused(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):
        async with member(kafka_broker, invite.group, "victim", tmp_path / "v", invite) as victim:
            await victim.group.node.onboarding.join(20)
            vnode = victim.group.node
            async with RawPeer(kafka_broker, invite.group, "mallory") as thief:
                # The victim's public key under another name, signed with the thief's own key.
                data = {"agentid": vnode.agent_id, "name": "mallory", "publickey": vnode.identity.public_b64,
                        "boxkey": "", "joinid": "j1"}  # fmt: skip
                forged = thief.envelope(CONTROL_JOIN, data, correlationid="j1")
                forged["agentid"] = vnode.agent_id
                await thief.send("control", forged, key=vnode.agent_id)

                async def dropped() -> bool:
                    return any(e.payload["reason"] == "bad-signature" for e in await _dropped(founder))

                await _eventually_async(dropped, 20)
        # The real key holder asking again under a new name is refused too (a key is bound to one name).
        overrides_name = "victim-2"
        async with member(kafka_broker, invite.group, overrides_name, tmp_path / "v", invite) as again:
            assert again.group.node.agent_id == vnode.agent_id
            # The data folder is the same, so it is the same identity; the membership remembers "victim".
            assert again.group.node.membership.status(vnode.agent_id) == "admitted"
            again.group.node.membership.admitted.pop(vnode.agent_id)  # make it ask as if it were new
            with pytest.raises(UserError, match="name-mismatch"):
                await again.group.node.onboarding.join(20)
        names = [e.name for e in await _membership_events(founder)]
        assert "name-mismatch" in names


async def test_revoked_member_is_dropped_everywhere(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):  # noqa: SIM117 - the inner needs `invite`
        async with member(kafka_broker, invite.group, "leaver", tmp_path / "n", invite) as newbie:
            node = newbie.group.node
            await node.onboarding.join(20)
            fnode = founder.group.node
            await eventually(lambda: fnode.roster.get(node.agent_id) is not None)
            await fnode.onboarding.revoke(node.agent_id, "left the team")
            await eventually(lambda: fnode.membership.status(node.agent_id) == "revoked")
            await eventually(lambda: fnode.roster.get(node.agent_id) is None)
            await eventually(lambda: node.membership.status(node.agent_id) == "revoked")  # it learns too
            handle = await newbie.group.dispatch("still there?", skill="echo", deadline=3)
            result = await handle.result()
            assert result.status != "ok"

            async def dropped() -> bool:
                return any(e.payload["reason"] == "revoked" for e in await _dropped(founder))

            await _eventually_async(dropped, 20)
            with pytest.raises(UserError, match="revoked"):  # and cannot come back with the same key
                node.membership.admitted.pop(node.agent_id, None)
                await node.onboarding.join(20)


async def test_manual_approval_asks_a_person(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path, join_approval="manual") as (founder, invite):
        asked: list[dict[str, Any]] = []
        answers = iter([False, True])

        async def approver(request: dict[str, Any]) -> bool:
            asked.append(request)
            return next(answers)

        founder.group.node.onboarding.approver = approver
        async with member(kafka_broker, invite.group, "hopeful", tmp_path / "n", invite) as newbie:
            with pytest.raises(UserError, match="declined"):
                await newbie.group.node.onboarding.join(20)
            admission = await newbie.group.node.onboarding.join(20)
            assert admission.name == "hopeful"
        assert [a["name"] for a in asked] == ["hopeful", "hopeful"]


async def _eventually_async(check: Any, timeout: float) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
