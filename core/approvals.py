"""Approvals a person answers later, from wherever they are looking (the desktop's tools pane, a dialog).

The agent awaits `ApprovalBroker.ask`; front ends list `pending`, are told of changes through listeners,
and answer with `resolve`. A turn that is stopped while waiting withdraws its question.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from core.timeline.ids import new_id
from core.tools.registry import ApprovalDecision, ApprovalRequest


@dataclass
class PendingApproval:
    id: str
    request: ApprovalRequest
    future: asyncio.Future[ApprovalDecision] = field(repr=False)


class ApprovalBroker:
    def __init__(self) -> None:
        self.pending: dict[str, PendingApproval] = {}
        self._listeners: list[Callable[[str, PendingApproval], None]] = []

    def add_listener(self, listener: Callable[[str, PendingApproval], None]) -> None:
        """`listener(change, pending)` with change "added" or "resolved"."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str, PendingApproval], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, change: str, item: PendingApproval) -> None:
        for listener in list(self._listeners):
            listener(change, item)

    async def ask(self, request: ApprovalRequest) -> ApprovalDecision:
        """An ApprovalCallback: waits until someone answers, or the turn is stopped."""
        item = PendingApproval(new_id(), request, asyncio.get_running_loop().create_future())
        self.pending[item.id] = item
        self._notify("added", item)
        try:
            return await item.future
        finally:
            if self.pending.pop(item.id, None) is not None:
                self._notify("resolved", item)

    def resolve(self, approval_id: str, decision: ApprovalDecision) -> bool:
        """Answer a pending question; False if it was already answered or withdrawn."""
        item = self.pending.get(approval_id)
        if item is None or item.future.done():
            return False
        item.future.set_result(decision)
        return True
