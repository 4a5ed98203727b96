"""The hierarchy's rules as pure functions over roster members (core/group/hierarchy.py): parents by id, name or
default orchestrator, the tree, loops, the depth limit, picking a child; how cards carry and read the fields;
and the `shoal.task.report` envelope against the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.errors import UserError
from core.group import hierarchy as h
from core.group.envelope import ROSTER_ANNOUNCE, TASK_REPORT, make
from core.group.identity import Identity, PublicKey
from core.group.reports import _fallback_share
from core.group.roster import Member, Roster
from core.settings import GroupSettings
from core.timeline.ids import TraceContext

SCHEMA = Path(__file__).resolve().parents[2] / "resources" / "schemas" / "envelope.schema.json"
_KEY = PublicKey(Identity.generate().public_b64)


def member(name: str, agentid: str = "", *, parent: str = "", role: str = "member", **extra: Any) -> Member:
    """A roster member; agent ids default to the name padded to 24 hex-ish characters, so tests read well."""
    return Member(agentid=agentid or f"{name:0<24}"[:24], name=name, key=_KEY, parent=parent, role=role, **extra)


def ids(members: list[Member]) -> list[str]:
    return [m.name for m in members]


# --- parents -------------------------------------------------------------------------------------------------


def test_a_parent_is_named_by_agent_id_name_or_id_prefix_and_namesakes_resolve_to_the_lowest_id() -> None:
    p = member("p", "a" * 24)
    twin = member("p", "b" * 24)
    c = member("c")
    roster = [p, twin, c]
    assert h.resolve("b" * 24, roster) is twin
    assert h.resolve("p", roster) is p, "every agent must pick the same namesake"
    assert h.resolve("bbbbbb", roster) is twin
    assert h.resolve("bbbbb", roster) is None, "prefixes shorter than 6 characters name nobody"
    assert h.resolve("nobody", roster) is None and h.resolve("", roster) is None


def test_ephemeral_members_are_never_parents_children_or_orchestrators() -> None:
    cli = member("p", "0" * 24, role="orchestrator", capabilities=["task", "ephemeral"])
    p = member("p", "f" * 24)
    c = member("c", parent="p")
    roster = [cli, p, c]
    assert h.resolve("p", roster) is p, "the CLI stand-in has the lower id but is not a parent"
    assert h.orchestrators(roster) == []
    assert h.children(p.agentid, roster) == [c]
    assert h.children(cli.agentid, roster) == []


def test_the_only_orchestrator_is_the_default_parent_and_two_make_none() -> None:
    o = member("o", role="orchestrator")
    a, b = member("a"), member("b", parent="a")
    roster = [o, a, b]
    assert h.parent_of(a, roster) is o
    assert h.parent_of(b, roster) is a, "a parent named on the card wins over the default"
    assert h.parent_of(o, roster) is None, "the orchestrator is nobody's child by default"
    where = h.position(b.agentid, roster)
    assert where.chain == (a.agentid, o.agentid) and where.depth == 2 and not where.by_default
    assert h.position(a.agentid, roster).by_default
    assert ids(h.children(o.agentid, roster)) == ["a"]
    second = member("o2", role="orchestrator")
    assert h.parent_of(a, [*roster, second]) is None, "with two orchestrators there is no default: peer to peer"
    assert ids(h.orchestrators([second, *roster])) == ["o", "o2"], "sorted by agent id"


def test_without_an_orchestrator_nothing_changes() -> None:
    roster = [member("a"), member("b"), member("c")]
    assert all(h.position(m.agentid, roster).depth == 0 for m in roster)
    assert [(m.name, d) for m, d in h.tree(roster)] == [("a", 0), ("b", 0), ("c", 0)]
    assert h.default_parent(roster) is None


def test_a_parent_not_in_the_roster_leaves_the_member_a_root_with_the_name_kept() -> None:
    c = member("c", parent="gone")
    where = h.position(c.agentid, [c, member("o", role="orchestrator")])
    assert where.unresolved and where.parent == "" and where.depth == 0, "a named parent is never replaced"
    place = h.placement(c, [c], 4)
    assert place["parentname"] == "gone" and place["effectiveparent"] == ""


# --- loops and the depth limit -----------------------------------------------------------------------------


def test_a_loop_is_detected_and_named_for_members_on_it_and_below_it() -> None:
    a, b = member("a", parent="b"), member("b", parent="a")
    x = member("x", parent="a")
    roster = [a, b, x]
    assert h.position(a.agentid, roster).loop == ("a", "b", "a")
    assert h.problem(a.agentid, roster, 4) == "a is in a parent cycle (a → b → a)"
    assert "parent cycle (a → b → a)" in h.problem(x.agentid, roster, 4), "x hangs from the loop"
    self_loop = member("s", parent="s")
    assert h.problem(self_loop.agentid, [self_loop], 4) == "s is in a parent cycle (s → s)"


def test_a_member_deeper_than_the_limit_is_not_a_valid_child_and_says_why() -> None:
    p, c = member("p"), member("c", parent="p")
    g = member("g", parent="c")
    roster = [p, c, g]
    assert h.problem(c.agentid, roster, 1) == ""
    assert h.problem(g.agentid, roster, 1) == "g is at depth 2, deeper than the limit 1 (group.max_hierarchy_depth)"
    assert h.problem(g.agentid, roster, 2) == ""


def test_the_tree_lists_parents_before_their_children_and_loops_last() -> None:
    o = member("o", role="orchestrator")
    z, a = member("z"), member("a")
    a1 = member("a1", parent="a")
    l1, l2 = member("l1", parent="l2"), member("l2", parent="l1")
    cli = member("cli", capabilities=["ephemeral"])
    order = [(m.name, d) for m, d in h.tree([z, l1, a1, cli, o, a, l2])]
    assert order == [("cli", 0), ("o", 0), ("a", 1), ("a1", 2), ("z", 1), ("l1", 0), ("l2", 0)]


# --- picking a child ---------------------------------------------------------------------------------------------


def test_the_least_busy_valid_child_with_the_skill_is_picked() -> None:
    p = member("p")
    busy = member("busy", parent="p", skills=[{"name": "x"}], status="busy", active_tasks=1)
    idle2 = member("idle2", parent="p", skills=[{"name": "x"}], active_tasks=2)
    idle0 = member("zidle0", parent="p", skills=[{"name": "x"}])
    other = member("other", parent="p", skills=[{"name": "y"}])
    roster = [p, busy, idle2, idle0, other]
    assert h.pick_child(p.agentid, "x", roster, 4) is idle0
    assert h.pick_child(p.agentid, "y", roster, 4) is other
    assert h.pick_child(p.agentid, "", roster, 4) is other, "without a skill any child will do (ties: by name)"


def test_picking_explains_why_no_child_can_take_the_task() -> None:
    p, c = member("p"), member("c", parent="p", skills=[{"name": "x"}])
    g = member("g", parent="c", skills=[{"name": "z"}])
    roster = [p, c, g]
    with pytest.raises(UserError, match="has no children"):
        h.pick_child(g.agentid, "x", roster, 4)
    with pytest.raises(UserError, match=r"None of this agent's children \(c\) offers the skill 'q'"):
        h.pick_child(p.agentid, "q", roster, 4)
    with pytest.raises(UserError) as refused:
        h.pick_child(c.agentid, "z", roster, 1)
    assert "g is at depth 2, deeper than the limit 1" in refused.value.message


def test_a_cli_stand_in_speaks_for_the_children_of_the_agent_of_its_name() -> None:
    p, cli = member("p"), member("p", "e" * 24, capabilities=["ephemeral"])
    c = member("c", parent="p")
    roster = [p, cli, c]
    assert h.own_ids(cli.agentid, "p", roster, ephemeral=True) == {cli.agentid, p.agentid}
    assert h.own_ids(p.agentid, "p", roster, ephemeral=False) == {p.agentid}
    assert h.pick_child(h.own_ids(cli.agentid, "p", roster, ephemeral=True), "", roster, 4) is c


# --- the card -------------------------------------------------------------------------------------------------


def test_the_card_carries_the_parents_id_once_known_else_the_configured_text() -> None:
    p = member("p")
    settings = GroupSettings(parent="p", role="orchestrator")
    assert h.card_fields(settings, [], ephemeral=False) == {"role": "orchestrator", "parent": "p"}
    assert h.card_fields(settings, [p], ephemeral=False) == {"role": "orchestrator", "parent": p.agentid}
    assert h.card_fields(GroupSettings(), [p], ephemeral=False) == {"role": "member"}
    assert h.card_fields(settings, [p], ephemeral=True) == {}, "a CLI stand-in is no second orchestrator"


def test_the_roster_reads_parent_and_role_and_treats_unknown_roles_as_members() -> None:
    identity = Identity.generate()
    roster = Roster()
    card = {"agentid": identity.agent_id, "name": "o", "publickey": identity.public_b64, "heartbeatms": 5000}
    for role, expected in (("orchestrator", "orchestrator"), ("emperor", "member")):
        envelope = make(identity, "g", ROSTER_ANNOUNCE, {**card, "role": role, "parent": "p"},
                        correlationid=identity.agent_id, trace=TraceContext.new_root())  # fmt: skip
        change = roster.apply(envelope)
        assert change is not None
        got = change[1]
        assert (got.role, got.parent) == (expected, "p")
        assert got.card()["role"] == expected and got.card()["parent"] == "p"


# --- reports -------------------------------------------------------------------------------------------------


def test_without_a_policy_check_no_summary_goes_for_labels_above_internal() -> None:
    p = member("p")
    request: Any = None
    assert _fallback_share(p, "text", ["", ""], request) == ""
    assert _fallback_share(p, "text", ["public", "internal"], request) == "internal"
    assert _fallback_share(p, "text", ["confidential", "public"], request) is None
    assert _fallback_share(p, "text", ["secret", "bogus"], request) is None


def test_a_report_envelope_and_a_card_with_hierarchy_fields_validate_against_the_schema() -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    child, parent = Identity.generate(), Identity.generate()
    data = {
        "taskid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
        "skill": "x",
        "status": "ok",
        "requester": {"agentid": parent.agent_id, "name": "p"},
        "elapsedms": 12,
        "summary": "done",
        "label": "internal",
        "agent": {"agentid": child.agent_id, "name": "c"},
    }
    report = make(child, "g", TASK_REPORT, data, correlationid=data["taskid"], trace=TraceContext.new_root(),
                  recipient=parent.agent_id)  # fmt: skip
    assert list(validator.iter_errors(dict(report.attrs))) == []
    for broken in ({**data, "summary": "s" * 301}, {k: v for k, v in data.items() if k != "status"}):
        bad = make(child, "g", TASK_REPORT, broken, correlationid="t", trace=TraceContext.new_root(),
                   recipient=parent.agent_id)  # fmt: skip
        assert list(validator.iter_errors(dict(bad.attrs))), broken
    unaddressed = make(child, "g", TASK_REPORT, data, correlationid="t", trace=TraceContext.new_root())
    assert list(validator.iter_errors(dict(unaddressed.attrs))), "a report without a recipient is invalid"
