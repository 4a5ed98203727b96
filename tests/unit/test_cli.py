"""The `shoal` command without a model: config, doctor, timeline, startup cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("llama_cpp", "openai", "mcp", "torch", "sentence_transformers", "aiokafka", "numpy", "jsonschema", "httpx")


def shoal(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=120,
    )


def test_starting_the_cli_imports_no_heavy_library() -> None:
    code = (
        "import sys, app.cli, app.cli_config, app.cli_inspect, core.service; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_config_show_reports_values_and_their_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    result = shoal(
        "--max-tokens",
        "77",
        "config",
        "show",
        "--json",
        env={"SHOAL_MODEL__N_CTX": "2048", "SHOAL_API_KEY": "sk-secret-value-9876"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["settings"]
    assert data["model.max_tokens"] == {"value": 77, "source": "cli"}
    assert data["model.n_ctx"] == {"value": 2048, "source": "env"}
    assert data["model.top_p"]["source"] == "default"
    assert data["secrets.api_key"]["value"] == "sk-…9876"
    assert "secret-value" not in result.stdout


def test_config_set_writes_the_file_and_refuses_secrets_and_bad_values(tmp_path: Path) -> None:
    ok = shoal("config", "set", "model.n_ctx", "8192")
    assert ok.returncode == 0, ok.stderr
    config = Path(os.environ["SHOAL_CONFIG"])
    assert "n_ctx = 8192" in config.read_text()
    shown = json.loads(shoal("config", "show", "--json").stdout)["settings"]
    assert shown["model.n_ctx"] == {"value": 8192, "source": "file"}
    bad = shoal("config", "set", "model.n_ctx", "5")
    assert bad.returncode != 0 and "n_ctx" in bad.stderr
    assert "n_ctx = 8192" in config.read_text()  # the bad value never reached the file
    secret = shoal("config", "set", "model.api_key", "sk-123")
    assert secret.returncode != 0 and "set-key" in secret.stderr
    assert "sk-123" not in config.read_text()


def test_agent_without_a_model_explains_what_to_do() -> None:
    result = shoal("agent", "-m", "hello")
    assert result.returncode == 3
    assert "No model is configured" in result.stderr and "model.path" in result.stderr


def test_agent_with_a_missing_model_file_names_the_path(tmp_path: Path) -> None:
    result = shoal("--model", str(tmp_path / "nope.gguf"), "agent", "-m", "hello")
    assert result.returncode == 3 and "nope.gguf" in result.stderr and "not found" in result.stderr


def test_agent_with_a_corrupt_model_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    result = shoal("--model", str(bad), "agent", "-m", "hello")
    assert result.returncode == 3 and "not a GGUF model" in result.stderr


def test_agent_with_an_unreachable_endpoint_is_a_network_error() -> None:
    result = shoal("--endpoint", "http://127.0.0.1:9/v1", "--model-name", "m", "agent", "-m", "hello")
    assert result.returncode == 4, result.stderr
    assert "Cannot reach http://127.0.0.1:9/v1" in result.stderr


def test_doctor_fails_without_a_model_and_says_what_to_fix() -> None:
    result = shoal("doctor")
    assert result.returncode == 1
    assert "✗ model file" in result.stderr and "→" in result.stderr and "✓ data dir" in result.stderr


def test_timeline_on_an_empty_database() -> None:
    result = shoal("timeline")
    assert result.returncode == 0 and "No turns recorded yet" in result.stderr


def test_models_finds_gguf_files_in_the_configured_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "nested"
    folder.mkdir(parents=True)
    (folder / "tiny.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    (folder / "fake.gguf").write_bytes(b"nope")
    result = shoal("models", env={"SHOAL_PATHS__MODELS_DIR": str(tmp_path / "models"), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "tiny.gguf" in result.stdout and "fake.gguf" not in result.stdout


def test_looking_at_history_never_starts_mcp_servers(tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    server = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    servers = f'[{{"name": "x", "command": "{sys.executable}", "args": ["-c", "{server}"]}}]'
    for command in (["sessions"], ["search", "tide"], ["timeline"]):
        result = shoal(*command, env={"SHOAL_MCP_SERVERS": servers})
        assert result.returncode == 0, result.stderr
    assert not marker.exists()
    shoal("agent", "-m", "hi", env={"SHOAL_MCP_SERVERS": servers})  # the control: the agent does start them
    assert marker.exists()


def test_a_broken_config_file_can_still_be_located_diagnosed_and_fixed() -> None:
    config = Path(os.environ["SHOAL_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[model]\nn_ctx = 100\n")
    assert shoal("config", "path").stdout.strip() == str(config)
    doctor = shoal("doctor")
    assert doctor.returncode == 1 and "model.n_ctx" in doctor.stderr and str(config) in doctor.stderr
    fixed = shoal("config", "set", "model.n_ctx", "4096")
    assert fixed.returncode == 0, fixed.stderr
    assert shoal("config", "show", "--json").returncode == 0


def test_mcp_server_environment_values_are_masked() -> None:
    servers = '[{"name": "gh", "command": "x", "env": {"GITHUB_TOKEN": "ghp_abcdefghijklmnop1234"}}]'
    result = shoal("config", "show", "--json", env={"SHOAL_MCP_SERVERS": servers})
    assert result.returncode == 0, result.stderr
    assert "ghp_abcdefghijklmnop1234" not in result.stdout and "GITHUB_TOKEN" in result.stdout


def test_a_join_nobody_answers_puts_the_settings_back_and_keeps_no_secret(tmp_path: Path) -> None:
    """A closed port: the join fails with what to do, config.toml is as before and the keyring has no secret."""
    import socket

    from core.group.invite import Invite

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert shoal("config", "set", "group.name", "before").returncode == 0
    config = Path(os.environ["SHOAL_CONFIG"])
    before = config.read_text()
    code = Invite.create("elsewhere", "a" * 24, [f"127.0.0.1:{port}"]).code()
    keyring_file = tmp_path / "keyring.json"
    env = {
        "PYTHON_KEYRING_BACKEND": "tests.fixtures.file_keyring.FileKeyring",
        "SHOAL_TEST_KEYRING_FILE": str(keyring_file),
    }
    failed = shoal("group", "join", code, "--timeout", "2", env=env)
    assert failed.returncode != 0 and "Cannot reach the Kafka group" in failed.stderr, failed.stderr
    assert config.read_text().count('name = "before"') == 1 and "elsewhere" not in config.read_text()
    assert "enabled = true" not in config.read_text() or "enabled = true" in before
    assert not keyring_file.exists() or "group-secret" not in keyring_file.read_text()
