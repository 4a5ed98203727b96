"""Memory over the real embedding model and real SQLite: recall by meaning, filters, forgetting, documents
(re-indexing, skipping bad files), migration of old notes, model changes, and a model that cannot run."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.errors import BugError, UserError
from core.memory.embed_process import EmbeddingClient
from core.memory.retrieval import RecallFilter
from core.timeline.db import Database
from core.timeline.migrations import migrate
from tests.fixtures.memory import memory_at

NOTES = [
    "My flight to Lisbon leaves on March 3 at 9:40 from terminal 2.",
    "The office wireless network password is tangerine42.",
    "Alice prefers green tea without sugar when she visits.",
    "Error E4412 from the backup tool means the disk quota is exceeded.",
]


async def test_recall_finds_a_paraphrase_that_shares_no_word(tmp_path: Path, embedding_client: EmbeddingClient) -> None:
    async with memory_at(tmp_path, embedding_client) as memory:
        for note in NOTES:
            saved = await memory.remember(note)
            assert saved.embedded and saved.warning == ""
        query = "when does my plane depart"
        assert await memory.recall(query, mode="text") == []  # no word in common: full text alone finds nothing
        hits = await memory.recall(query, limit=2)
        assert hits[0].text == NOTES[0]
        assert hits[0].similarity is not None and hits[0].similarity > hits[1].similarity  # type: ignore[operator]
        assert hits[0].vector_rank == 1 and hits[0].text_rank is None
        exact = await memory.recall("E4412", limit=1)  # a rare token: full text ranks it first as well
        assert exact[0].text == NOTES[3] and exact[0].text_rank == 1


async def test_forget_by_short_id_and_filters(tmp_path: Path, embedding_client: EmbeddingClient) -> None:
    async with memory_at(tmp_path, embedding_client) as memory:
        ids = [(await memory.remember(note)).source_id for note in NOTES]
        gone = await memory.forget(ids[2][-8:])
        assert gone.id == ids[2]
        assert all(h.source_id != ids[2] for h in await memory.recall("what does Alice drink", limit=10))
        with pytest.raises(UserError, match="No memory has the id"):
            await memory.forget(ids[2])
        assert await memory.recall("password", filters=RecallFilter(kinds=frozenset({"document"}))) == []
        future = (datetime.now(UTC) + timedelta(days=1)).timestamp()
        assert await memory.recall("password", filters=RecallFilter(since=future)) == []
        recent = await memory.recall("password", filters=RecallFilter(since=future - 3 * 86400))
        assert recent and recent[0].source_id == ids[1]
        stats = await memory.stats()
        assert stats["sources"] == {"note": 3} and stats["pending"] == 0 and stats["indexed_vectors"] == 3


async def test_reindexing_a_changed_file_replaces_its_chunks(tmp_path: Path, embedding_client: EmbeddingClient) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    guide = docs / "guide.md"
    guide.write_text("# Garden\n\nTomatoes need six hours of sun.\n\n## Water\n\nWater the beds deeply twice a week.\n")
    (docs / "other.txt").write_text("Unrelated text about invoices and payments.")
    async with memory_at(tmp_path, embedding_client) as memory:
        folder = await memory.documents.add_folder(docs)
        first = await memory.documents.scan(folder["id"])
        assert (first.indexed, first.skipped, first.unchanged) == (2, 0, 0)
        hit = (await memory.recall("how often should I water", limit=1))[0]
        assert hit.kind == "document" and "twice a week" in hit.text and hit.heading == "Garden > Water"
        assert hit.citation() == "Garden — Garden > Water"

        guide.write_text("# Garden\n\nTomatoes need six hours of sun.\n\n## Water\n\nWater daily during heat waves.\n")
        os.utime(guide, (1, 1))  # a different modification time, whatever the clock's resolution
        second = await memory.documents.scan(folder["id"])
        assert (second.indexed, second.unchanged) == (1, 1)
        assert await memory.recall("twice", mode="text") == []  # the old chunk is gone from full text
        texts = [h.text for h in await memory.recall("how often should I water", limit=5)]
        assert any("heat waves" in t for t in texts) and not any("twice a week" in t for t in texts)

        (docs / "other.txt").unlink()
        third = await memory.documents.scan(folder["id"])
        assert (third.removed, third.unchanged) == (1, 1)
        assert await memory.recall("invoices", mode="text") == []
        with pytest.raises(UserError, match="overlaps"):
            await memory.documents.add_folder(docs / "..")


async def test_corrupt_huge_and_binary_files_are_skipped_with_a_logged_reason(
    tmp_path: Path, embedding_client: EmbeddingClient, caplog: pytest.LogCaptureFixture
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<\n garbage that never ends")
    (docs / "blob.txt").write_bytes(bytes(range(256)) * 40)
    with (docs / "huge.md").open("wb") as handle:
        handle.truncate(3_000_000)  # sparse: 3 MB over a 1 MB limit, nothing written
    (docs / "fine.md").write_text("# Fine\n\nThis one is indexed.\n")
    caplog.set_level(logging.INFO, logger="core.memory.documents")
    async with memory_at(tmp_path, embedding_client, max_file_mb=1.0) as memory:
        folder = await memory.documents.add_folder(docs)
        result = await memory.documents.scan(folder["id"])
        reasons = dict(result.skipped_files)
        assert (result.indexed, result.skipped) == (1, 3)
        assert reasons[str(docs / "broken.pdf")].startswith("corrupt PDF")
        assert reasons[str(docs / "blob.txt")] == "binary file"
        assert reasons[str(docs / "huge.md")].startswith("too large")
        status = await memory.documents.status()
        assert status["documents"] == 1 and len(status["skipped"]) == 3
        assert f"skipped {docs / 'blob.txt'}: binary file" in caplog.text


async def test_notes_saved_before_memory_existed_are_migrated_and_embedded(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    path = tmp_path / "memory-test.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, upto=5)  # the schema before memory (m006)
    conn.execute(
        "INSERT INTO notes (id, text, tags, created_at) VALUES ('n1', 'The spare key is under the blue flowerpot.', "
        "'home', '2026-01-02T03:04:05.000000Z')"
    )
    conn.close()
    async with memory_at(tmp_path, embedding_client) as memory:
        await memory.embed_pending()
        stats = await memory.stats()
        assert stats["sources"] == {"note": 1} and stats["pending"] == 0 and stats["indexed_vectors"] == 1
        hit = (await memory.recall("where can I find a key to get into the house", limit=1))[0]
        assert hit.source_id == "n1" and hit.similarity is not None and hit.created_at.startswith("2026-01-02")


async def test_a_changed_model_re_embeds_every_chunk(tmp_path: Path, embedding_client: EmbeddingClient) -> None:
    async with memory_at(tmp_path, embedding_client) as memory:
        for note in NOTES:
            await memory.remember(note)
    db = Database(tmp_path / "memory-test.db")
    await db.start()
    await db.write(lambda c: c.execute("UPDATE memory_chunks SET model_id = 'st:another-model:1'"))
    await db.stop()
    async with memory_at(tmp_path, embedding_client) as memory:
        assert (await memory.stats())["pending"] == 4 and len(memory.index) == 0
        await memory.embed_pending()
        assert (await memory.stats())["pending"] == 0 and len(memory.index) == 4
        assert (await memory.recall("when does my plane depart", limit=1))[0].text == NOTES[0]


async def test_without_a_model_notes_are_kept_and_found_by_full_text(tmp_path: Path) -> None:
    async with memory_at(tmp_path, None, model_path=str(tmp_path / "no-such-model")) as memory:
        assert memory.problem is not None and "does not exist" in memory.problem.message
        saved = await memory.remember("The boiler service is booked for Monday.")
        assert not saved.embedded and "full-text search only" in saved.warning
        hits = await memory.recall("boiler")
        assert [h.source_id for h in hits] == [saved.source_id] and hits[0].similarity is None
        stats = await memory.stats()
        assert stats["pending"] == 1 and stats["problem"]["actor"] == "config"


async def test_a_crashed_model_process_is_reported_then_restarted_and_an_idle_one_unloaded(tmp_path: Path) -> None:
    client = EmbeddingClient("sentence-transformers", "", threads=1, idle_unload=1.0)
    try:
        first = await client.embed(["hello there"])
        assert first.shape == (1, 384) and client.loads == 1
        client._process.kill()  # the model's process dies between requests: the next one starts it again
        client._process.join(5)
        again = await client.embed(["hello there"])
        assert client.loads == 2 and float(again[0] @ first[0]) > 0.999

        busy = asyncio.ensure_future(client.embed([f"sentence {n} of a long batch" for n in range(3000)]))
        await asyncio.sleep(1.0)
        client._process.kill()  # ... and during one: that request fails with a clear error
        with pytest.raises(BugError, match="embedding process stopped"):
            await busy
        assert (await client.embed(["hello there"])).shape == (1, 384) and client.loads == 3
        for _ in range(100):  # unloaded after a second without use
            if not client.running:
                break
            await asyncio.sleep(0.1)
        assert not client.running
    finally:
        await client.stop()


async def test_a_turn_recalls_relevant_notes_into_its_context_and_a_peer_task_gets_no_private_ones(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    from core import events as ev
    from core.timeline.ids import TraceContext
    from tests.fixtures.cores import run_turn, scripted_core

    async with scripted_core(["Noted.", "Done."], embedder=embedding_client) as (core, provider):
        saved = await core.memory.remember("My flight to Lisbon leaves on March 3 at 9:40 from terminal 2.")
        await core.memory.remember("The cat gets wet food in the morning.")
        session = await core.new_session()
        events = await run_turn(core, session.id, "When is my plane to Lisbon?")
        recalled = [e for e in events if isinstance(e, ev.MemoryRecalled)]
        assert len(recalled) == 1 and [i["memory_id"] for i in recalled[0].items] == [saved.source_id]
        system = provider.calls[0][0]
        assert system.role == "system" and "[1] (note" in system.content and "terminal 2" in system.content
        assert "wet food" not in system.content  # below the similarity threshold: not put in the context
        [row] = await core.timeline.events(kind="memory.recall")
        assert row.payload["items"][0]["memory_id"] == saved.source_id

        remote = [
            e
            async for e in core.agent.run_turn(
                session.id, "When is my plane to Lisbon?", parent=TraceContext.new_root()
            )
        ]
        assert not any(isinstance(e, ev.MemoryRecalled) for e in remote)  # a peer's task: private notes stay
        assert "terminal 2" not in provider.calls[1][0].content


async def test_the_torch_free_backend_runs_the_same_memory(tmp_path: Path) -> None:
    from core.memory.embedder import default_model_path
    from core.memory.gguf_embed import convert_to_gguf

    gguf = convert_to_gguf(default_model_path(), tmp_path / "minilm.gguf")
    async with memory_at(tmp_path, None, embedder="gguf", model_path=str(gguf)) as memory:
        assert memory.model_id.startswith("gguf:minilm.gguf:")
        for note in NOTES:
            assert (await memory.remember(note)).embedded
        hits = await memory.recall("when does my plane depart", limit=1)
        assert hits[0].text == NOTES[0] and hits[0].similarity is not None and hits[0].similarity > 0.3


async def test_a_cancelled_request_never_shifts_the_answers_of_the_next_ones(embedding_client: EmbeddingClient) -> None:
    busy = asyncio.ensure_future(embedding_client.embed([f"long sentence number {n} about tides" for n in range(300)]))
    await asyncio.sleep(0.3)
    busy.cancel()  # its reply is still read (and dropped) before the next request goes out
    rocket, violin = (await embedding_client.embed(["rocket"]))[0], (await embedding_client.embed(["violin"]))[0]
    both = await embedding_client.embed(["rocket", "violin"])
    assert float(both[0] @ rocket) > 0.999 and float(both[1] @ violin) > 0.999


async def test_vectors_of_replaced_text_never_land_on_new_chunks_and_stale_index_rows_are_filtered(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    from core.memory import store
    from core.memory.store import ChunkRow, SourceRow
    from core.memory.vectors import normalise

    async with memory_at(tmp_path, embedding_client) as app:
        now = "2026-01-01T00:00:00.000000Z"
        doc = SourceRow(id="d1", kind="document", uri="/x.md", created_at=now, updated_at=now)
        await app.db.write(lambda c: store.replace_source(c, doc, [ChunkRow(0, "old text")], ""))
        batch = await app.db.read(lambda c: store.pending(c, app.model_id, 10))
        new = SourceRow(id="d2", kind="document", uri="/x.md", created_at=now, updated_at=now)
        await app.db.write(lambda c: store.replace_source(c, new, [ChunkRow(0, "new text")], ""))  # id reused
        stale = normalise(np.ones((1, 384), dtype=np.float32))
        touched = await app.db.write(lambda c: store.set_vectors(c, batch, stale, app.model_id))
        assert touched == [] and await app.db.read(lambda c: store.count_pending(c, app.model_id)) == 1

        shared = await app.remember("The lighthouse keeper's log is public.", zone="public")
        async with memory_at(tmp_path, embedding_client) as other:  # another process on the same file
            await other.forget(shared.source_id)
            await other.remember("my private diary: the safe code is 4471")  # may reuse the chunk id
        hits = await app.recall("safe code", filters=RecallFilter(zones=frozenset({"public", "shared"})))
        assert all(h.zone in ("public", "shared") for h in hits) and not any("4471" in h.text for h in hits)
        with pytest.raises(UserError, match="No memory has the id"):
            await app.forget("%%%%%%%%")  # no wildcards


async def test_recall_in_a_delegated_task_sees_no_private_memories(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    from core.tools.memory_tools import RecallTool
    from core.tools.registry import ToolContext

    async with memory_at(tmp_path, embedding_client) as memory:
        await memory.remember("The alarm code is 1234.")  # private, the default for notes
        tool = RecallTool(memory)
        mine = await tool.run({"query": "alarm code"}, ToolContext(tmp_path, "s", depth=0))
        peer = await tool.run({"query": "alarm code"}, ToolContext(tmp_path, "s", depth=1))
        assert "1234" in mine.text and "1234" not in peer.text
        far = await tool.run({"query": "alarm code", "days": 1e12}, ToolContext(tmp_path, "s"))
        assert "1234" in far.text


async def test_removing_a_folder_while_it_is_scanned_leaves_nothing_behind(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(6):
        (docs / f"f{n}.md").write_text(f"# File {n}\n\nSome text about topic number {n}.\n")
    async with memory_at(tmp_path, embedding_client) as memory:
        await memory.documents.add_folder(docs)
        scan = memory.documents.scan_later()
        await asyncio.sleep(0.2)
        await memory.documents.remove_folder(str(docs))
        assert scan.done()
        assert await memory.sources(kind="document") == [] and await memory.documents.folders() == []
