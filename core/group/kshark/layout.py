"""The group's topics (`group.<name>.*`) against docs/protocol.md §5: which exist, which are missing, and
whether their partition counts are what the protocol asks for.

Missing topics only warn (every member creates them on join). A single-partition topic with more partitions
warns: it was auto-created by a client producing to it, and it breaks the ordering of announcements and
addressed messages. A queue, trace or audit topic whose count differs from `group.partitions` is fine (readers
read every partition; another implementation may have made it) and is only noted. Scratch topics of earlier
probes are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.group import topics as tp
from core.group.kshark.report import Failed, Passed

if TYPE_CHECKING:
    from core.settings import GroupSettings

SHOWN = 6  # names listed in a detail line before "…"


def probe_prefix(settings: GroupSettings) -> str:
    return tp.topic(settings.name, "probe.")


def _listed(names: list[str], prefix: str) -> str:
    short = [n.removeprefix(prefix) for n in names[:SHOWN]]
    return ", ".join(short) + (" …" if len(names) > SHOWN else "")


def _rows(settings: GroupSettings, present: dict[str, int]) -> list[dict[str, Any]]:
    """One row per expected or present group topic: name, partitions, expected, status."""
    expected = {s.name: s.partitions for s in tp.group_topics(settings)}
    rows = []
    for name in sorted(set(expected) | set(present)):
        count, want = present.get(name), expected.get(name)
        if want is None:  # another member's skill queue, or a topic of a newer protocol: any count will do
            status = "extra"
        elif count is None:
            status = "missing"
        elif count == want:
            status = "ok"
        else:
            status = "wrong" if want == 1 else "differs"
        rows.append({"name": name, "partitions": count, "expected": want, "status": status})
    return rows


async def group_topics(manager: tp.TopicManager, settings: GroupSettings) -> Passed:
    prefix = tp.topic(settings.name, "")
    scratch = probe_prefix(settings)
    names = [t for t in await manager.existing() if t.startswith(prefix) and not t.startswith(scratch)]
    present = await manager.partitions(sorted(names)) if names else {}
    rows = _rows(settings, present)
    data = {"prefix": prefix, "topics": rows}
    wrong = [r for r in rows if r["status"] == "wrong"]
    missing = [r["name"] for r in rows if r["status"] == "missing"]
    if wrong:
        text = "; ".join(f"{r['name']} has {r['partitions']} partitions" for r in wrong)
        raise Failed(
            f"{text} (expected 1: auto-created?)",
            "Ordering needs one partition: ask an admin to delete and recreate them with 1 partition.",
            "warn",
            data,
        )
    if missing:
        wanted = sum(r["status"] != "extra" for r in rows)
        text = f"none of the {wanted} group topics exists yet ({_listed(missing, prefix)})"
        if len(missing) < wanted:
            text = f"missing: {_listed(missing, prefix)} ({wanted - len(missing)} of {wanted} exist)"
        raise Failed(
            text,
            "Nothing to do: they are created on join.",
            "warn",
            data,
        )
    detail = f"all {sum(r['status'] != 'extra' for r in rows)} group topics exist"
    differs = [f"{r['name'].removeprefix(prefix)} has {r['partitions']}" for r in rows if r["status"] == "differs"]
    if differs:
        detail += f"; {', '.join(differs)} (group.partitions is {settings.partitions}: fine, readers read all)"
    else:
        detail += ", partitions as §5 asks"
    queues = [f"{r['name'].removeprefix(prefix)} ({r['partitions']})" for r in rows if r["status"] == "extra"]
    if queues:
        detail += f"; also {', '.join(queues[:SHOWN])}" + (" …" if len(queues) > SHOWN else "")
    return Passed(detail, data)
