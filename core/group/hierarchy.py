"""The group's parent/child hierarchy and the orchestrator role, worked out from the roster alone.

Nothing is stored or synchronised: every card may name a `parent` (an agent id, or the name the agent was
configured with while its parent was not in the roster yet) and a `role`, and every agent derives the same
tree from the same cards with these pure functions. A member that names no parent, in a group with exactly
one live orchestrator, has that orchestrator as its parent (the default parent); without an orchestrator
nothing changes and the group works peer to peer. Short-lived command-line members (`ephemeral`) are never
part of the tree. A member whose parent chain loops, or that sits deeper than the evaluating agent's
`group.max_hierarchy_depth`, is not a valid child: `problem()` says why. See docs/hierarchy.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import UserError

if TYPE_CHECKING:
    from core.group.roster import Member
    from core.settings import GroupSettings

ROLE_MEMBER = "member"
ROLE_ORCHESTRATOR = "orchestrator"
ROLES = (ROLE_MEMBER, ROLE_ORCHESTRATOR)
ID_PREFIX = 6  # shortest agent id prefix a parent may be named by (as `Roster.find`)


class _HasMembers(Protocol):
    def members(self) -> list[Member]: ...


Source = _HasMembers | Iterable["Member"]


def _members(source: Source) -> list[Member]:
    """Members of a roster (or a list of them) that can be in the tree: not the short-lived CLI ones."""
    found = source.members() if hasattr(source, "members") else list(source)
    return [m for m in found if not is_ephemeral(m)]


def is_ephemeral(member: Member) -> bool:
    return "ephemeral" in member.capabilities


def is_orchestrator(member: Member) -> bool:
    return member.role == ROLE_ORCHESTRATOR and not is_ephemeral(member)


def orchestrators(source: Source) -> list[Member]:
    """The live orchestrators, sorted by agent id (the membership flow asks the first one first)."""
    return sorted((m for m in _members(source) if is_orchestrator(m)), key=lambda m: m.agentid)


def default_parent(source: Source) -> Member | None:
    """The group's only live orchestrator: the parent of every member that names none (None if 0 or 2+)."""
    found = orchestrators(source)
    return found[0] if len(found) == 1 else None


def resolve(ref: str, source: Source) -> Member | None:
    """The member a parent reference names: an agent id, else a name (the lowest agent id among namesakes,
    so every agent picks the same one), else an unambiguous id prefix of 6+ characters."""
    ref = ref.strip()
    if not ref:
        return None
    members = _members(source)
    for member in members:
        if member.agentid == ref:
            return member
    named = sorted((m for m in members if m.name == ref), key=lambda m: m.agentid)
    if named:
        return named[0]
    prefixed = [m for m in members if len(ref) >= ID_PREFIX and m.agentid.startswith(ref)]
    return prefixed[0] if len(prefixed) == 1 else None


def parent_of(member: Member, source: Source) -> Member | None:
    """The effective parent: the one the card names (None while it is not in the roster), else the default
    parent unless this member is an orchestrator itself."""
    members = _members(source)
    if member.parent:
        return resolve(member.parent, members)
    if is_orchestrator(member) or is_ephemeral(member):
        return None
    return default_parent(members)


@dataclass(frozen=True)
class Position:
    """Where one member sits: its effective parent, its ancestors (nearest first), its depth (0 = a root)."""

    agentid: str
    name: str
    parent: str = ""  # effective parent's agent id ("" for none)
    declared: str = ""  # the parent its card names, as written ("" for none)
    chain: tuple[str, ...] = ()  # ancestors' agent ids, nearest first; with a loop, up to where it closes
    loop: tuple[str, ...] = ()  # the names around the loop, when the chain loops
    by_default: bool = False  # the parent is the group's only orchestrator, not named by the card

    @property
    def depth(self) -> int:
        return len(self.chain)

    @property
    def cycle(self) -> bool:
        return bool(self.loop)

    @property
    def unresolved(self) -> bool:
        """The card names a parent that is not in the roster (gone, or not yet heard from)."""
        return bool(self.declared) and not self.parent

    def problem(self, max_depth: int) -> str:
        """Why this member is not a valid child ("" when it is, or when it has no parent at all)."""
        if self.cycle:
            return f"{self.name} is in a parent cycle ({' → '.join(self.loop)})"
        if self.depth > max_depth:
            return (
                f"{self.name} is at depth {self.depth}, deeper than the limit {max_depth} (group.max_hierarchy_depth)"
            )
        return ""


def position(agentid: str, source: Source) -> Position:
    """The position of `agentid` among `source` (a member not in it is a root with no parent)."""
    members = _members(source)
    by_id = {m.agentid: m for m in members}
    member = by_id.get(agentid)
    if member is None:
        return Position(agentid, agentid[:8])
    first = parent_of(member, members)
    chain: list[str] = []
    seen = {agentid}
    current = first
    while current is not None:
        chain.append(current.agentid)
        if current.agentid in seen:  # the chain closed on itself: name the loop
            walked = [agentid, *chain]
            names = [by_id[i].name for i in walked[walked.index(current.agentid) :]]
            return Position(agentid, member.name, first.agentid if first else "", member.parent, tuple(chain),
                            tuple(names), by_default=not member.parent)  # fmt: skip
        seen.add(current.agentid)
        current = parent_of(current, members)
    return Position(
        agentid,
        member.name,
        first.agentid if first else "",
        member.parent,
        tuple(chain),
        by_default=first is not None and not member.parent,
    )


