"""kshark's pure parts: certificate names and expiry, the raw ApiVersions exchange, the topic layout against
§5, consumer-group verdicts, the time budget, and the report's renderings and exit codes."""

from __future__ import annotations

import asyncio
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.errors import ConfigError
from core.group import topics as tp
from core.group.kshark import certs, groups, layout, report, wire
from core.settings import GroupSettings

SCHEMA = json.loads((Path(__file__).parents[2] / "resources/schemas/kshark.schema.json").read_text())
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _cert(dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), cn: str = "", days: float = 300) -> certs.Certificate:
    return certs.Certificate(
        subject=f"CN={cn}" if cn else "",
        issuer="CN=test CA",
        common_name=cn,
        dns_names=dns,
        ip_names=ips,
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=days),
    )


# -- certificates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert", "host", "expected"),
    [
        (_cert(dns=("kafka.example.com",)), "KAFKA.example.com", True),
        (_cert(dns=("*.example.com",)), "b1.example.com", True),
        (_cert(dns=("*.example.com",)), "a.b1.example.com", False),  # a wildcard covers one label
        (_cert(dns=("*.example.com",)), "example.com", False),
        (_cert(dns=("*.com",)), "example.com", False),  # no wildcard over a public suffix-like single label
        (_cert(dns=("kafka.example.com",), ips=("10.0.0.5",)), "10.0.0.5", True),
        (_cert(dns=("10.0.0.5",)), "10.0.0.5", False),  # an IP only matches IP entries
        (_cert(cn="kafka.example.com"), "kafka.example.com", True),  # CN counts without DNS entries
        (_cert(cn="kafka.example.com", ips=("10.0.0.5",)), "kafka.example.com", True),
        (_cert(dns=("other.example.com",), cn="kafka.example.com"), "kafka.example.com", False),
    ],
)
def test_certificate_names_match_like_openssl(cert: certs.Certificate, host: str, expected: bool) -> None:
    assert certs.matches(cert, host) is expected


def test_certificate_judgement_expiry_first_then_names() -> None:
    expired = _cert(dns=("k",), days=-2)
    assert certs.judge(expired, "k", check_hostname=True, now=NOW)[0] == "fail"
    assert "expired" in certs.judge(expired, "k", check_hostname=True, now=NOW)[1]
    assert "expired 2 days ago" in certs.describe(expired, NOW)
    early = certs.Certificate("", "", "", ("k",), (), NOW + timedelta(days=1), NOW + timedelta(days=90))
    status, hint = certs.judge(early, "k", check_hostname=True, now=NOW)
    assert status == "fail" and "clocks" in hint

    other = _cert(dns=("other.example",))
    status, hint = certs.judge(other, "localhost", check_hostname=True, now=NOW)
    assert status == "fail" and "other.example" in hint
    status, hint = certs.judge(other, "localhost", check_hostname=False, now=NOW)
    assert status == "warn" and "ssl_check_hostname is off" in hint

    soon = _cert(dns=("k",), days=13.5)
    assert certs.judge(soon, "k", check_hostname=True, now=NOW) == (
        "warn",
        f"The certificate expires soon. {certs.RENEW_HINT}",
    )
    assert "expires in 13 days" in certs.describe(soon, NOW)
    assert certs.judge(_cert(dns=("k",), days=14.5), "k", check_hostname=True, now=NOW) == ("ok", "")


# -- the raw ApiVersions -----------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None


