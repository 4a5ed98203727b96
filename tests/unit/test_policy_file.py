"""The policy file's loader (errors name the file and the line) and token quotas over real SQLite (reset when
the period rolls over, kept across a restart)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.errors import ConfigError, QuotaExceeded
from core.policy.engine import PolicyEngine
from core.policy.loader import load_policy, parse_policy, policy_path, read_policy
from core.policy.quotas import QuotaBook
from core.settings import load_settings
from core.timeline.db import Database
from core.timeline.migrations import migrate

PATH = Path("/cfg/policy.toml")
GOOD = """\
version = 1

[[rules]]
name = "first"
effect = "allow"
action = "model"

[[rules]]  # the second rule
name = "second"
effect = "deny"
action = "tool"
target = "shell"
"""


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, PATH)
    return caught.value


def test_a_valid_file_records_where_each_table_starts() -> None:
    loaded = parse_policy(GOOD, PATH)
    assert [r.name for r in loaded.policy.rules] == ["first", "second"]
    assert loaded.lines == {("rules", 0): 3, ("rules", 1): 8}


def test_a_toml_syntax_error_names_the_line() -> None:
    bad = GOOD.replace('target = "shell"', 'target = "shell')
    error = error_of(bad)
    assert error.message.startswith("/cfg/policy.toml, line 12: not valid TOML")
    assert "shoal policy validate" in error.fix


def test_a_schema_error_names_the_line_of_the_key() -> None:
    error = error_of(GOOD.replace('effect = "deny"', 'effect = "permit"'))
    assert error.message.startswith("/cfg/policy.toml, line 10: rules[2].effect:"), error.message
    assert "'permit'" in error.message


def test_a_missing_key_names_the_tables_header_and_an_unknown_key_its_own_line() -> None:
    missing = error_of(GOOD.replace('action = "tool"\n', ""))
    assert missing.message.startswith("/cfg/policy.toml, line 8: rules[2].action: Field required"), missing.message
    unknown = error_of(GOOD.replace('target = "shell"', 'target = "shell"\ncolour = "red"'))
    assert unknown.message.startswith("/cfg/policy.toml, line 13: rules[2].colour: unknown key"), unknown.message


def test_bad_labels_regexes_rates_and_names_are_refused_with_their_line() -> None:
    label = error_of(GOOD + 'max_label = "top"\n')
    assert "line 13: rules[2].max_label: unknown label 'top'" in label.message
    regex = error_of(GOOD + '\n[[classify]]\nname = "c"\npattern = "(unclosed"\nlabel = "secret"\n')
    assert "line 16: classify[1].pattern: pattern is not a valid regular expression" in regex.message
    rate = error_of('[[rate_limits]]\nname = "r"\nscope = "tool"\nburst = 2\n')
    assert "line 1: rate_limits[1]: give exactly one of `rate` (per second) or `per_minute`" in rate.message
    twice = error_of(GOOD.replace('name = "second"', 'name = "first"'))
    assert "line 9: rules[2].name: another [[rules]] table is already named 'first'" in twice.message
    reserved = error_of(GOOD.replace('name = "second"', 'name = "builtin:x"'))
    assert "reserved for built-in rules" in reserved.message
    version = error_of("version = 2\n" + GOOD.removeprefix("version = 1\n"))
    assert "line 1: version:" in version.message
    risk = error_of(GOOD.replace('action = "model"', 'action = "model"\nrisk = "high"'))
    assert "line 3: rules[1]: `risk` applies to tool rules only" in risk.message


def test_the_default_file_is_optional_but_a_configured_one_is_not(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    settings = load_settings(config).settings
    assert policy_path(settings, config) == tmp_path / "policy.toml"
    engine = load_policy(settings, config_file=config)  # no policy.toml: built-in rules only
    assert engine.file is None and engine.entries[0].ref.name == "builtin:local-model"
    (tmp_path / "policy.toml").write_text(GOOD)
    assert load_policy(settings, config_file=config).entries[0].ref.name == "first"
    named = load_settings(config, {"policy": {"file": str(tmp_path / "missing.toml")}}).settings
    with pytest.raises(ConfigError, match=r"missing\.toml does not exist"):
        load_policy(named, config_file=config)
    off = load_settings(config, {"policy": {"enabled": False}}).settings
    assert load_policy(off, config_file=config).entries[0].ref.name.startswith("builtin:policy-off")
    with pytest.raises(ConfigError, match="does not exist"):
        read_policy(tmp_path / "nope.toml")


QUOTAS = """
[[quotas]]
name = "openrouter-daily"
scope = "provider"
target = "openai:openrouter.ai"
tokens = 1000
period = "day"

