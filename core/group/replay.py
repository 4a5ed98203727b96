"""`shoal replay`: a past sequence of one group topic, each envelope checked, without touching the live group.

A debugging tool must not change what it looks at, so the reader is a bare consumer: no consumer group (it
never joins one of the live members' groups, never commits an offset) and no producer (it sends nothing, not
even a heartbeat). It reads the announce topic from the beginning for the senders' keys (cards are
self-certifying, docs/protocol.md §3) and marks each envelope `verified`, `unknown-sender` or `bad-signature`
(or the reason it could not be read) instead of dropping it: a forged or damaged record is exactly what a
person replaying wants to see.

Reading is time-bounded: each partition stops at its end as it was when reading started (the high-water mark
of the first fetch; Tansu misreports `end_offsets` and `seek_to_end`, see /work/shared/KAFKA-TESTING.md), so
live traffic cannot keep a replay going. A start *time* is found by scanning from the beginning and filtering
on each record's timestamp (the envelope's `time` when the record has none): `offsets_for_times` would be
faster, but Tansu answers it with append times that do not match, so replay never relies on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import NetworkError, UserError
from core.group.envelope import ROSTER_ANNOUNCE, Envelope, EnvelopeRejected, parse
from core.group.replay_query import ReplayQuery, topic_name
from core.group.topics import topic as topic_of
from core.settings import GroupSettings
from core.timeline.ids import parse_iso

VERIFIED, UNKNOWN_SENDER, BAD_SIGNATURE, WRONG_GROUP = "verified", "unknown-sender", "bad-signature", "wrong-group"
SUMMARY_CHARS = 90
RAW_CHARS = 4096


@dataclass
class ReplayEntry:
    """One record of the replayed topic: where it was, its envelope (or what could be read of it) and status."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # the record's timestamp, ms since the epoch; -1 when it has none
    status: str  # verified | unknown-sender | bad-signature | wrong-group | a drop reason (malformed, …)
    envelope: dict[str, Any] = field(default_factory=dict)  # every attribute (only the readable ones if rejected)
    detail: str = ""
    sender: str = ""  # the sender's roster name ("" when no card names it)
    raw: str = ""  # the record value, for a record that is not an envelope

    def attr(self, name: str) -> str:
        value = self.envelope.get(name)
        return "" if value is None else str(value)

    @property
    def type(self) -> str:
        return self.attr("type")

    @property
    def data(self) -> dict[str, Any]:
        data = self.envelope.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    def moment(self) -> datetime | None:
        """When it was sent: the record's timestamp, else the envelope's `time`."""
        if self.timestamp >= 0:
            return datetime.fromtimestamp(self.timestamp / 1000, UTC)
        return parse_iso(self.attr("time"))

    def summary(self) -> str:
        return _shorten(summarize(self.type, self.envelope, self.data) if self.envelope.get("type") else self.raw)

    def row(self) -> dict[str, Any]:
        """The flat view a table shows (CLI, desktop)."""
        moment = self.moment()
        return {
            "partition": self.partition,
            "offset": self.offset,
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else "",
            "type": self.type,
            "sender": self.sender,
            "agentid": self.attr("agentid"),
            "id": self.attr("id"),
            "correlationid": self.attr("correlationid"),
            "causationid": self.attr("causationid"),
            "status": self.status,
            "detail": self.detail,
            "summary": self.summary(),
        }

    def to_json(self) -> dict[str, Any]:
        """One `--json` line: where the record was, its status, and the whole envelope as sent."""
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "status": self.status,
            "sendername": self.sender,
            "envelope": self.envelope,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.raw:
            out["raw"] = self.raw
        return out


@dataclass
class ReplayResult:
    topic: str
    entries: list[ReplayEntry]
    ends: dict[int, int]  # partition -> its end offset as of the start of reading
    scanned: int  # records of the topic read to find the entries


def summarize(event_type: str, attrs: dict[str, Any], data: dict[str, Any]) -> str:
    """A few words of the payload, by type, for a one-line listing."""
    if "dataref" in attrs and "data" not in attrs:
        return f"by reference ({attrs.get('datasize')} bytes)"
    short = event_type.removeprefix("shoal.")
    if short == "task.request":
        skill = f"skill={data.get('skill')} " if data.get("skill") else ""
        return f"{skill}input={_quoted(data.get('input'))}"
    if short == "task.result":
        error = data["error"] if isinstance(data.get("error"), dict) else {}
        return f"{data.get('status')} {_quoted(data.get('output') or error.get('message'))}"
    if short == "task.progress":
        return f"{data.get('state')}" + (f" {_quoted(data.get('delta'))}" if data.get("delta") else "")
    if short == "roster.announce":
        skills = ",".join(str(s.get("name")) for s in data.get("skills") or [] if isinstance(s, dict))
        return f"{data.get('name')} ({data.get('status')}){' skills=' + skills if skills else ''}"
    if short == "roster.leave":
        return f"leave ({data.get('reason')})"
    if short == "audit.record":
        return f"{len(data.get('records') or [])} audit records"
    if short == "memory.item":
        return _quoted(data.get("title") or data.get("text"))
    if short == "trace.span":
        return f"{data.get('name')} ({data.get('status')})"
    return ", ".join(sorted(data))


