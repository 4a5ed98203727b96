"""Sensitivity labels: public < internal < confidential < secret.

Every message, memory item, document and envelope carries one (set by the person, by a `[[classify]]` rule, or
`policy.default_label` when neither said). Labels are ordered so that "what may this target see" is one
comparison: a rule's `max_label` is the highest label it lets through, and the label of anything built from
several pieces (a conversation, a context with recalled memories) is the highest of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from core.errors import UserError


class Label(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __lt__(self, other: str) -> bool:
        return self.rank < parse_label(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= parse_label(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > parse_label(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= parse_label(other).rank


_ORDER = (Label.PUBLIC, Label.INTERNAL, Label.CONFIDENTIAL, Label.SECRET)
NAMES = tuple(label.value for label in _ORDER)


def parse_label(value: str | Label) -> Label:
    """A label from its name (any case); a clear error naming the labels that exist otherwise."""
    if isinstance(value, Label):
        return value
    try:
        return Label(str(value).strip().lower())
    except ValueError:
        raise UserError(f"Unknown label {value!r}.", f"Use one of: {', '.join(NAMES)}.") from None


def lenient_label(value: object) -> Label | None:
    """A label read from storage or from a peer's payload: None for anything missing or unknown, never an error
    (unknown means unlabelled, so the default and the classifier decide)."""
    if isinstance(value, str) and value.strip().lower() in NAMES:
        return Label(value.strip().lower())
    return None


def highest(labels: Iterable[Label | str | None], default: Label) -> Label:
    """The highest of `labels`, reading None as `default`; `default` when there are none."""
    found = [default if value is None else parse_label(value) for value in labels]
    return max(found, key=lambda label: label.rank) if found else default
