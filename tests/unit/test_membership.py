"""Invite codes, join proofs and the membership rules, without a broker: each rule that can refuse, refusing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import ConfigError, UserError
from core.group.envelope import make
from core.group.identity import Identity, PublicKey
from core.group.invite import Invite, forget_invite, load_invite, store_invite
from core.group.membership import (
    CONTROL_ADMIT,
    CONTROL_REVOKE,
    SESSION_FORGET,
    Admission,
    Membership,
    proof_fields,
)
from core.timeline.ids import TraceContext, new_id

GROUP = "team"


def _admit(signer: Identity, invite: Invite, who: Identity, name: str, **extra: Any) -> Any:
    fields = {
        "agentid": who.agent_id,
        "name": name,
        "publickey": who.public_b64,
        "boxkey": "",
        "challenge": "c-" + new_id(),
        "joinid": new_id(),
    }
    data = {**fields, "proof": invite.proof(fields), "role": "member", **extra}
    if "proof" in extra:
        data["proof"] = extra["proof"]
    return make(signer, GROUP, CONTROL_ADMIT, data, correlationid=new_id(), trace=TraceContext.new_root())


def _revoke(signer: Identity, target: str) -> Any:
    return make(
        signer,
        GROUP,
        CONTROL_REVOKE,
        {"agentid": target, "reason": "r"},
        correlationid="c",
        trace=TraceContext.new_root(),
    )


def _founded() -> tuple[Membership, Invite, Identity]:
    founder = Identity.generate()
    invite = Invite.create(GROUP, founder.agent_id, ["localhost:9092"])
    membership = Membership(invite, "me")
    assert membership.apply(_admit(founder, invite, founder, "founder")) is None
    return membership, invite, founder


def test_invite_code_round_trip_and_secret_never_in_repr() -> None:
    invite = Invite.create(GROUP, "a" * 24, ["b1:9092", "b2:9092"], "SASL_SSL")
    again = Invite.parse(invite.code())
    assert again == invite
    assert invite.secret.hex() not in repr(invite) and "secret" not in repr(invite)
    with pytest.raises(UserError, match="not a Shoal invite"):
        Invite.parse("hello")
    with pytest.raises(UserError, match="damaged"):
        Invite.parse(invite.code()[:-6])


def test_proof_binds_every_field() -> None:
    invite = Invite.create(GROUP, "a" * 24, [])
    fields = {"agentid": "x", "name": "n", "publickey": "k", "boxkey": "b", "challenge": "c", "joinid": "j"}
    proof = invite.proof(fields)
    assert invite.check(fields, proof)
    for name in fields:
        assert not invite.check({**fields, name: fields[name] + "!"}, proof), name
    assert not Invite(GROUP, b"y" * 32, "a" * 24).check(fields, proof)  # another secret
    assert not invite.check(fields, None)


def test_invite_is_kept_per_data_folder_in_the_keyring() -> None:
    invite = Invite.create(GROUP, "a" * 24, [])
    store_invite(invite, "/data/one")
    assert load_invite(GROUP, "/data/one") == invite
    assert load_invite(GROUP, "/data/two") is None
    assert forget_invite(GROUP, "/data/one") and load_invite(GROUP, "/data/one") is None


def test_damaged_stored_invite_is_a_config_error() -> None:
    import keyring

    from core.secrets import SERVICE

    keyring.set_password(SERVICE, "group-secret:broken", "shoal-invite-1:@@@")
    with pytest.raises(ConfigError, match="damaged"):
        load_invite("broken")


def test_founder_admits_itself_and_then_others() -> None:
    membership, invite, founder = _founded()
    assert membership.status(founder.agent_id) == "admitted" and membership.is_admin(founder.agent_id)
    newbie = Identity.generate()
    assert membership.apply(_admit(founder, invite, newbie, "newbie")) is None
    assert membership.status(newbie.agent_id) == "admitted" and not membership.is_admin(newbie.agent_id)


def test_admission_refusals() -> None:
    membership, invite, founder = _founded()
    stranger, newbie = Identity.generate(), Identity.generate()
    refused = membership.apply(_admit(stranger, invite, newbie, "x"))
    assert refused is not None and refused.reason == "not-admitted"  # signed by a non-member
    refused = membership.apply(_admit(founder, invite, newbie, "x", proof="forged"))
    assert refused is not None and refused.reason == "wrong-secret"
    other_secret = Invite(GROUP, b"z" * 32, founder.agent_id)
    refused = membership.apply(_admit(founder, other_secret, newbie, "x"))
    assert refused is not None and refused.reason == "wrong-secret"
    assert membership.apply(_admit(founder, invite, newbie, "newbie")) is None
    refused = membership.apply(_admit(founder, invite, newbie, "another-name"))
    assert refused is not None and refused.reason == "name-mismatch"
    impostor = _admit(founder, invite, newbie, "newbie")
    impostor.attrs["data"]["agentid"] = stranger.agent_id  # id of one agent, key of another
    refused = membership.apply(impostor)
    assert refused is not None and refused.reason == "bad-admission"
    fake_genesis = _admit(stranger, invite, stranger, "founder")  # not the founder named in the invite
    refused = membership.apply(fake_genesis)
    assert refused is not None and refused.reason == "not-admitted"


def test_revocation_is_final_and_founder_only() -> None:
    membership, invite, founder = _founded()
    newbie, other = Identity.generate(), Identity.generate()
    for who, name in ((newbie, "newbie"), (other, "other")):
        assert membership.apply(_admit(founder, invite, who, name)) is None

    def revoke(signer: Identity, target: str) -> Any:
        return membership.apply(_revoke(signer, target))

    refused = revoke(other, newbie.agent_id)
    assert refused is not None and refused.reason == "not-admin"
    refused = revoke(founder, founder.agent_id)
    assert refused is not None and refused.reason == "not-admin"
    assert revoke(founder, newbie.agent_id) is None
    assert membership.status(newbie.agent_id) == "revoked" and not membership.allows(newbie.agent_id)
    refused = membership.apply(_admit(founder, invite, newbie, "newbie"))  # a replayed or new admission
    assert refused is not None and refused.reason == "revoked"


def test_session_admissions_expire_and_cannot_admit() -> None:
    membership, invite, founder = _founded()
    session = Identity.generate()
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert membership.apply(_admit(founder, invite, session, "cli", role="ephemeral", expiresat=soon)) is None
    assert membership.status(session.agent_id) == "admitted"
    refused = membership.apply(_admit(session, invite, Identity.generate(), "friend"))
    assert refused is not None and refused.reason == "not-admitted"
    forever = _admit(founder, invite, Identity.generate(), "cli2", role="ephemeral")
    refused = membership.apply(forever)
    assert refused is not None and refused.reason == "bad-admission"
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    membership.admitted[session.agent_id] = replace(membership.admitted[session.agent_id], expires_at=past)
    assert membership.status(session.agent_id) == "expired" and not membership.allows(session.agent_id)


def test_open_group_allows_everyone_and_ignores_control() -> None:
    membership = Membership(None, "me")
    assert membership.allows("anyone") and membership.status("anyone") == "open"
    founder = Identity.generate()
    invite = Invite.create(GROUP, founder.agent_id, [])
    assert membership.apply(_admit(founder, invite, founder, "f")) is None and not membership.admitted


def test_held_cards_are_released_on_admission() -> None:
    membership, invite, founder = _founded()
    newbie = Identity.generate()
    card = make(
        newbie,
        GROUP,
        "shoal.roster.announce",
        {"agentid": newbie.agent_id, "name": "newbie", "publickey": newbie.public_b64},
        correlationid=newbie.agent_id,
        trace=TraceContext.new_root(),
    )
    released: list[Any] = []
    membership.on_admitted = lambda envelope, replayed: released.append((envelope.id, replayed))
    assert membership.hold_card(card, True)
    assert membership.held() == [(newbie.agent_id, "newbie")] and membership.held_key(newbie.agent_id) is not None
    assert membership.apply(_admit(founder, invite, newbie, "newbie")) is None
    assert released == [(card.id, True)] and membership.held() == []
    assert not membership.hold_card(card, False)  # a member's card goes straight to the roster


def test_expired_sessions_are_forgotten_and_their_last_cards_are_not_join_requests() -> None:
    membership, invite, founder = _founded()
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    old = [Identity.generate() for _ in range(30)]
    expired = (datetime.now(UTC) - SESSION_FORGET - timedelta(minutes=1)).strftime(stamp)
    for session in old:  # sessions admitted earlier in the control topic, long expired
        envelope_id = new_id()
        membership.admitted[session.agent_id] = Admission(session.agent_id, "cli", PublicKey(session.public_b64), "",
                                                          "ephemeral", founder.agent_id, expired, expired,
                                                          envelope_id)  # fmt: skip
        assert membership.first_sight(envelope_id)
    recent = Identity.generate()
    live = (datetime.now(UTC) + timedelta(hours=1)).strftime(stamp)
    assert membership.apply(_admit(founder, invite, recent, "cli", role="ephemeral", expiresat=live)) is None
    assert [a for a in membership.admitted if a in {s.agent_id for s in old}] == [], "forgotten on the next session"
    assert membership.status(recent.agent_id) == "admitted" and len(membership.admitted) == 2  # + founder
    assert membership.status(old[0].agent_id) == "unknown" and not membership.allows(old[0].agent_id)
    assert len(membership._applied) == 2, "their record ids go too (left: the founder's and the new session's)"

    def roster_record(who: Identity, kind: str, **data: Any) -> Any:
        return make(who, GROUP, kind, {"agentid": who.agent_id, **data}, correlationid=who.agent_id,
                    trace=TraceContext.new_root())  # fmt: skip

    assert membership.hold_card(roster_record(old[1], "shoal.roster.leave"), True), "dropped"
    last_card = roster_record(old[2], "shoal.roster.announce", name="cli", capabilities=["ephemeral"])
    assert membership.hold_card(last_card, True) and membership.held() == [], "an old session is not asking to join"
    stranger = Identity.generate()
    asking = roster_record(stranger, "shoal.roster.announce", name="newbie", publickey=stranger.public_b64)
    assert membership.hold_card(asking, True) and membership.held() == [(stranger.agent_id, "newbie")]


async def test_a_wait_for_an_admission_that_never_comes_leaves_nothing_behind() -> None:
    membership, _invite, _founder = _founded()
    for n in range(20):
        assert not await membership.wait_admitted(f"stranger{n}", 0.001)
    assert membership._waiters == {}


def test_proof_fields_pick_only_the_binding() -> None:
    assert set(proof_fields({"agentid": "a", "extra": 1})) == {
        "agentid",
        "name",
        "publickey",
        "boxkey",
        "challenge",
        "joinid",
    }


def test_an_admission_is_never_rewritten_and_the_founder_only_admits_itself() -> None:
    membership, invite, founder = _founded()
    member, other = Identity.generate(), Identity.generate()
    assert membership.apply(_admit(founder, invite, member, "member")) is None
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    again = _admit(member, invite, member, "member", role="ephemeral", expiresat=soon)
    assert membership.apply(again) is None  # a repeat changes nothing ...
    assert membership.admitted[member.agent_id].role == "member"  # ... not the role, not the key
    refused = membership.apply(_admit(member, invite, founder, "founder", role="ephemeral"))
    assert refused is not None and refused.reason == "bad-admission"
    assert membership.is_admin(founder.agent_id)
    refused = membership.apply(_admit(founder, invite, other, "member"))  # one name, one key
    assert refused is not None and refused.reason == "name-taken"
    assert membership.pinned_name(member.agent_id) == "member"


def test_a_control_record_counts_once() -> None:
    membership, invite, founder = _founded()
    member = Identity.generate()
    admit = _admit(founder, invite, member, "member")
    assert membership.apply(admit) is None
    revoke = _revoke(founder, member.agent_id)
    assert membership.apply(revoke) is None
    assert membership.apply(admit) is None and membership.status(member.agent_id) == "revoked"  # replayed: no effect


def test_revoking_a_member_revokes_its_sessions_and_their_zones() -> None:
    from core.group.membership import CONTROL_ZONE
    from core.group.zones import Zones

    membership, invite, founder = _founded()
    member, session = Identity.generate(), Identity.generate()
    assert membership.apply(_admit(founder, invite, member, "member")) is None
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert membership.apply(_admit(member, invite, session, "cli", role="ephemeral", expiresat=soon)) is None
    zones = Zones(membership)
    zone = make(
        founder,
        GROUP,
        CONTROL_ZONE,
        {"zone": "fin", "members": [member.agent_id]},
        correlationid="z",
        trace=TraceContext.new_root(),
    )
    assert zones.apply(zone) is None and zones.allows(session.agent_id, "fin")
    revoke = _revoke(founder, member.agent_id)
    assert membership.apply(revoke) is None
    assert membership.status(session.agent_id) == "revoked" and not zones.allows(session.agent_id, "fin")


def test_an_older_zone_definition_never_replaces_a_newer_one() -> None:
    from core.group.membership import CONTROL_ZONE
    from core.group.zones import Zones

    membership, _invite, founder = _founded()
    zones = Zones(membership)

    def define(members: list[str], when: str) -> Any:
        envelope = make(
            founder,
            GROUP,
            CONTROL_ZONE,
            {"zone": "fin", "members": members},
            correlationid=new_id(),
            trace=TraceContext.new_root(),
        )
        envelope.attrs["time"] = when  # (the signature is not checked here: apply() gets verified envelopes)
        return zones.apply(envelope)

    assert define(["a", "b"], "2026-11-21T10:00:00Z") is None
    assert define(["a"], "2026-11-21T11:00:00Z") is None
    refused = define(["a", "b", "c"], "2026-11-21T10:30:00Z")
    assert refused is not None and refused.reason == "stale-zone"
    assert zones.get("fin").members == ("a",)
