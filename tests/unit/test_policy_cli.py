"""`shoal policy …` and `--label`, as a person runs them (a real `shoal` process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.unit.test_cli import shoal

RULES = """\
version = 1

[[rules]]
name = "alice-may-fetch"
effect = "allow"
action = "tool"
target = "web_fetch"
requester = "peer:alice"

[[rules]]
name = "no-shell-for-peers"
effect = "deny"
action = "tool"
target = "shell"
requester = "peer:*"
"""


def policy_file(text: str | None = None) -> Path:
    path = Path(os.environ["SHOAL_CONFIG"]).parent / "policy.toml"
    if text is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def test_check_names_the_deciding_rule_with_its_line_and_the_rules_considered() -> None:
    path = policy_file(RULES)
    result = shoal("policy", "check", "--action", "tool", "--target", "shell", "--requester", "peer:bob")
    assert result.returncode == 0, result.stderr
    assert "DENY: peer:bob using the high-risk tool shell" in result.stdout
    assert "decided by rule 'no-shell-for-peers' (policy.toml line 10)" in result.stdout
    assert "rule 'alice-may-fetch' (policy.toml line 3): target shell does not match web_fetch" in result.stdout
    data = json.loads(shoal("policy", "check", "--action", "tool", "--target", "shell", "--json").stdout)
    assert (data["effect"], data["rule"], data["risk"]) == ("ask", "builtin:high-risk-ask", "high")
    assert data["file"] == str(path) and data["considered"][0]["rule"] == "alice-may-fetch"
    model = shoal("policy", "check", "--action", "model", "--target", "openai:api.openai.com", "--label", "secret")
    assert "DENY: sending secret data to the model openai:api.openai.com" in model.stdout
    assert "built-in rule 'builtin:remote-model'" in model.stdout


def test_show_lists_the_users_rules_first_then_the_builtin_defaults() -> None:
    policy_file(RULES)
    data = json.loads(shoal("policy", "show", "--json").stdout)
    names = [row["rule"] for row in data["rules"]]
    assert names[:3] == ["alice-may-fetch", "no-shell-for-peers", "builtin:local-model"]
    assert data["rules"][0]["origin"] == "policy.toml line 3" and data["default_label"] == "internal"
    text = shoal("policy", "show").stdout
    assert text.index("alice-may-fetch") < text.index("builtin:remote-model")


def test_validate_reports_the_line_of_a_mistake_and_exits_3() -> None:
    path = policy_file(RULES.replace('effect = "deny"', 'effect = "nope"'))
    bad = shoal("policy", "validate")
    assert bad.returncode == 3 and f"{path}, line 12: rules[2].effect" in bad.stderr
    policy_file(RULES)
    good = shoal("policy", "validate", str(path))
    assert good.returncode == 0 and "valid (2 rules" in good.stdout
    start = shoal("agent", "-m", "hi")  # the same mistake stops any command that builds the agent
    policy_file("[[rules]\n")
    broken = shoal("agent", "-m", "hi")
    assert broken.returncode == 3 and "line 1: not valid TOML" in broken.stderr, (start.stderr, broken.stderr)


def test_init_writes_a_valid_example_and_never_overwrites() -> None:
    path = policy_file()
    first = shoal("policy", "init")
    assert first.returncode == 0 and path.exists() and "[[quotas]]" in path.read_text()
    assert shoal("policy", "validate").returncode == 0
    path.write_text("# mine\n")
    again = shoal("policy", "init")
    assert again.returncode == 2 and "already exists" in again.stderr and path.read_text() == "# mine\n"


def test_usage_shows_each_quota_and_when_it_resets() -> None:
    policy_file('[[quotas]]\nname = "router"\nscope = "provider"\ntarget = "openai:openrouter.ai"\ntokens = 200000\n'
                'period = "month"\n')  # fmt: skip
    result = shoal("policy", "usage")
    assert result.returncode == 0, result.stderr
    assert "router (provider openai:openrouter.ai): 0 / 200,000 tokens this month" in result.stdout
    assert "resets at " in result.stdout and "-01 00:00" in result.stdout


def test_agent_label_keeps_a_confidential_message_off_a_remote_endpoint() -> None:
    env = {
        "SHOAL_MODEL__PROVIDER": "openai",
        "SHOAL_MODEL__BASE_URL": "http://203.0.113.9:9/v1",  # not loopback; sending would fail with exit 4
        "SHOAL_MODEL__NAME": "gpt-test",
        "SHOAL_MODEL__TIMEOUT": "3",
        "SHOAL_API_KEY": "sk-test-key-000",
    }
    result = shoal("agent", "-m", "my test results", "--label", "confidential", env=env)
    assert result.returncode == 2, result.stderr
    assert "PolicyDenied" in result.stderr or "builtin:remote-model" in result.stderr


def test_check_says_when_a_tools_risk_is_assumed_and_how_to_check_another() -> None:
    policy_file(RULES)
    result = shoal("policy", "check", "--action", "tool", "--target", "my_mcp_search", "--requester", "peer:bob")
    assert result.returncode == 0, result.stderr
    assert "DENY: peer:bob using the high-risk tool my_mcp_search" in result.stdout
    assert "not a built-in tool, so it was checked as high risk" in result.stdout and "--risk" in result.stdout
    data = json.loads(shoal("policy", "check", "--action", "tool", "--target", "my_mcp_search", "--json").stdout)
    assert "readOnlyHint" in data["note"]
    known = json.loads(shoal("policy", "check", "--action", "tool", "--target", "read_file", "--json").stdout)
    assert known["risk"] == "low" and "note" not in known
