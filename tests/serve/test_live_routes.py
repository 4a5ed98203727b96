"""The routes the remote desktop follows and edits with: live timeline and approval feeds, session PATCH,
search, one event, recent turns with their trees, and the Memory and Schedule panes' extras."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.providers.scripted import tool_call
from tests.serve.conftest import served
from tests.serve.test_chat_api import new_session

SSE = {"Accept": "text/event-stream"}


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


async def test_the_timeline_feed_sends_every_committed_step_of_a_turn_as_it_happens() -> None:
    async with served(["Elsewhere.", "Hello from the server."]) as server, server.client() as client:
        session = await new_session(client)
        other = await new_session(client)
        seen: list[dict[str, Any]] = []
        async with client.stream("GET", "/api/timeline/stream", params={"session_id": session}, headers=SSE) as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            events = sse_events(live)
            assert (await anext(events))[0] == "ready"  # the listener is attached from here on
            await client.post(f"/api/sessions/{other}/messages", json={"text": "elsewhere", "stream": False})
            sent = await client.post(f"/api/sessions/{session}/messages", json={"text": "Hi", "stream": False})
            async for name, data in events:
                assert name == "timeline"
                seen.append(data)
                if data["kind"] == "turn.end":
                    break
        recorded = (await client.get("/api/timeline", params={"session_id": session})).json()
        assert [e["id"] for e in seen] == [e["id"] for e in recorded]  # the same steps, in order, none of `other`
        assert seen[-1]["status"] == "ok" and sent.json()["trace_id"] == seen[0]["trace_id"]
        assert seen[0]["payload"]["text"] == "Hi"


async def test_a_feed_asked_without_accepting_event_streams_says_how_instead_of_hanging() -> None:
    async with served() as server, server.client() as client:
        for path in ("/api/timeline/stream", "/api/approvals/stream"):
            answer = await asyncio.wait_for(client.get(path), 10)
            assert answer.status_code == 406
            assert "text/event-stream" in answer.json()["fix"]


async def test_the_approvals_feed_lists_waiting_questions_then_new_ones_and_their_answers() -> None:
    steps = [[tool_call("shell", {"command": "echo one"})], "first done", [tool_call("shell", {"command": "echo two"})]]
    async with served(steps) as server, server.client() as client:
        session = await new_session(client)
        first = asyncio.ensure_future(
            client.post(f"/api/sessions/{session}/messages", json={"text": "one", "stream": False})
        )
        while not server.broker.pending:
            await asyncio.sleep(0.01)
        async with client.stream("GET", "/api/approvals/stream", headers=SSE) as live:
            events = sse_events(live)
            assert (await anext(events))[0] == "ready"
            name, waiting = await anext(events)
            assert name == "approval_requested" and waiting["summary"].endswith("echo one")
            answer = await client.post(f"/api/approvals/{waiting['id']}", json={"decision": "approve_once"})
            assert answer.status_code == 200
            assert await anext(events) == ("approval_resolved", {"id": waiting["id"]})
            assert (await first).json()["text"] == "first done"
            async with client.stream("POST", f"/api/sessions/{session}/messages", json={"text": "two"}) as second:
                name, asked = await anext(events)
                assert name == "approval_requested" and asked["summary"].endswith("echo two")
                assert second.status_code == 200
            # the client went: the server stopped the turn, which withdrew its question
            assert await anext(events) == ("approval_resolved", {"id": asked["id"]})
        assert not server.broker.pending


async def test_sessions_are_renamed_pinned_and_found_by_their_words() -> None:
    async with served(["The tide turns at 18:42."]) as server, server.client() as client:
        session = await new_session(client, "old title")
        await client.post(f"/api/sessions/{session}/messages", json={"text": "When?", "stream": False})
        renamed = await client.patch(f"/api/sessions/{session}", json={"title": "  Tides  ", "pinned": True})
        assert renamed.status_code == 200
        assert (renamed.json()["title"], renamed.json()["pinned"]) == ("Tides", True)
        assert (await client.patch(f"/api/sessions/{session}", json={"pinned": False})).json()["title"] == "Tides"
        assert (await client.patch(f"/api/sessions/{session}", json={"title": "   "})).status_code == 400
        assert (await client.patch("/api/sessions/nosuchsession", json={"pinned": True})).status_code == 404
        assert (await client.patch(f"/api/sessions/{session}", json={"colour": "red"})).status_code == 422
        hits = (await client.get("/api/search", params={"q": "tide"})).json()
        assert [(h["session_id"], h["role"]) for h in hits] == [(session, "assistant")]
        assert "[tide]" in hits[0]["snippet"].lower() and hits[0]["session_title"] == "Tides"
        assert (await client.get("/api/search", params={"q": "volcano"})).json() == []


async def test_one_event_and_the_recent_turns_with_their_trees_in_one_request() -> None:
    async with served(["one", "two"]) as server, server.client() as client:
        session = await new_session(client)
        for text in ("first", "second"):
            await client.post(f"/api/sessions/{session}/messages", json={"text": text, "stream": False})
        turns = (await client.get("/api/timeline/traces", params={"session_id": session})).json()
        assert [t["root"]["payload"].get("text") for t in turns] == ["second", "first"]  # newest first
        for turn in turns:
            single = (await client.get(f"/api/traces/{turn['root']['trace_id']}")).json()
            assert turn["tree"] == single
        event = turns[0]["tree"][0]["children"][0]["event"]
        assert (await client.get(f"/api/events/{event['id']}")).json() == event
        assert (await client.get("/api/events/nosuchevent")).status_code == 404


async def test_the_memory_extras_say_how_to_turn_memory_on_and_a_job_is_edited_in_place() -> None:
    async with served() as server, server.client() as client:
        for path in ("/api/memory/sources", "/api/memory/stats", "/api/memory/sources/abc"):
            answer = await client.get(path)
            assert answer.status_code == 503 and "memory.enabled" in answer.json()["fix"]
        job = (await client.post("/api/schedule", json={"prompt": "Summarise", "every": "2h"})).json()
        changed = await client.patch(
            f"/api/schedule/{job['id']}", json={"prompt": "Summarise my notes", "cron": "0 8 * * *"}
        )
        assert changed.status_code == 200
        body = changed.json()
        assert (body["prompt"], body["kind"], body["expr"]) == ("Summarise my notes", "cron", "0 8 * * *")
        claimed = await client.patch(f"/api/schedule/{job['id']}", json={"group_claim": " notes "})
        assert claimed.json()["group_claim"] == "notes" and claimed.json()["prompt"] == "Summarise my notes"
        unclaimed = await client.patch(f"/api/schedule/{job['id']}", json={"group_claim": ""})
        assert unclaimed.json()["group_claim"] is None, "an empty key removes the claim"
        too_long = await client.patch(f"/api/schedule/{job['id']}", json={"group_claim": "k" * 201})
        assert too_long.status_code == 422
        both = await client.patch(f"/api/schedule/{job['id']}", json={"cron": "0 8 * * *", "every": "1h"})
        assert both.status_code == 400 and "at most one" in both.json()["message"]
        bad = await client.patch(f"/api/schedule/{job['id']}", json={"cron": "61 * * * *"})
        assert bad.status_code == 400
        assert (await client.patch("/api/schedule/nosuchjob", json={"name": "x"})).status_code == 404


async def test_a_stopping_server_ends_its_feeds_at_once_instead_of_waiting_out_its_grace_period() -> None:
    from app.serve.routes_live import close_feeds

    async with served() as server, server.client() as client:
        async with (
            client.stream("GET", "/api/timeline/stream", headers=SSE) as timeline,
            client.stream("GET", "/api/approvals/stream", headers=SSE) as approvals,
        ):
            feeds = [sse_events(timeline), sse_events(approvals)]
            for events in feeds:
                assert (await anext(events))[0] == "ready"
            assert close_feeds(server.state) == 2
            for events in feeds:
                rest = await asyncio.wait_for(_drain(events), 5)
                assert rest == []  # ended cleanly, nothing after
        assert close_feeds(server.state) == 0


async def _drain(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [item async for item in events]