def _quoted(value: Any) -> str:
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


# --- reading ----------------------------------------------------------------------------------------------


@dataclass
class _Partition:
    """What to do with one partition: select entries (the replayed topic), learn keys (announce), or both."""

    tp: Any
    target: bool
    keys: bool
    first: int = 0  # first offset selected
    last: int | None = None  # last offset selected (--to), inclusive
    end: int | None = None  # the high-water mark at the first fetch: the end as of the start
    taken: list[ReplayEntry] = field(default_factory=list)
    done: bool = False


class _Reader:
    def __init__(self, settings: GroupSettings, query: ReplayQuery) -> None:
        from core.group.roster import Roster

        self.settings = settings
        self.query = query
        self.topic = topic_name(settings.name, query.topic)
        self.roster = Roster()
        self.names: dict[str, str] = {}
        self.roster.add_listener(lambda _change, member: self.names.__setitem__(member.agentid, member.name))
        self.pending: list[tuple[ReplayEntry, Envelope]] = []  # verified once every key is known
        self.scanned = 0

    async def plan(self, consumer: Any) -> dict[Any, _Partition]:
        from aiokafka import TopicPartition

        await consumer.topics()  # all metadata: asking for one topic would make some brokers create it
        numbers = sorted(consumer.partitions_for_topic(self.topic) or ())
        if not numbers:
            raise UserError(f"Topic {self.topic} does not exist.", _topics_hint(consumer, self.settings.name))
        chosen = sorted(self.query.start.offsets) or numbers
        missing = [p for p in chosen if p not in numbers]
        if missing:
            raise UserError(f"{self.topic} has no partition {missing[0]}.", f"Its partitions: {numbers}.")
        announce = topic_of(self.settings.name, "announce")
        plan: dict[Any, _Partition] = {}
        for number in sorted(consumer.partitions_for_topic(announce) or ()):
            tp = TopicPartition(announce, number)
            plan[tp] = _Partition(tp, target=False, keys=True)
        for number in chosen:
            tp = TopicPartition(self.topic, number)
            part = plan.setdefault(tp, _Partition(tp, target=True, keys=False))
            part.target = True
            part.first = self.query.start.offset_for(number) or 0
            part.last = self.query.stop.offset_for(number)
        return plan

    def take(self, part: _Partition, record: Any) -> None:
        envelope: Envelope | None = None
        rejected: EnvelopeRejected | None = None
        try:
            envelope = parse(record.value)
        except EnvelopeRejected as exc:
            rejected = exc
        if part.keys and envelope is not None and self.roster.is_roster_type(envelope.type):
            with contextlib.suppress(ValueError):  # a bad card teaches no key; it is still listed below
                self.roster.apply(envelope, replayed=True)
        if not part.target:
            return
        self.scanned += 1
        if record.offset < part.first or (part.last is not None and record.offset > part.last):
            return
        if rejected is not None:
            entry = self._entry(part, record, rejected.reason, rejected.attrs, rejected.detail)
            entry.raw = (record.value or b"").decode("utf-8", "replace")[:RAW_CHARS]
        else:
            assert envelope is not None
            entry = self._entry(part, record, "", envelope.attrs)
        if not self.query.in_time(entry.moment()):
            return
        if not self.query.selects(entry.type or None, entry.attr("correlationid") or None):
            return
        part.taken.append(entry)
        if envelope is not None:
            self.pending.append((entry, envelope))
        if self.query.limit is not None and len(part.taken) >= self.query.limit:
            part.done = True  # later ones of this partition cannot be among the first `limit` overall

    def _entry(
        self, part: _Partition, record: Any, status: str, attrs: dict[str, Any], detail: str = ""
    ) -> ReplayEntry:
        stamp = record.timestamp if isinstance(record.timestamp, int) and record.timestamp > 0 else -1
        return ReplayEntry(part.tp.topic, part.tp.partition, record.offset, stamp, status, dict(attrs), detail)

    def verify(self) -> None:
        """Each kept envelope's status, now that every announcement up to the end has been read."""
        for entry, envelope in self.pending:
            entry.sender = self.names.get(envelope.agentid, "")
            entry.status, entry.detail = self._check(envelope)

    def _check(self, envelope: Envelope) -> tuple[str, str]:
        from core.group.identity import PublicKey

        if envelope.group != self.settings.name:
            return WRONG_GROUP, f"envelope of group {envelope.group!r}"
        if envelope.type == ROSTER_ANNOUNCE:  # self-certifying: its own key, which must yield its agent id
            try:
                key = PublicKey(str(envelope.data.get("publickey", "")))
            except ValueError:
                return BAD_SIGNATURE, "the card's public key is not an Ed25519 key"
            if key.agent_id != envelope.agentid:
                return BAD_SIGNATURE, "the agent id is not the one its public key yields"
        else:
            known = self.roster.key_for(envelope.agentid)
            if known is None:
                return UNKNOWN_SENDER, "no announcement on the announce topic carries this agent's key"
            key = known
        return (VERIFIED, "") if envelope.verify(key) else (BAD_SIGNATURE, "the signature does not verify")

    def entries(self, plan: dict[Any, _Partition]) -> list[ReplayEntry]:
        """Partitions merged by time, each partition kept in offset order; the first `limit`."""
        streams = [part.taken for part in plan.values() if part.target]
        merged = list(heapq.merge(*streams, key=lambda e: e.moment() or datetime.min.replace(tzinfo=UTC)))
        return merged if self.query.limit is None else merged[: self.query.limit]


