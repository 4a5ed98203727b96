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

    async def refresh_group_figures(self) -> None:
        """Read the group's outbox depth and lag now, for /metrics and /api/group."""
        group = self.core.group
        if group is None:
            self.group_figures = {"joined": False}
            return
        node = group.node
        self.group_figures = {
            "joined": node.state == "online",
            "outbox_depth": await node.outbox.depth(),
            "lag": node.lag(),
        }
