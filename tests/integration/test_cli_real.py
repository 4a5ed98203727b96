"""`shoal` end to end as a user runs it, over a real generated GGUF model and a real endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.llama_server import LlamaServer
from tests.integration.conftest import PLAIN_REPLY

ROOT = Path(__file__).resolve().parents[2]


def shoal(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        env={**os.environ, "SHOAL_MODEL__TEMPERATURE": "0", **(env or {})},
        timeout=180,
    )


def test_agent_answers_through_a_gguf_file_and_the_timeline_shows_the_turn(plain_model: Path) -> None:
    result = shoal("--model", str(plain_model), "-v", "agent", "-m", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == PLAIN_REPLY + "\n"
    assert "in /" in result.stderr and "out" in result.stderr  # -v prints token counts
    tree = shoal("timeline", "--json")
    assert tree.returncode == 0, tree.stderr
    [root] = json.loads(tree.stdout.strip().splitlines()[-1])
    assert root["kind"] == "user.message" and root["payload"]["text"] == "hello"
    request = root["children"][0]
    response = request["children"][0]
    assert (request["kind"], response["kind"]) == ("llm.request", "llm.response")
    assert response["output_tokens"] == len(PLAIN_REPLY) and response["payload"]["text"] == PLAIN_REPLY
    pretty = shoal("timeline")
    assert "llm.response" in pretty.stdout and "user.message" in pretty.stdout


def test_agent_continues_a_session_and_search_finds_it(plain_model: Path) -> None:
    first = shoal("--model", str(plain_model), "-v", "agent", "-m", "remember the lighthouse")
    session = first.stderr.strip().splitlines()[-1].split()[-1]
    second = shoal("--model", str(plain_model), "agent", "-s", session[:12], "-m", "and again")
    assert second.returncode == 0, second.stderr
    listing = shoal("sessions")
    assert session in listing.stdout and "   4 msgs" in listing.stdout
    found = shoal("search", "lighthouse")
    assert "lighthouse" in found.stdout


def test_agent_through_an_openai_compatible_endpoint(llama_server: LlamaServer) -> None:
    result = shoal("--endpoint", llama_server.base_url, "--model-name", "plain", "agent", "-m", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == PLAIN_REPLY + "\n"


def test_chat_reads_lines_until_end_of_input(plain_model: Path) -> None:
    result = shoal("--model", str(plain_model), "chat", stdin="hello\n/id\nsecond\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(PLAIN_REPLY) == 2


def test_doctor_passes_with_a_working_model(plain_model: Path) -> None:
    result = shoal("--model", str(plain_model), "doctor")
    assert result.returncode == 0, result.stderr
    assert "✓ model file" in result.stderr and "✓ llama-cpp-python" in result.stderr


SHELL_REPLY = '<tool_call>{"name": "shell", "arguments": {"command": "touch approved.txt"}}</tool_call>'


def test_shell_needs_approval_denied_without_a_terminal_allowed_with_yes(tmp_path: Path) -> None:
    from tests.fixtures.gguf_models import write_scripted_model

    model = write_scripted_model(tmp_path / "shell.gguf", SHELL_REPLY)
    workspace = Path(os.environ["SHOAL_TOOLS__WORKSPACE"])
    env = {"SHOAL_AGENT__MAX_ITERATIONS": "1"}
    denied = shoal("--model", str(model), "agent", "-m", "make a file", env=env)
    assert denied.returncode == 1  # the model never gave a final answer within one call
    assert "needs approval" in denied.stderr and "denied" in denied.stderr
    assert not (workspace / "approved.txt").exists()
    tree = json.loads(shoal("timeline", "--json").stdout.strip().splitlines()[-1])
    tool_call = tree[0]["children"][0]["children"][0]["children"][0]
    assert tool_call["kind"] == "tool.call" and tool_call["payload"]["arguments"] == {"command": "touch approved.txt"}
    approval = tool_call["children"][0]
    assert approval["kind"] == "approval" and approval["status"] == "denied"
    assert approval["payload"]["summary"] == "touch approved.txt"

    allowed = shoal("--model", str(model), "agent", "--yes", "-m", "make a file", env=env)
    assert "approved by --yes" in allowed.stderr
    assert (workspace / "approved.txt").exists()


def test_agent_json_prints_one_event_per_line(plain_model: Path) -> None:
    result = shoal("--model", str(plain_model), "agent", "--json", "-m", "hello")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "TurnStarted" and events[-1]["event"] == "TurnFinished"
    assert "".join(e["text"] for e in events if e["event"] == "AssistantDelta") == PLAIN_REPLY
    finished = next(e for e in events if e["event"] == "LlmCallFinished")
    assert finished["output_tokens"] == len(PLAIN_REPLY) and finished["event_id"]
