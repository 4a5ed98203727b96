"""A remote agent's approval questions, asked through the desktop's own `ApprovalBroker`.

The tools pane, the tray and the status bar all follow the local broker, so a remote question is re-asked
there (`broker.ask`) and the answer POSTed back to the server. Questions arrive from a turn's stream
(`approval_requested`, for turns started here) and from the server's approvals feed (every session's,
including scheduled runs and other clients), so the same id may come twice: it is asked once. A question
answered elsewhere or withdrawn (its turn stopped) is withdrawn here too, which removes its card. Once a
person has answered, the answer is sent even if a withdrawal arrives meanwhile (the server then says it was
already answered, which is not an error worth showing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from app.remote import decode
from app.remote.http import RemoteClient, ServerError
from core.approvals import ApprovalBroker
from core.errors import ShoalError, classify

log = logging.getLogger(__name__)
ANSWERED_KEPT = 500  # ids remembered as answered, so a late replay of one is not asked again


class ApprovalMirror:
    def __init__(self, client: RemoteClient, broker: ApprovalBroker, on_error: Callable[[ShoalError], None]) -> None:
        self._client = client
        self._broker = broker
        self._on_error = on_error
        self._waiting: dict[str, asyncio.Task[None]] = {}  # remote id -> the local question, unanswered
        self._answered: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> list[str]:
        return list(self._waiting)

    def ask(self, data: dict[str, Any]) -> None:
        """A question the server raised (an ApprovalOut); asked locally unless it already is, or was answered."""
        remote_id = str(data.get("id", ""))
        if not remote_id or remote_id in self._waiting or remote_id in self._answered:
            return
        task = asyncio.ensure_future(self._ask(remote_id, data))
        self._waiting[remote_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def withdraw(self, remote_id: str) -> None:
        """The server no longer waits for it (answered elsewhere, or its turn ended): drop the local card."""
        task = self._waiting.pop(remote_id, None)
        if task is not None:
            task.cancel()  # broker.ask's cleanup removes the pending item and tells its listeners

    def withdraw_all(self, remote_ids: Iterable[str]) -> None:
        for remote_id in list(remote_ids):
            self.withdraw(remote_id)

    def sync(self, pending: list[dict[str, Any]]) -> None:
        """Match the local questions to the server's list (after a reconnect, or a turn's end)."""
        ids = {str(item.get("id", "")) for item in pending}
        for remote_id in [r for r in self._waiting if r not in ids]:
            self.withdraw(remote_id)
        for item in pending:
            self.ask(item)

    async def refresh(self) -> None:
        try:
            pending = await self._client.get("/api/approvals")
        except ShoalError as exc:
            log.info("could not list the server's approvals: %s", exc.message)
            return
        self.sync(list(pending or []))

    async def close(self) -> None:
        self.withdraw_all(self._waiting)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _ask(self, remote_id: str, data: dict[str, Any]) -> None:
        decision = await self._broker.ask(decode.approval_request(data))
        if self._waiting.get(remote_id) is asyncio.current_task():
            del self._waiting[remote_id]  # answered: from now on a withdrawal must not cancel the POST
        self._answered.append(remote_id)
        del self._answered[:-ANSWERED_KEPT]
        try:
            await self._client.request("POST", f"/api/approvals/{remote_id}", json_body={"decision": decision.value})
        except ServerError as exc:
            if exc.status in (404, 409):  # answered elsewhere, or its turn stopped first
                log.info("approval %s was no longer waiting on the server: %s", remote_id, exc.message)
                return
            self._unanswered(remote_id, exc)
        except Exception as exc:
            self._unanswered(remote_id, classify(exc))

    def _unanswered(self, remote_id: str, error: ShoalError) -> None:
        """The answer did not reach the server: say so, and ask again when the server next lists it (the
        approvals feed does on reconnecting)."""
        if remote_id in self._answered:
            self._answered.remove(remote_id)
        self._on_error(error)
