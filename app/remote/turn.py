"""A turn running on a remote `shoal serve`, with the interface of `core.service.Turn`.

The server streams the turn as Server-Sent Events (POST /api/sessions/{id}/messages); each event becomes the
core.events dataclass it was made from, so the bridge and the panes cannot tell it from a local turn. The
stream is read in its own task, like a local turn runs in its own, so a slow reader never holds the
connection back. `cancel()` closes the stream, and the server cancels the turn when its client goes (and
records the stop); since the server's own "cancelled" ending is then never received, the same ending is
made here from what had streamed. A connection lost mid-turn ends it as `TurnFailed` saying so; a refusal
before the turn started (an unknown session, a rate limit) is raised from the iteration, as locally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.remote import decode
from app.remote.http import RemoteClient, ServerError
from core import events as ev
from core.errors import NetworkError, ShoalError, classify
from core.service import QueuedTurn

log = logging.getLogger(__name__)
REGENERATE_TEXT = "(answer the last question again)"  # the API wants text; with regenerate it is not used
BUSY_RETRIES, BUSY_PAUSE = 20, 0.1  # up to 2 s for the session's previous turn to finish ending on the server


class RemoteTurn(QueuedTurn):
    def __init__(
        self,
        client: Callable[[], RemoteClient],
        session_id: str,
        text: str,
        *,
        regenerate: bool = False,
        on_approval: Callable[[dict[str, Any]], None] = lambda _data: None,
        on_end: Callable[[RemoteTurn], None] = lambda _turn: None,
        refusal: ShoalError | None = None,
        label: str | None = None,
    ) -> None:
        """`refusal`: a reason this turn cannot be sent, raised to its reader before anything is sent.
        `label`: the message's sensitivity label, applied by the server's policy."""
        super().__init__()
        self.session_id = session_id
        self.approvals: set[str] = set()  # ids of the questions this turn's stream raised
        self._client = client
        self._on_approval = on_approval
        self._started: ev.TurnStarted | None = None
        self._text: list[str] = []
        self._iterations = 0
        self._tokens = [0, 0]
        self._refusal = refusal
        body: dict[str, Any] = {"text": REGENERATE_TEXT if regenerate else text, "stream": True}
        body["regenerate"] = regenerate
        if label is not None:
            body["label"] = label
        self._run(self._pump(body), "shoal-remote-turn").add_done_callback(lambda _task: on_end(self))

    async def _pump(self, body: dict[str, Any]) -> None:
        try:
            if self._refusal is not None:
                raise self._refusal
            client = self._client()  # raises when not connected: reported like any refusal before the turn
            await self._open(client, f"/api/sessions/{self.session_id}/messages", body)
            if self.final is None:
                self._end_failed(
                    NetworkError(
                        f"{client.url} ended the answer's stream before the turn ended.",
                        "The server may have stopped; what it recorded is in the thread. Send the message again.",
                    )
                )
        except asyncio.CancelledError:
            self._end_cancelled()  # leaving the `async with` closed the stream: the server stops the turn
        except Exception as exc:
            error = classify(exc)
            if self._started is None:
                self._queue.put_nowait(error)  # refused before the turn began: raised to the reader
            else:
                self._end_failed(error)

    async def _open(self, client: RemoteClient, path: str, body: dict[str, Any]) -> None:
        """The turn's stream. The server runs one turn per session: one just stopped here may still be
        recording its end there (409), so that is waited for, briefly, rather than shown as an error."""
        for attempt in range(BUSY_RETRIES + 1):
            try:
                async with client.stream("POST", path, json_body=body) as events:
                    await self._read(events)
                return
            except ServerError as exc:
                if exc.status != 409 or self._started is not None or attempt == BUSY_RETRIES:
                    raise
            await asyncio.sleep(BUSY_PAUSE)

    async def _read(self, events: AsyncIterator[tuple[str, dict[str, Any]]]) -> None:
        async for name, data in events:
            if name == "approval_requested":
                self.approvals.add(str(data.get("id", "")))
                self._on_approval(data)
                continue
            event = decode.agent_event(data)
            if event is None:
                log.debug("skipping an event type this desktop does not know: %s", name)
                continue
            self._note(event)
            self._queue.put_nowait(event)
            if self.final is not None:
                return

    def _note(self, event: ev.AgentEvent) -> None:
        if isinstance(event, ev.TurnStarted):
            self._started = event
        elif isinstance(event, ev.AssistantDelta):
            self._text.append(event.text)
        elif isinstance(event, ev.LlmCallStarted):
            self._iterations += 1
        elif isinstance(event, ev.LlmCallFinished):
            self._tokens[0] += event.input_tokens
            self._tokens[1] += event.output_tokens
        elif isinstance(event, ev.TurnFinished | ev.TurnFailed):
            self.final = event

    def _end_cancelled(self) -> None:
        trace = self._started.trace_id if self._started else ""
        final = ev.TurnFinished(
            self.session_id,
            trace,
            "".join(self._text),
            "cancelled",
            self._iterations,
            self._tokens[0],
            self._tokens[1],
            event_id="",
        )
        self.final = final
        self._queue.put_nowait(final)

    def _end_failed(self, error: ShoalError) -> None:
        trace = self._started.trace_id if self._started else ""
        final = ev.TurnFailed(self.session_id, trace, error.to_dict(), event_id="")
        self.final = final
        self._queue.put_nowait(final)
