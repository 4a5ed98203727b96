"""Labels on memory, over the real embedding model: what a remote model may not see is left out of its context
(automatic recall and the recall tool alike), documents get labels from classify rules on their path, and the
local model still sees everything."""

from __future__ import annotations

import os
from pathlib import Path

from core import events as ev
from core.memory.embed_process import EmbeddingClient
from core.providers.scripted import tool_call
from tests.fixtures.cores import run_turn, scripted_core

REMOTE = {"model": {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-test"}}
CODE = "The code of my garage door is 4812."
COLOUR = "My garage door is painted blue."


def write_policy(text: str) -> None:
    path = Path(os.environ["SHOAL_CONFIG"]).parent / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def test_a_recalled_confidential_memory_is_left_out_of_a_remote_models_context(
    embedding_client: EmbeddingClient,
) -> None:
    async with scripted_core(["It is blue."], overrides=REMOTE, embedder=embedding_client) as (core, provider):
        secret = await core.memory.remember(CODE, label="confidential")
        plain = await core.memory.remember(COLOUR)
        session = await core.new_session()
        events = await run_turn(core, session.id, "What do you know about my garage door?")
        assert isinstance(events[-1], ev.TurnFinished)
        system = provider.calls[0][0].content
        assert COLOUR in system and "4812" not in system
        recalled = next(e for e in events if isinstance(e, ev.MemoryRecalled))
        assert [item["memory_id"] for item in recalled.items] == [plain.source_id]
        withheld, sent = await core.timeline.events(session_id=session.id, kind="policy.decision")
        assert withheld.payload["withheld"] is True and withheld.payload["memory_ids"] == [secret.source_id]
        assert withheld.payload["rule"] == "builtin:remote-model" and withheld.payload["label"] == "confidential"
        assert withheld.status == "denied"
        # the conversation itself (internal: the default) may go, and that decision is recorded too
        assert (sent.payload["effect"], sent.payload["label"]) == ("allow", "internal")


async def test_the_local_model_sees_the_same_memories(embedding_client: EmbeddingClient) -> None:
    async with scripted_core(["It is 4812."], embedder=embedding_client) as (core, provider):
        await core.memory.remember(CODE, label="confidential")
        await core.memory.remember(COLOUR)
        session = await core.new_session()
        events = await run_turn(core, session.id, "What do you know about my garage door?")
        assert isinstance(events[-1], ev.TurnFinished)
        system = provider.calls[0][0].content
        assert COLOUR in system and "4812" in system
        assert await core.timeline.events(session_id=session.id, kind="policy.decision") == []
        # what the answer was made from is confidential too: the conversation carries the label on
        labelled = await core.sessions.labelled_messages(session.id)
        assert [label for _m, label in labelled] == [None, "confidential"]


async def test_the_recall_tool_withholds_too_and_documents_get_labels_from_their_path(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    write_policy('[[classify]]\nname = "finance"\nsource = "*/Finance/*"\nlabel = "confidential"\n')
    folder = tmp_path / "Finance"
    folder.mkdir()
    (folder / "q3.md").write_text("# Q3\n\nQuarterly revenue was 3.2 million euros.\n")
    steps = [[tool_call("recall", {"query": "quarterly revenue"})], "I cannot see it."]
    overrides = {**REMOTE, "memory": {"auto_recall": False}}
    async with scripted_core(steps, overrides=overrides, embedder=embedding_client) as (core, provider):
        added = await core.memory.documents.add_folder(folder)
        await core.memory.documents.scan(added["id"])
        await core.memory.remember("Quarterly revenue targets are set in January.", label="public")
        session = await core.new_session()
        events = await run_turn(core, session.id, "what was the revenue?")
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert result.ok and "3.2 million" not in result.output and "targets are set in January" in result.output
        assert "1 more withheld by the policy" in result.output
        assert "3.2 million" not in provider.calls[1][-1].content
        labelled = await core.sessions.labelled_messages(session.id)
        assert [label for m, label in labelled if m.role == "tool"] == ["public"]  # the kept memory's label
        # what the tool withheld is recorded like automatic recall's, under its tool call
        [call] = await core.timeline.events(session_id=session.id, kind="tool.call")
        withheld = [d for d in await core.timeline.events(session_id=session.id, kind="policy.decision")
                    if d.payload.get("withheld")]  # fmt: skip
        assert len(withheld) == 1 and withheld[0].parent_span_id == call.span_id
        assert withheld[0].payload["label"] == "confidential" and len(withheld[0].payload["memory_ids"]) >= 1


async def test_a_note_saved_in_a_turn_at_the_default_label_is_stored_unlabelled(
    embedding_client: EmbeddingClient,
) -> None:
    steps = [[tool_call("remember", {"text": "The alarm pin is 4812."})], "Saved."]
    async with scripted_core(steps, embedder=embedding_client) as (core, _):
        session = await core.new_session()
        assert isinstance((await run_turn(core, session.id, "remember the alarm pin 4812"))[-1], ev.TurnFinished)
        [note] = await core.memory.sources(kind="note")
        assert note["label"] is None  # not `internal` as if someone had said so
        write_policy('[[classify]]\nname = "pins"\npattern = "(?i)\\\\bpin\\\\b"\nlabel = "secret"\n')
        core.reload_policy()  # a rule written later labels it when it is read
        gate = core.agent.policy
        assert gate is not None
        assert [gate.hit_label(h) for h in await core.memory.recall("alarm pin")] == ["secret"]
