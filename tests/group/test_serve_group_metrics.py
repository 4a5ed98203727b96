"""`shoal serve` on a member of a real Kafka group: /api/group and /metrics show the group's figures."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import group_overrides
from tests.serve.conftest import served


async def test_group_status_and_lag_metrics_of_a_joined_member(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    overrides = group_overrides(kafka_broker, "servemetrics", "headless", tmp_path / "data")
    async with served(overrides=overrides) as server, server.client() as client:
        node = server.core.group.node
        await node.wait_online(30)
        await node.roster_caught_up(30)
        for _ in range(150):  # caught up may come before this agent's own first card is read back
            group = (await client.get("/api/group")).json()
            if "headless" in [m["name"] for m in group["members"]]:
                break
            await asyncio.sleep(0.1)
        assert group["joined"] and group["state"] == "online" and group["agent"] == "headless"
        assert "headless" in [m["name"] for m in group["members"]]
        assert group["outbox_depth"] is not None

        series: list[tuple[str, str]] = []
        for _ in range(100):  # partitions appear once their first fetch answered
            text = (await client.get("/metrics")).text
            series = re.findall(r'^shoal_group_consumer_lag\{partition="\d+",topic="([^"]+)"\} (\S+)$', text, re.M)
            if series:
                break
            await asyncio.sleep(0.1)
        assert any(topic.startswith("group.servemetrics.") for topic, _ in series)
        assert all(float(value) >= 0 for _, value in series)
        text = (await client.get("/metrics")).text
        assert "shoal_group_joined 1.0" in text and "shoal_group_outbox_depth" in text
