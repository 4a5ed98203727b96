"""The walk-through of docs/groups.md from two "machines" (each its own config, data folder and keyring file),
every step a real `shoal` process against the real broker: create, run, join, zone, get, describe, dispatch
into the zone, membership, revoke."""

from __future__ import annotations

import json
from pathlib import Path

from core.group.membership import CONTROL_ADMIT
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import Processes, member_env, read_all, run_cli, unique_group

ECHO = [{"name": "echo", "handler": "echo"}]


def machine(broker: TansuBroker, group: str, name: str, home: Path, **kwargs: object) -> dict[str, str]:
    env = member_env(broker, group, name, home / "data", **kwargs)
    env["PYTHON_KEYRING_BACKEND"] = "tests.fixtures.file_keyring.FileKeyring"
    env["SHOAL_TEST_KEYRING_FILE"] = str(home / "keyring.json")
    env["SHOAL_CONFIG"] = str(home / "config.toml")
    home.mkdir(parents=True, exist_ok=True)
    return env


async def test_two_terminals_create_join_zone_dispatch_revoke(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group("cli")
    alpha = machine(kafka_broker, group, "alpha", tmp_path / "alpha")
    beta = machine(kafka_broker, group, "beta", tmp_path / "beta", skills=ECHO)
    with Processes(tmp_path / "logs") as procs:
        created = await run_cli(alpha, "group", "create", group, "--bootstrap", kafka_broker.bootstrap)
        assert created.code == 0, created.stderr + created.stdout
        code = next(line for line in created.stdout.splitlines() if line.startswith("shoal-invite-1:"))
        assert code not in (tmp_path / "alpha" / "config.toml").read_text()  # the secret is in the keyring only

        runner = procs.member(alpha, "alpha")  # a member online lets newcomers in
        joined = await run_cli(beta, "group", "join", code, "--name", "beta")
        assert joined.code == 0, joined.stderr + joined.stdout + procs.log(runner)
        assert "Admitted to group" in joined.stdout
        procs.member(beta, "beta")

        rows = await _json(alpha, "group", "membership", "--json")
        assert rows["closed"] is True
        assert {(r["name"], r["status"], r["role"]) for r in rows["members"]} >= {
            ("alpha", "admitted", "founder"),
            ("beta", "admitted", "member"),
        }

        zoned = await run_cli(alpha, "zone", "create", "fin", "--member", "alpha", "--member", "beta")
        assert zoned.code == 0, zoned.stderr + zoned.stdout
        zones = await _json(alpha, "get", "zones", "--json")
        fin = next(z for z in zones if z["zone"] == "fin")
        assert sorted(m["name"] for m in fin["members"]) == ["alpha", "beta"]

        agents = await _json(alpha, "get", "agents", "--json")
        beta_row = next(a for a in agents if a["name"] == "beta")
        assert beta_row["membership"] == "admitted" and "fin" in beta_row["zones"]
        described = await _json(alpha, "describe", "agent", "beta", "--json")
        assert described["admission"]["role"] == "member" and described["live"] is True

        sent = await run_cli(alpha, "dispatch", "sealed hello", "--skill", "echo", "--zone", "fin")
        assert sent.code == 0 and sent.stdout.strip() == "sealed hello", sent.stderr

        # watch progress and lag, replay the task, and a clean connection report: the rest of docs/groups.md
        tasks = await _json(alpha, "get", "tasks", "--json", "--local")
        assert any(t["status"] == "ok" and t["skill"] == "echo" for t in tasks)
        status = await _json(alpha, "group", "status", "--json")
        assert status["connection"] == "online"
        replayed = await run_cli(alpha, "replay", "--topic", "requests", "--from", "beginning", "--json")
        assert replayed.code == 0, replayed.stderr
        lines = [json.loads(line) for line in replayed.stdout.splitlines() if line.strip()]
        assert any(line["envelope"]["zone"] == "fin" and line["status"] == "verified" for line in lines)
        assert "sealed hello" not in replayed.stdout  # the replay shows the sealed task, not its text
        kshark = await run_cli(alpha, "kshark", "--json")
        report = json.loads(kshark.stdout)
        assert kshark.code == 0 and not [c for c in report["checks"] if c["status"] == "FAIL"], kshark.stdout

        revoked = await run_cli(alpha, "group", "revoke", "beta", "--reason", "test over")
        assert revoked.code == 0, revoked.stderr + revoked.stdout
        after = await _json(alpha, "group", "membership", "--json")
        assert any(r.get("name") == "beta" and r["status"] == "revoked" for r in after["members"])
        control = [json.loads(r.value) for r in await read_all(kafka_broker.bootstrap, f"group.{group}.control")]
        sessions = [e for e in control if e["type"] == CONTROL_ADMIT and e["data"].get("role") == "ephemeral"]
        assert len(sessions) == 1, "zone create, dispatch and revoke shared one kept session: one admission"
        assert "group-session:" in (tmp_path / "alpha" / "keyring.json").read_text(), "kept in the keyring"
        agents = await _json(alpha, "get", "agents", "--json")
        assert "beta" not in [a["name"] for a in agents]  # a revoked agent leaves everyone's roster


async def test_join_with_a_damaged_or_wrong_invite_leaves_nothing_behind(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = unique_group("cli")
    beta = machine(kafka_broker, group, "beta", tmp_path / "beta")
    damaged = await run_cli(beta, "group", "join", "shoal-invite-1:not-really")
    assert damaged.code != 0 and "damaged" in (damaged.stderr + damaged.stdout)
    keyring = tmp_path / "beta" / "keyring.json"
    assert not keyring.exists() or "group-secret" not in keyring.read_text()


async def _json(env: dict[str, str], *args: str) -> object:
    result = await run_cli(env, *args)
    assert result.code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)