async def _ask(answer: bytes, *, eof: bool = True) -> tuple[wire.Answer, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(answer)
    if eof:
        reader.feed_eof()
    writer = _Writer()
    return await wire.ask(reader, writer, "shoal-test"), writer.sent  # type: ignore[arg-type]


def _kafka_answer(correlation: int = wire.CORRELATION_ID, error: int = 0) -> bytes:
    apis = [(0, 0, 11), (3, 0, 12), (18, 0, 4)]
    body = struct.pack(">ihi", correlation, error, len(apis)) + b"".join(struct.pack(">hhh", *a) for a in apis)
    return struct.pack(">i", len(body)) + body


async def test_api_versions_request_and_a_kafka_answer() -> None:
    answer, sent = await _ask(_kafka_answer())
    size, key, version, correlation, name_len = struct.unpack_from(">ihhih", sent)
    assert (key, version, correlation) == (18, 0, wire.CORRELATION_ID) and size == len(sent) - 4
    assert sent[14 : 14 + name_len] == b"shoal-test"
    assert answer.speaks == "kafka" and answer.apis[3] == (0, 12)
    assert answer.summary() == "3 APIs, Metadata v0–v12"


@pytest.mark.parametrize(
    ("data", "speaks"),
    [
        (b"", "closed"),
        (b"\x15\x03\x03\x00\x02\x02\x46", "tls"),  # a TLS alert record
        (b"\x16\x03\x01\x00\x10", "tls"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "other"),  # size field far beyond any ApiVersions answer
        (b"\x00\x00", "other"),
        (_kafka_answer(correlation=7), "other"),
        (struct.pack(">i", 40) + b"\x00" * 10, "other"),  # cut short
    ],
)
async def test_answers_that_are_not_kafka(data: bytes, speaks: str) -> None:
    answer, _ = await _ask(data)
    assert answer.speaks == speaks


async def test_a_kafka_error_answer_is_still_kafka() -> None:
    answer, _ = await _ask(_kafka_answer(error=35))
    assert answer.speaks == "kafka" and answer.error_code == 35


# -- topics against §5 -------------------------------------------------------------------------------------


def _group(**values: Any) -> GroupSettings:
    return GroupSettings(name="team", bootstrap_servers=["k:9092"], partitions=6, **values)


def test_topic_rows_against_the_protocol() -> None:
    settings = _group(skills=[{"name": "coder", "description": "x"}])
    expected = {s.name: s.partitions for s in tp.group_topics(settings)}
    present = dict(expected)
    present["group.team.announce"] = 4  # auto-created by a producer
    present["group.team.traces"] = 3  # made by another implementation
    present["group.team.skill.other.requests"] = 2  # a peer's queue
    del present["group.team.memory"]
    rows = {r["name"]: r for r in layout._rows(settings, present)}
    assert rows["group.team.announce"]["status"] == "wrong" and rows["group.team.announce"]["expected"] == 1
    assert rows["group.team.traces"]["status"] == "differs"
    assert rows["group.team.skill.other.requests"]["status"] == "extra"
    assert rows["group.team.memory"] == {
        "name": "group.team.memory",
        "partitions": None,
        "expected": 1,
        "status": "missing",
    }
    assert rows["group.team.skill.coder.requests"] == {
        "name": "group.team.skill.coder.requests",
        "partitions": 6,
        "expected": 6,
        "status": "ok",
    }


# -- consumer groups ---------------------------------------------------------------------------------------


def _facts(members: int, parts: list[tuple[int, int | None]], state: str = "Stable") -> groups.GroupFacts:
    rows = [
        {"topic": "group.team.skill.coder.requests", "partition": i, "committed": c, "highwater": h,
         "lag": None if h is None else max(0, h - c)}
        for i, (c, h) in enumerate(parts)
    ]  # fmt: skip
    return groups.GroupFacts("shoal.team.skill.coder", state, [{"member_id": f"m{i}"} for i in range(members)], rows)


@pytest.mark.parametrize(
    ("facts", "status", "words"),
    [
        (_facts(1, [(5, 5), (2, 9)]), "ok", "lag 7 over 2 committed partition(s) (skill.coder.requests[1]=7)"),
        (_facts(0, [(2, 9)]), "warn", "no member takes them"),
        (_facts(0, [(9, 9)]), "ok", "0 member(s), lag 0"),
        (_facts(2, [(12, 3)]), "warn", "lost data"),
        (_facts(1, [(1, None)]), "warn", "larger --timeout"),
        (_facts(0, [], state="error 16"), "warn", "DESCRIBE"),
    ],
)
def test_consumer_group_lines(facts: groups.GroupFacts, status: str, words: str) -> None:
    (line,) = groups.lines([facts], _group(), 3.0)
    assert line.status == status and line.kind == "consumer_group", line
    assert words in line.detail + line.hint
    assert line.data["group"] == "shoal.team.skill.coder" and line.data["lag"] == facts.lag


def test_an_agent_inbox_group_reads_by_assignment() -> None:
    inbox = groups.GroupFacts("shoal.team.agent.abc", "Empty", [], _facts(0, [(2, 9)]).partitions)
    (line,) = groups.lines([inbox], _group(), 1.0)
    assert line.status == "ok" and "Empty, reads by assignment, lag 7" in line.detail


def test_no_consumer_groups_and_too_many() -> None:
    (none,) = groups.lines([], _group(), 1.0)
    assert none.status == "warn" and "shoal.team.*" in none.detail and "group.name" in none.hint
    many = [groups.GroupFacts(f"shoal.team.agent.{i}", "Stable", [], []) for i in range(groups.MAX_LINES + 3)]
    out = groups.lines(many, _group(), 1.0)
    assert len(out) == groups.MAX_LINES + 1 and "3 more consumer group(s)" in out[-1].detail
    assert len(out[-1].data["groups"]) == 3


# -- the budget and the report -----------------------------------------------------------------------------


async def test_timed_turns_every_outcome_into_a_check() -> None:
    budget = report.Budget(10, 0.2)

    async def warns() -> str:
        raise report.Failed("slow", "wait", "warn", {"x": 1})

    async def hangs() -> str:
        await asyncio.sleep(5)
        return "never"

    async def config() -> str:
        raise ConfigError("bad file", "fix it")

    async def bug() -> str:
        raise KeyError("boom")

    warned = await report.timed("W", "tcp", budget, warns, "h:1")
    assert (warned.status, warned.hint, warned.data, warned.server) == ("warn", "wait", {"x": 1}, "h:1")
    timed_out = await report.timed("T", "tcp", budget, hangs)
    assert timed_out.status == "fail" and "0.2 s" in timed_out.detail and "firewall" in timed_out.hint
    assert timed_out.duration_ms < 1000
    assert (await report.timed("C", "x", budget, config)).hint == "fix it"
    assert "KeyError" in (await report.timed("B", "x", budget, bug)).detail

    short = report.Budget(0.3, 5)
    cut = await report.timed("cut", "metadata", short, hangs)
    assert cut.status == "fail" and "all that was left of the run's 0.3 s" in cut.detail and "--timeout" in cut.hint

    spent = report.Budget(0.01, 1)
    await asyncio.sleep(0.02)
    skipped = await report.timed("late", "probe", spent, warns)
    assert skipped.status == "skip" and "time budget is spent" in skipped.detail


def test_verdict_exit_codes_text_and_json() -> None:
    checks = [
        report.Check("DNS a", "ok", "a → 1.2.3.4", duration_ms=1.2, kind="dns", server="a:1"),
        report.Check("TCP a:1", "fail", "refused", "start the broker", 0.4, "tcp", "a:1"),
        report.Check("Kafka metadata", "skip", "no bootstrap server answers Kafka requests", kind="metadata"),
    ]
    text = report.summarize(checks)
    assert "✓ DNS a: a → 1.2.3.4" in text and "→ start the broker" in text
    assert text.splitlines()[-1] == "Result: FAIL (1 ok, 1 fail, 1 skip)"
    assert report.exit_code(checks) == report.EXIT_FAIL == 2
    warned = [checks[0], report.Check("Group topics", "warn", "missing", kind="topics")]
    assert report.exit_code(warned) == 0 and report.exit_code(warned, strict=True) == 1
    assert report.overall([report.Check("x", "skip", "")]) == "ok"

    meta = {"group": "team", "security_protocol": "PLAINTEXT", "bootstrap_servers": ["a:1"], "probe": True,
            "timeout_s": 5.0, "budget_s": 15.0}  # fmt: skip
    data = json.loads(report.to_json(checks, meta=meta))
    Draft202012Validator(SCHEMA).validate(data)
    assert data["status"] == "fail" and data["exit_code"] == 2 and data["counts"]["skip"] == 1
    assert data["checks"][1]["hint"] == "start the broker" and data["checks"][2]["server"] is None
    assert data["started"].endswith("Z")


@pytest.mark.parametrize(
    ("server", "expected"),
    [("k1:9093", ("k1", 9093)), ("k1", ("k1", 9092)), ("[::1]:9094", ("::1", 9094)), ("[::1]", ("::1", 9092))],
)
def test_split_server(server: str, expected: tuple[str, int]) -> None:
    from core.group.kafka_config import split_server

    assert split_server(server) == expected
