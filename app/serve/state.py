"""What every request handler of `shoal serve` reaches: the core and the pieces around it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.serve.auth import Access
from app.serve.metrics import ServeMetrics
from core.approvals import ApprovalBroker
from core.policy.ratelimit import RateLimiter
from core.service import AgentCore


@dataclass
class ServeState:
    core: AgentCore
    broker: ApprovalBroker
    access: Access
    limiter: RateLimiter
    metrics: ServeMetrics
    cors_origins: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    group_figures: dict[str, Any] = field(default_factory=dict)
    turns: dict[str, Any] = field(default_factory=dict)  # session id -> the API turn running on it

    def start_turn(self, session_id: str, text: str, **options: Any) -> Any:
        """One API turn at a time per session (a second would interleave messages and see the first one's
        approvals): Conflict while one runs. API turns are requested by `api` as far as the policy goes."""
        from app.serve.errors import Conflict

        running = self.turns.get(session_id)
        if running is not None and not running.done:
            raise Conflict(
                f"A turn is already running in session {session_id}.",
                "Wait for it to finish, or use another session.",
            )
        turn = self.core.send(session_id, text, requester="api", **options)
        self.turns[session_id] = turn
        turn.on_done(lambda: self.turns.get(session_id) is turn and self.turns.pop(session_id, None))
        return turn

    def cancel_turns(self) -> None:
        for turn in list(self.turns.values()):
            turn.cancel()

    async def refresh_group_figures(self) -> None:
        """Read the group's outbox depth and lag now, for /metrics and /api/group."""
        group = self.core.group
        if group is None:
            self.group_figures = {"joined": False}
            return
        node = group.node
        try:
            lag = node.lag()
        except Exception:  # the consumer is being replaced (a reconnect): no figures this time
            lag = {}
        rows = node.lag_monitor.snapshot()  # sampled each second (core/group/lag.py)
        self.group_figures = {
            "joined": node.state == "online",
            "outbox_depth": await node.outbox.depth(),
            "lag": lag,
            "lag_seconds": {(r.topic, r.partition): r.seconds for r in rows if r.seconds is not None},
            "lag_warning": any(r.warning for r in rows),
        }
