"""Command-line sessions in a closed group (core/group/session_cache.py): the first command that sends is
admitted for an hour and kept in the keyring; the commands after it reuse it (one admission, not one each),
until it is about to expire or the group removes it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import UserError
from core.group import session_cache
from core.group.identity import Identity
from core.group.zonecrypt import BoxKey
from core.secrets import SERVICE
from core.service import AgentCore
from core.timeline.ids import iso_utc
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import eventually, group_overrides
from tests.group.test_onboarding import founded


@contextlib.asynccontextmanager
async def command(broker: TansuBroker, group: str, data: Path, needed: float = 0.0) -> AsyncIterator[AgentCore]:
    """What `shoal dispatch` on the founder's machine does before it sends: a session, admitted or reused."""
    overrides = group_overrides(broker, group, "founder", data)
    overrides["group"]["enabled"] = False
    async with scripted_core(["-"], overrides=overrides) as (core, _):
        runtime = await core.join_group(ephemeral=True, reuse_session=True, session_needed=needed)
        await runtime.node.wait_online(15)
        await runtime.node.roster_caught_up(15)
        await runtime.admit_session(15)
        yield core


async def test_a_kept_session_is_reused_until_the_group_removes_it(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (founder, invite):
        fnode, data = founder.group.node, tmp_path / "founder"

        def sessions() -> list[str]:
            return [a for a, adm in fnode.membership.admitted.items() if adm.role == "ephemeral"]

        async with command(kafka_broker, invite.group, data) as first:
            kept = first.group.node.agent_id
            assert kept != fnode.agent_id and first.group.node.membership.status(kept) == "admitted"
            box = first.group.node.box_public
        async with command(kafka_broker, invite.group, data) as second:
            assert second.group.node.agent_id == kept, "the same session"
            assert second.group.node.box_public == box, "with the same zone key (its admission names it)"
        await eventually(lambda: sessions() == [kept])

        async with command(kafka_broker, invite.group, data) as busy:  # holds the kept session while it runs
            assert busy.group.node.agent_id == kept
            async with command(kafka_broker, invite.group, data) as meanwhile:
                assert meanwhile.group.node.agent_id not in (kept, fnode.agent_id), "a session of its own"
        async with command(kafka_broker, invite.group, data) as after:
            assert after.group.node.agent_id == kept, "the one started meanwhile did not replace the kept one"
        async with command(kafka_broker, invite.group, data, needed=3000) as long_task:
            assert long_task.group.node.agent_id != kept, "a task longer than the kept session has left"
            kept = long_task.group.node.agent_id  # a new session, kept from now on (it has the most time left)
        async with command(kafka_broker, invite.group, data) as again:
            assert again.group.node.agent_id == kept

        await eventually(lambda: len(sessions()) == 3)  # the one started meanwhile, and the long task's
        await fnode.onboarding.revoke(kept, "a stolen laptop")
        await eventually(lambda: fnode.membership.status(kept) == "revoked")
        with pytest.raises(UserError, match=r"command session .* is revoked"):
            async with command(kafka_broker, invite.group, data):
                pass
        async with command(kafka_broker, invite.group, data) as fresh:
            assert (
                fresh.group.node.agent_id != kept
                and fresh.group.node.membership.status(fresh.group.node.agent_id) == "admitted"
            )


def test_a_session_close_to_its_end_or_unreadable_is_not_reused() -> None:
    import keyring

    identity, box = Identity.generate(), BoxKey.generate()
    now = datetime.now(UTC)
    session_cache.store("team", "/data", identity, box, iso_utc(now + timedelta(minutes=40)))
    kept = session_cache.load("team", "/data", now)
    assert kept is not None and kept.identity.agent_id == identity.agent_id
    assert kept.box_key.public_b64 == box.public_b64
    assert session_cache.load("team", "/other", now) is None, "per data folder"
    assert session_cache.load("team", "/data", now + timedelta(minutes=30)) is None, "under MIN_LEFT to go"
    assert session_cache.load("team", "/data", now, timedelta(minutes=30)) is None, "a 30-minute task: too long"
    account = session_cache._account("team", "/data")
    keyring.set_password(SERVICE, account, "{not json")
    assert session_cache.load("team", "/data", now) is None, "damaged: a new session, never an error"
    session_cache.forget("team", "/data")
    session_cache.forget("team", "/data")  # nothing kept: nothing to do
    assert keyring.get_password(SERVICE, account) is None