def _topics_hint(consumer: Any, group: str) -> str:
    prefix = topic_of(group, "")
    names = sorted(t.removeprefix(prefix) for t in consumer._client.cluster.topics() if t.startswith(prefix))
    if not names:
        return f"Group {group} has no topics on this cluster: check group.name and group.bootstrap_servers."
    return f"Topics of group {group}: {', '.join(names)}."


async def replay(settings: GroupSettings, query: ReplayQuery, *, timeout: float = 30.0) -> ReplayResult:
    """Read `query.topic` as described by `query` and return its entries, verified. Never produces, never
    joins a consumer group, never commits. Raises UserError (no such topic), NetworkError (broker)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    from core.group.kafka_config import consumer_kwargs, error_text

    reader = _Reader(settings, query)
    kwargs = consumer_kwargs(settings, None, earliest=True)
    kwargs.update(group_id=None, enable_auto_commit=False, auto_offset_reset="none")
    consumer = AIOKafkaConsumer(**kwargs)
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            plan = await reader.plan(consumer)
            consumer.assign(list(plan))
            for part in plan.values():
                if part.keys or not part.first:  # announce: every key, from the first card on
                    await consumer.seek_to_beginning(part.tp)
                else:
                    consumer.seek(part.tp, part.first)
            await _drain(consumer, plan, reader)
    except TimeoutError:
        raise NetworkError(
            f"Replaying {reader.topic} did not finish within {timeout:g} s.",
            "Check the broker (`shoal group test`), or narrow the replay (--from, --limit) or raise --timeout.",
        ) from None
    except KafkaError as exc:
        raise NetworkError(
            f"Cannot read {reader.topic}: {error_text(exc)}",
            "Check group.bootstrap_servers and the connection (`shoal group test`).",
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    reader.verify()
    ends = {part.tp.partition: part.end or 0 for part in plan.values() if part.target}
    return ReplayResult(reader.topic, reader.entries(plan), ends, reader.scanned)


async def _drain(consumer: Any, plan: dict[Any, _Partition], reader: _Reader) -> None:
    """Fetch until every partition reached its end as of the start (or its --to, or its share of --limit)."""
    from aiokafka.errors import OffsetOutOfRangeError

    while not all(part.done for part in plan.values()):
        try:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
        except OffsetOutOfRangeError as exc:  # a start offset past the end, or below what retention kept
            await _out_of_range(consumer, exc.args[0] if exc.args else {}, plan)
            continue
        for tp, records in batch.items():
            part = plan[tp]
            if part.end is None:
                part.end = consumer.highwater(tp)
            for record in records:
                if not part.done and (part.end is None or record.offset < part.end):
                    reader.take(part, record)
        for part in plan.values():
            await _settle(consumer, part)


async def _settle(consumer: Any, part: _Partition) -> None:
    """Mark a partition done once its position reached its end (the end is learnt from the first fetch, empty
    or not: the broker sends the high-water mark with every answer)."""
    if not part.done:
        if part.end is None:
            part.end = consumer.highwater(part.tp)
        if part.end is None:
            return
        stop = part.end if part.last is None else min(part.end, part.last + 1)
        part.done = await consumer.position(part.tp) >= stop
    if part.done and part.tp not in consumer.paused():
        consumer.pause(part.tp)


async def _out_of_range(consumer: Any, offsets: dict[Any, int], plan: dict[Any, _Partition]) -> None:
    """An offset below the log start means "from the oldest kept"; one past the end means "nothing"."""
    for tp, offset in offsets.items():
        earliest = (await consumer.beginning_offsets([tp])).get(tp, 0)
        if offset < earliest:
            await consumer.seek_to_beginning(tp)
        elif tp in plan:
            plan[tp].done = True
            consumer.pause(tp)