def problem(agentid: str, source: Source, max_depth: int) -> str:
    """Why `agentid` is not a valid child under a limit of `max_depth` ("" when it is)."""
    return position(agentid, source).problem(max_depth)


def children(parent_ids: str | Iterable[str], source: Source) -> list[Member]:
    """Live members whose effective parent is one of `parent_ids`, by name. Several ids: a command-line
    stand-in asks for the children of the long-running agent of its name as well as its own."""
    ids = {parent_ids} if isinstance(parent_ids, str) else set(parent_ids)
    members = _members(source)
    out = [m for m in members if m.agentid not in ids and (p := parent_of(m, members)) and p.agentid in ids]
    return sorted(out, key=lambda m: (m.name.lower(), m.agentid))


def tree(source: Source) -> list[tuple[Member, int]]:
    """Every member of `source` (the ephemeral ones too, as roots) in tree order with its depth: roots by
    name, each followed by its children. Members caught in a loop come last, at depth 0."""
    everyone = source.members() if hasattr(source, "members") else list(source)
    members = _members(everyone)
    kids: dict[str, list[Member]] = {}
    roots: list[Member] = []
    for member in everyone:
        parent = None if is_ephemeral(member) else parent_of(member, members)
        if parent is None:
            roots.append(member)
        else:
            kids.setdefault(parent.agentid, []).append(member)
    out: list[tuple[Member, int]] = []
    placed: set[str] = set()

    def walk(member: Member, depth: int) -> None:
        if member.agentid in placed:
            return
        placed.add(member.agentid)
        out.append((member, depth))
        for child in sorted(kids.get(member.agentid, []), key=_order):
            walk(child, depth + 1)

    for root in sorted(roots, key=_order):
        walk(root, 0)
    out += [(m, 0) for m in sorted(everyone, key=_order) if m.agentid not in placed]
    return out


def placement(member: Member, source: Source, max_depth: int) -> dict[str, Any]:
    """What a roster view shows of a member's place: parent (id and name, whether by default), its
    children's names, its depth and why it is not a valid child (if so)."""
    members = _members(source)
    where = position(member.agentid, members)
    parent = next((m for m in members if m.agentid == where.parent), None)
    return {
        "effectiveparent": where.parent,
        "parentname": parent.name if parent else (where.declared if where.unresolved else ""),
        "parentbydefault": where.by_default,
        "children": [m.name for m in children(member.agentid, members)],
        "depth": where.depth,
        "hierarchyproblem": where.problem(max_depth),
        "orchestrator": is_orchestrator(member),
    }


def pick_child(parent_ids: str | Iterable[str], skill: str, source: Source, max_depth: int) -> Member:
    """The least busy valid child offering `skill` (any child when `skill` is empty); a UserError saying why
    when there is none (no children, none with the skill, or each one too deep or in a loop)."""
    members = _members(source)
    kids = children(parent_ids, members)
    if not kids:
        raise UserError(
            "This agent has no children in the group's roster.",
            "A child names this agent in its group.parent (or this agent is the group's only orchestrator); "
            "`shoal group members` shows who is whose child.",
        )
    able = [m for m in kids if not skill or skill in m.skill_names]
    if not able:
        names = ", ".join(m.name for m in kids)
        raise UserError(
            f"None of this agent's children ({names}) offers the skill {skill!r}.",
            "Send it to the skill's queue instead (without --children), or give a child that skill.",
        )
    reasons = {m.agentid: problem(m.agentid, members, max_depth) for m in able}
    valid = [m for m in able if not reasons[m.agentid]]
    if not valid:
        why = "; ".join(reasons[m.agentid] for m in able)
        what = f"offering {skill!r} " if skill else ""
        raise UserError(
            f"No child {what}can take the task: {why}.",
            "Raise group.max_hierarchy_depth, or fix the group.parent settings that make the loop.",
        )
    return min(valid, key=lambda m: (m.status != "idle", m.active_tasks, m.name.lower(), m.agentid))


def card_fields(settings: GroupSettings, source: Source, *, ephemeral: bool) -> dict[str, Any]:
    """The hierarchy's part of this agent's card: `role`, and `parent` (the parent's agent id once the roster
    knows it, else the configured text). A short-lived CLI member announces neither: it stands in for the
    agent, it is not a second orchestrator or child."""
    if ephemeral:
        return {}
    fields: dict[str, Any] = {"role": settings.role}
    ref = settings.parent.strip()
    if ref:
        found = resolve(ref, source)
        fields["parent"] = found.agentid if found else ref
    return fields


def own_ids(agentid: str, name: str, source: Source, *, ephemeral: bool) -> set[str]:
    """Whose children "this agent's children" are: its own; for a CLI stand-in also those of the long-running
    member(s) of the same name (the agent the person configured)."""
    if not ephemeral:
        return {agentid}
    return {agentid} | {m.agentid for m in _members(source) if m.name == name}


def _order(member: Member) -> tuple[str, str]:
    return member.name.lower(), member.agentid
