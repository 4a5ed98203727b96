"""The OpenAI-compatible face, driven by the real `openai` SDK over HTTP; and /metrics after real work."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest

from core.providers.base import ChatMessage
from tests.serve.conftest import served


def sdk(url: str, token: str | None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token or "none", max_retries=0)


async def test_the_openai_client_lists_the_model_and_streams_a_chat() -> None:
    async with served(["Streaming through the agent works."]) as server:
        client = sdk(server.url, server.token)
        models = await client.models.list()
        assert [m.id for m in models.data] == ["shoal"]
        stream = await client.chat.completions.create(
            model="shoal", messages=[{"role": "user", "content": "Say it"}], stream=True
        )
        pieces, reasons = [], []
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                reasons.append(chunk.choices[0].finish_reason)
        assert "".join(pieces) == "Streaming through the agent works."
        assert reasons[-1] == "stop" and reasons.count("stop") == 1
        await client.close()


async def test_a_non_streamed_completion_carries_the_history_and_the_session_can_continue() -> None:
    async with served(["Second answer.", "Third answer."]) as server:
        client = sdk(server.url, server.token)
        raw = await client.chat.completions.with_raw_response.create(
            model="shoal",
            messages=[
                {"role": "system", "content": "Answer like a pirate."},
                {"role": "user", "content": "First question"},
                {"role": "assistant", "content": "First answer."},
                {"role": "user", "content": [{"type": "text", "text": "Second question"}]},
            ],
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "Second answer."
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None and completion.usage.completion_tokens > 0
        sent = server.provider.calls[0]
        assert sent[0].role == "system" and sent[0].content.endswith("Answer like a pirate.")
        assert [(m.role, m.content) for m in sent[1:]] == [
            ("user", "First question"),
            ("assistant", "First answer."),
            ("user", "Second question"),
        ]
        session = raw.headers["x-shoal-session"]
        follow = await client.chat.completions.create(
            model="shoal",
            messages=[{"role": "user", "content": "Third question"}],
            extra_headers={"X-Shoal-Session": session},
        )
        assert follow.choices[0].message.content == "Third answer."
        assert server.provider.calls[1][-1] == ChatMessage("user", "Third question")
        assert len(server.provider.calls[1]) == 6  # system + 2 seeded + 2 from the first call + the new question
        await client.close()


async def test_openai_clients_get_openai_shaped_errors() -> None:
    async with served([RuntimeError("the model fell over")]) as server:
        with pytest.raises(openai.AuthenticationError):
            await sdk(server.url, "wrong-token").models.list()
        client = sdk(server.url, server.token)
        with pytest.raises(openai.BadRequestError, match="last message must be a non-empty user message"):
            await client.chat.completions.create(
                model="shoal", messages=[{"role": "assistant", "content": "I speak last"}]
            )
        with pytest.raises(openai.UnprocessableEntityError):
            await client.chat.completions.create(model="shoal", messages=[])
        with pytest.raises(openai.InternalServerError, match="the model fell over"):
            await client.chat.completions.create(model="shoal", messages=[{"role": "user", "content": "hi"}])
        await client.close()


async def test_a_turn_failing_mid_stream_reaches_the_openai_client_as_an_error() -> None:
    async with served([RuntimeError("broken pipe to the model")]) as server:
        client = sdk(server.url, server.token)
        stream = await client.chat.completions.create(
            model="shoal", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="broken pipe to the model"):
            async for _ in stream:
                pass
        await client.close()


async def test_metrics_count_requests_tokens_tools_and_turns() -> None:
    async with served(["One.", "Two."]) as server, server.client() as client:
        session = (await client.post("/api/sessions", json={})).json()["id"]
        for text in ("a", "b"):
            await client.post(f"/api/sessions/{session}/messages", json={"text": text, "stream": False})
        await client.get("/api/sessions/does-not-exist-at-all")
        text = (await client.get("/metrics")).text
        lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}
        assert lines['shoal_turns_total{status="ok"}'] == 2
        assert lines['shoal_llm_calls_total{model="scripted",status="ok"}'] == 2
        assert lines['shoal_llm_tokens_total{direction="output",model="scripted"}'] > 0
        route = "/api/sessions/{session_id}/messages"
        assert lines[f'shoal_http_requests_total{{method="POST",route="{route}",status="200"}}'] == 2
        # the route's template, never the raw path: a flood of random paths cannot mint new series
        assert lines['shoal_http_requests_total{method="GET",route="/api/sessions/{session_id}",status="404"}'] == 1
        assert lines["shoal_group_outbox_depth"] == 0 and lines["shoal_group_joined"] == 0
        assert "does-not-exist" not in text


async def test_seeded_history_and_system_messages_are_classified_by_the_policy() -> None:
    folder = Path(os.environ["SHOAL_CONFIG"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.toml").write_text(
        '[[classify]]\nname = "payroll"\npattern = "(?i)payroll"\nlabel = "confidential"\n'
    )
    remote = {"model": {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-test"}}
    async with served(["never", "never", "fine"], overrides=remote) as server:
        client = sdk(server.url, server.token)
        seeded = [{"role": "user", "content": "payroll: Alice 120k"}, {"role": "assistant", "content": "noted"}]
        with pytest.raises(openai.BadRequestError, match="builtin:remote-model"):
            await client.chat.completions.create(model="shoal", messages=[*seeded, {"role": "user", "content": "hi"}])
        [session] = [s for s in await server.core.sessions.recent() if s.title.startswith("API: hi")]
        labelled = await server.core.sessions.labelled_messages(session.id)
        assert [label for _m, label in labelled][:2] == ["confidential", None]  # stored with the classifier's label
        told = [{"role": "system", "content": "You keep the payroll."}, {"role": "user", "content": "hi"}]
        with pytest.raises(openai.BadRequestError, match="confidential"):
            await client.chat.completions.create(model="shoal", messages=told)
        assert server.provider.calls == []
        await client.close()
