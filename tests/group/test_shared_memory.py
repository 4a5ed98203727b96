"""Shared memory on the real broker: an item one agent process shares is indexed by another in its own memory,
with provenance, and found there by meaning; items from a private zone the agent is not in are not indexed."""

from __future__ import annotations

from pathlib import Path

from core.group.envelope import MEMORY_ITEM
from core.memory.embed_process import EmbeddingClient
from core.memory.retrieval import RecallFilter
from core.timeline.ids import new_id, now_iso
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import RawPeer, eventually, group_overrides, member_env, run_cli, unique_group

FACT = "The staging database is rebuilt from production every Sunday at 02:00."


async def test_an_item_shared_by_another_process_is_recalled_from_the_local_index(
    kafka_broker: TansuBroker, tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    group = unique_group()
    over = group_overrides(kafka_broker, group, "reader", tmp_path / "reader")
    async with scripted_core([], overrides=over, embedder=embedding_client) as (reader, _):
        await reader.group.node.wait_online(30)
        env = member_env(kafka_broker, group, "sharer", tmp_path / "sharer")
        result = await run_cli(env, "memory", "share", FACT, "--tag", "ops", timeout=120)
        assert result.code == 0, result.stderr
        assert "Shared item" in result.stdout

        await eventually(lambda: reader.group.shared.received == 1, timeout=30)
        hits = await reader.memory.recall(
            "when is the test DB refreshed", filters=RecallFilter(kinds=frozenset({"shared"}))
        )
        assert hits and hits[0].text == FACT
        assert hits[0].origin["name"] == "sharer" and hits[0].citation() == "memory shared by sharer"
        assert hits[0].zone == "public" and hits[0].similarity is not None
        sources = await reader.memory.sources(kind="shared")
        assert len(sources) == 1 and sources[0]["tags"] == "ops" and sources[0]["origin_trace"]

        # The reader's own timeline recorded the receipt, so the item walks back to the sharer's envelope.
        received = await reader.timeline.events(kind="group.received", limit=50)
        assert any(e.name == MEMORY_ITEM for e in received)


async def test_items_from_a_private_zone_this_agent_is_not_in_are_not_indexed(
    kafka_broker: TansuBroker, tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    group = unique_group()
    over = group_overrides(kafka_broker, group, "reader", tmp_path / "reader")
    async with scripted_core([], overrides=over, embedder=embedding_client) as (reader, _):
        await reader.group.node.wait_online(30)
        async with RawPeer(kafka_broker, group, "outsider") as peer:
            await peer.announce()
            await eventually(lambda: reader.group.node.roster.key_for(peer.agent_id) is not None, timeout=20)
            for zone, text in (("finance", "Payroll runs on the 25th."), ("shared", "The canteen closes at 3.")):
                data = {"itemid": new_id(), "text": text, "tags": [], "createdat": now_iso()}
                await peer.send("memory", peer.envelope(MEMORY_ITEM, data, zone=zone), key=peer.agent_id)
            shared = reader.group.shared
            await eventually(lambda: shared.received + shared.refused == 2, timeout=30)
        assert (shared.received, shared.refused) == (1, 1)
        titles = [s["title"] for s in await reader.memory.sources(kind="shared")]
        assert titles == ["The canteen closes at 3."]