[[quotas]]
name = "peers-monthly"
scope = "peer"
target = "peer:*"
tokens = 500
period = "month"
"""
TZ = timezone(timedelta(hours=2))


async def test_quotas_refuse_when_used_up_reset_with_the_period_and_survive_a_restart(tmp_path: Path) -> None:
    loaded = parse_policy(QUOTAS, PATH)
    engine = PolicyEngine.from_policy(loaded.policy, lines=loaded.lines, file=PATH)
    now = [datetime(2026, 11, 30, 23, 50, tzinfo=TZ)]
    db = Database(tmp_path / "q.db", migrate=migrate)
    await db.start()
    book = QuotaBook(db, engine, clock=lambda: now[0])
    router, names = "openai:openrouter.ai", ("openai:openrouter.ai",)
    await book.check("provider", router, names)
    await book.record("provider", router, names, 600)
    await book.check("provider", router, names)  # 600 of 1000: still allowed
    await book.record("provider", router, names, 450)  # the call that crosses the line is counted
    with pytest.raises(QuotaExceeded) as caught:
        await book.check("provider", router, names)
    used_up = "Quota 'openrouter-daily' (policy.toml line 2) is used up: 1,050 of 1,000 tokens today"
    assert used_up in caught.value.message
    assert caught.value.fix.startswith("It resets at 2026-12-01 00:00.")
    await book.check("provider", "openai:api.openai.com", ("openai:api.openai.com",))  # another target: no quota
    await db.stop()

    db = Database(tmp_path / "q.db", migrate=migrate)  # a restart: usage is read back from SQLite
    await db.start()
    book = QuotaBook(db, engine, clock=lambda: now[0])
    with pytest.raises(QuotaExceeded):
        await book.check("provider", router, names)
    usage = {(u.name, u.target): u for u in await book.usage()}
    daily = usage["openrouter-daily", router]
    assert daily.used == 1050 and daily.resets == "2026-12-01 00:00"
    assert usage["peers-monthly", "peer:*"].used == 0
    now[0] += timedelta(minutes=15)  # past local midnight: a new day
    await book.check("provider", router, names)
    assert {u.name: u.used for u in await book.usage()}["openrouter-daily"] == 0

    peer, peer_names = "peer:id-alice", ("peer:alice", "peer:id-alice")
    await book.record("peer", peer, peer_names, 500)
    with pytest.raises(QuotaExceeded, match=r"peers-monthly.*500 of 500 tokens this month for peer:id-alice") as month:
        await book.check("peer", peer, peer_names)
    assert month.value.fix.startswith("It resets at 2027-01-01 00:00.")
    await book.check("peer", "peer:id-bob", ("peer:bob", "peer:id-bob"))  # each peer has its own allowance
    now[0] = datetime(2027, 1, 1, 0, 0, tzinfo=TZ)
    await book.check("peer", peer, peer_names)
    await db.stop()


def test_line_numbers_skip_multiline_strings_and_follow_quoted_and_dotted_headers() -> None:
    in_string = error_of('[[rules]]\nname = "a"\neffect = "allow"\naction = "tool"\ndescription = """\nsee\n'
                         '[[rules]]\n"""\n\n[[rules]]\nname = "b"\neffect = "permit"\naction = "tool"\n')  # fmt: skip
    assert in_string.message.startswith("/cfg/policy.toml, line 12: rules[2].effect"), in_string.message
    quoted = error_of('[["rules"]]\nname = "a"\neffect = "allow"\naction = "tool"\n\n[[ \'rules\' ]]\nname = "b"\n'
                      'effect = "permit"\naction = "tool"\n')  # fmt: skip
    assert quoted.message.startswith("/cfg/policy.toml, line 8: rules[2].effect"), quoted.message
    dotted = error_of('[[rules]]\nname = "a"\neffect = "allow"\naction = "tool"\n# extra\n[rules.extra]\nx = 1\n')
    assert dotted.message.startswith("/cfg/policy.toml, line 6: rules[1].extra: unknown key"), dotted.message
    text = (
        "[[rules]]\nname = \"a\"\neffect = \"allow\"\naction = \"tool\"\ndescription = '''\n[[rules]]\n'''\n"
        '[["rules"]]\nname = "b"\neffect = "deny"\naction = "tool"\n'
    )
    loaded = parse_policy(text, PATH)
    assert loaded.lines == {("rules", 0): 1, ("rules", 1): 8}


async def test_quota_reservations_are_atomic_and_settle_to_the_real_usage(tmp_path: Path) -> None:
    loaded = parse_policy(QUOTAS, PATH)
    engine = PolicyEngine.from_policy(loaded.policy, lines=loaded.lines, file=PATH)
    db = Database(tmp_path / "r.db", migrate=migrate)
    await db.start()
    book = QuotaBook(db, engine)
    router = [("provider", "openai:openrouter.ai", ("openai:openrouter.ai",))]
    results = await asyncio.gather(*(book.reserve(router, 600) for _ in range(5)))
    granted = [r for r, over in results if r is not None]
    refused = [over for r, over in results if over is not None]
    assert len(granted) == 2 and len(refused) == 3  # 0 + 600 passes, 600 + 600 passes, then 1,200 is used up
    assert "openrouter-daily" in refused[0][1].message
    await book.settle(granted[0], 100)  # the call used less than its estimate
    await book.settle(granted[1], None)  # it failed without saying: the estimate stands
    assert {u.name: u.used for u in await book.usage()}["openrouter-daily"] == 700
    both = [*router, ("peer", "peer:id-alice", ("peer:alice", "peer:id-alice"))]
    reservation, over = await book.reserve(both, 50)
    assert over is None and reservation is not None and len(reservation.rows) == 2
    await db.stop()
