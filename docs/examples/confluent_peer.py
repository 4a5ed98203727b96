#!/usr/bin/env python3
"""A foreign Shoal peer written from docs/protocol.md alone, with confluent-kafka (+ cryptography for Ed25519).

It serves one skill from its work queue: `upper` answers the input uppercased, `reverse` answers it reversed.
Section numbers in the comments (§n) refer to docs/protocol.md.

    python docs/examples/confluent_peer.py --bootstrap localhost:9092 --group demo --skill reverse
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL = "1.0"  # the schemaversion we send; we process any 1.x (§2 reading rules)
MAX_RECORD = 1024 * 1024  # larger records are dropped as too-large (§2)
UNKNOWN_SENDER_WAIT = 5.0  # hold a request from an agent the roster does not know yet for this long (§3)
# fmt: off
REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "group", "agentid",
            "correlationid", "traceparent", "schemaversion", "zone", "signature")  # every envelope carries these (§2)
# fmt: on
SKILLS = {"upper": str.upper, "reverse": lambda text: text[::-1]}


# -- envelopes (§1-§3) -------------------------------------------------------------------------------------


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """32 hex characters, time-sortable: 48 bits of Unix milliseconds, then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def agent_id_of(publickey_b64: str) -> str:
    """§1: lowercase hex SHA-256 of the raw 32-byte public key, first 24 characters."""
    return hashlib.sha256(base64.b64decode(publickey_b64)).hexdigest()[:24]


def canonical(envelope: dict[str, Any]) -> bytes:
    """§3: sorted keys, no whitespace, non-ASCII unescaped, without the signature member."""
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify(envelope: dict[str, Any], publickey_b64: str) -> bool:
    signature = envelope.get("signature")
    if not isinstance(signature, str) or not signature.startswith("ed25519:"):
        return False
    encoded = signature.removeprefix("ed25519:")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))  # base64url without padding
        Ed25519PublicKey.from_public_bytes(base64.b64decode(publickey_b64)).verify(raw, canonical(envelope))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


class Identity:
    """Our key pair, agent id and group: builds signed envelopes."""

    def __init__(self, group: str, name: str, zone: str) -> None:
        self.key = Ed25519PrivateKey.generate()  # a real peer keeps it in a keyring; this one is ephemeral
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.publickey = base64.b64encode(raw).decode()
        self.agentid = agent_id_of(self.publickey)
        self.group, self.name, self.zone = group, name, zone

    def envelope(self, type_: str, data: dict[str, Any], trace_id: str | None = None, **attrs: str) -> dict[str, Any]:
        """A signed envelope; attrs: correlationid (default: its own id), causationid, recipient."""
        eid = new_id()
        envelope = {
            "specversion": "1.0",
            "id": eid,
            "source": f"shoal://{self.group}/{self.agentid}",
            "type": type_,
            "time": utcnow(),
            "datacontenttype": "application/json",
            "dataschema": f"urn:shoal:schema:{type_}:1",
            "data": data,
            "group": self.group,
            "agentid": self.agentid,
            "correlationid": eid,  # envelopes outside a task (announce, leave, audit) are a conversation of one
            # Our own span: the caller's trace id (or a new trace) and a new span id.
            "traceparent": f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            "schemaversion": PROTOCOL,
            "zone": self.zone,
        }
        envelope.update({k: v for k, v in attrs.items() if v})
        signature = self.key.sign(canonical(envelope))
        envelope["signature"] = "ed25519:" + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        return envelope


def headers(envelope: dict[str, Any]) -> list[tuple[str, bytes]]:
    """§5: CloudEvents Kafka-binding headers, a convenience for tools (receivers trust only the signed value)."""
    pairs = {"content-type": "application/cloudevents+json; charset=UTF-8"}
    for name in ("specversion", "id", "source", "type", "time", "agentid", "correlationid", "zone", "recipient"):
        if name in envelope:
            pairs[f"ce_{name}"] = envelope[name]
    pairs["traceparent"] = envelope["traceparent"]
    return [(k, str(v).encode()) for k, v in pairs.items()]


def summary(envelope: dict[str, Any], topic: str) -> dict[str, Any]:
    """The envelope reference an audit record carries (§4 shoal.audit.record)."""
    names = ("id", "type", "agentid", "correlationid", "causationid", "traceparent", "recipient")
    return {**{n: envelope[n] for n in names if n in envelope}, "topic": topic}


def parse(value: bytes | None, group: str) -> tuple[dict[str, Any] | None, str | None]:
    """The §2 reading rules that need no key: (envelope, None) or (envelope-or-None, drop reason)."""
    if value is None:
        return None, "malformed"
    if len(value) > MAX_RECORD:
        return None, "too-large"
    try:
        envelope = json.loads(value)
    except ValueError:  # includes bad UTF-8
        return None, "malformed"
    if not isinstance(envelope, dict) or any(name not in envelope for name in REQUIRED):
        return None, "malformed"
    if envelope["group"] != group:
        return envelope, "wrong-group"
    if str(envelope["schemaversion"]).split(".")[0] != PROTOCOL.split(".")[0]:
        return envelope, "unsupported-version"
    if not isinstance(envelope.get("data"), dict):  # no artifact store here: `dataref` payloads are not fetched
        return envelope, "malformed"
    return envelope, None


def seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- the peer ----------------------------------------------------------------------------------------------


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.skill = args, args.skill
        self.me = Identity(args.group, args.name or f"confluent-{args.skill}", args.zone)
        self.topic = {s: f"group.{args.group}.{s}" for s in ("announce", "progress", "responses", "audit")}
        self.queue = f"group.{args.group}.skill.{args.skill}.requests"
        self.roster: dict[str, dict[str, Any]] = {}  # agentid -> {"publickey", "heard" (epoch s), "ttl" (s)}
        # request id -> its result record. In memory only: a real peer keeps it on disk (a restart must not rerun).
        self.handled: dict[str, tuple[str, bytes, bytes, list]] = {}
        self.started, self.next_beat, self.stopping = utcnow(), 0.0, False
        common = {"bootstrap.servers": args.bootstrap, **dict(args.extra)}
        consumer = {
            **common,
            "fetch.wait.max.ms": args.fetch_max_wait_ms,
            "socket.timeout.ms": args.request_timeout_ms,
            "enable.auto.commit": False,
        }
        self.create_topics(common)
        self.producer = Producer({**common, "linger.ms": args.linger_ms, "request.timeout.ms": args.request_timeout_ms})
        # The roster: the announce topic read from the beginning, without joining a consumer group (§5).
        # librdkafka insists on a group.id even for assign(); we never subscribe or commit with it.
        self.roster_consumer = Consumer({**consumer, "group.id": f"shoal.{args.group}.agent.{self.me.agentid}"})
        self.roster_consumer.assign([TopicPartition(self.topic["announce"], 0, OFFSET_BEGINNING)])
        # The work queue: one taker per task, shared consumer group, from the earliest offset (§5).
        self.work = Consumer(
            {
                **consumer,
                "group.id": f"shoal.{args.group}.skill.{args.skill}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": args.session_timeout_ms,
                "heartbeat.interval.ms": args.heartbeat_interval_ms,
            }
        )
        self.work.subscribe([self.queue])

    def create_topics(self, common: dict[str, Any]) -> None:
        """§5: topics are created explicitly, never by producing to a missing one (TopicAlreadyExists is fine)."""
        a = self.args
        wanted = [NewTopic(t, a.partitions, a.replication_factor) for t in [*self.topic.values(), self.queue]]
        wanted[0] = NewTopic(self.topic["announce"], 1, a.replication_factor, config={"cleanup.policy": "compact"})
        admin = AdminClient(common)
        for topic, future in admin.create_topics(wanted, request_timeout=a.request_timeout_ms / 1000).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise SystemExit(f"cannot create {topic}: {exc}") from None
        deadline = time.monotonic() + 10
        while not {t.topic for t in wanted} <= set(admin.list_topics(timeout=5).topics):  # wait until visible
            if time.monotonic() > deadline:
                raise SystemExit("created topics never became visible")
            time.sleep(0.05)

    # -- sending --

    def send(self, name: str, key: str, envelope: dict[str, Any]) -> tuple[str, bytes, bytes, list]:
        record = (self.topic[name], key.encode(), json.dumps(envelope, ensure_ascii=False).encode(), headers(envelope))
        self.producer.produce(record[0], key=record[1], value=record[2], headers=record[3])
        self.producer.poll(0)  # serve delivery reports
        return record

    def announce(self) -> None:
        """§4: the full card, sent on join and then every heartbeat (the announcement is the heartbeat)."""
        card = {
            "agentid": self.me.agentid,
            "name": self.me.name,
            "description": "foreign example peer (confluent-kafka)",
            "skills": [{"name": self.skill, "description": f"answers the input, {self.skill}"}],
            "model": None,
            "zone": self.me.zone,
            "publickey": self.me.publickey,
            "capabilities": ["task"],
            "version": "confluent_peer 1.0",
            "heartbeatms": self.args.heartbeat_ms,
            "startedat": self.started,
            "status": "idle",
            "activetasks": 0,
        }
        self.send("announce", self.me.agentid, self.me.envelope("shoal.roster.announce", card))
        self.producer.flush()
        self.next_beat = time.monotonic() + self.args.heartbeat_ms / 1000

    def audit(self, records: list[dict[str, Any]], correlationid: str | None, trace_id: str | None) -> None:
        """§4: one audit envelope per handled record, keyed by our agent id, in the task's conversation."""
        audit = self.me.envelope("shoal.audit.record", {"records": records}, trace_id, correlationid=correlationid)
        self.send("audit", self.me.agentid, audit)

    # -- the roster (§3, §4) --

    def read_roster(self, timeout_ms: int = 0) -> None:
        for message in self.roster_consumer.consume(100, timeout=timeout_ms / 1000):
            envelope, reason = parse(message.value(), self.args.group) if not message.error() else (None, "error")
            if reason:
                continue
            data, aid = envelope["data"], envelope["agentid"]
            if envelope["type"] == "shoal.roster.announce":
                key = data.get("publickey", "")
                # Self-certifying: verified with its own key, and the id must derive from that key.
                try:
                    genuine = agent_id_of(key) == aid == data.get("agentid") and verify(envelope, key)
                except (ValueError, TypeError):
                    genuine = False
                if genuine:
                    ttl = 3 * int(data.get("heartbeatms", 5000)) / 1000  # silent for 3 x heartbeat: gone
                    self.roster[aid] = {"publickey": key, "heard": seconds(envelope["time"]), "ttl": ttl}
            elif envelope["type"] == "shoal.roster.leave" and verify(envelope, self.key_of(aid) or ""):
                del self.roster[aid]  # peers drop a leaving agent at once

    def key_of(self, agentid: str) -> str | None:
        entry = self.roster.get(agentid)
        if entry and time.time() - entry["heard"] <= entry["ttl"]:
            return entry["publickey"]
        return None

    def heartbeat(self) -> None:
        if time.monotonic() >= self.next_beat:
            self.announce()

    # -- requests (§4 shoal.task.request, §7 step 5) --

    def handle(self, record: Message) -> bool:
        """Handle one work-queue record; True when a result was sent."""
        envelope, reason = parse(record.value(), self.args.group)
        if not reason:
            key = self.key_of(envelope["agentid"])
            deadline = time.monotonic() + UNKNOWN_SENDER_WAIT
            while key is None and time.monotonic() < deadline:  # its announcement may still be on its way
                self.read_roster(timeout_ms=100)
                self.heartbeat()
                key = self.key_of(envelope["agentid"])
            reason = "unknown-sender" if key is None else None if verify(envelope, key) else "bad-signature"
        if not reason and envelope["type"] != "shoal.task.request":
            reason = "malformed"
        if reason:
            return self.drop(record, envelope, reason)
        if envelope.get("recipient") not in (None, self.me.agentid):
            return False  # addressed to another agent: only the recipient acts
        if envelope["id"] in self.handled:  # a redelivery: never run it twice, send the stored result again
            topic, key, value, headers_ = self.handled[envelope["id"]]
            self.producer.produce(topic, key=key, value=value, headers=headers_)
            return False
        data = envelope["data"]
        try:
            taskid, text, depth = str(data["taskid"]), str(data["input"]), int(data["depth"])
            late = time.time() > seconds(data["deadline"])
        except (KeyError, ValueError, TypeError, AttributeError):
            return self.drop(record, envelope, "malformed")
        if late:  # the taker must not start after the deadline; stale queued tasks are dropped (§4, §5)
            return self.drop(record, envelope, "expired")

        started = time.monotonic()
        requester = envelope["agentid"]  # the signed sender; results and progress are addressed to it
        # §7 step 5: same conversation, caused by the request, in the request's trace, addressed to the requester.
        trace_id = trace_id_of(envelope["traceparent"])
        reply = {"correlationid": envelope["correlationid"], "causationid": envelope["id"], "recipient": requester}
        agent = {"agentid": self.me.agentid, "name": self.me.name}
        audit = [{"action": "received", "at": utcnow(), "envelope": summary(envelope, record.topic())}]
        max_depth = min(self.args.max_depth, int(data.get("maxdepth", self.args.max_depth)))
        if depth > max_depth:
            result = {"status": "refused", "error": {"code": "depth-limit", "message": f"depth {depth} > {max_depth}"}}
        elif data.get("skill") != self.skill:
            result = {"status": "refused", "error": {"code": "unknown-skill", "message": f"I serve {self.skill}"}}
        else:
            accepted = {"taskid": taskid, "state": "accepted", "agent": agent}
            progress = self.me.envelope("shoal.task.progress", accepted, trace_id, **reply)
            self.send("progress", taskid, progress)
            audit.append({"action": "sent", "at": utcnow(), "envelope": summary(progress, self.topic["progress"])})
            result = {"status": "ok", "output": SKILLS[self.skill](text)}
        elapsed = int((time.monotonic() - started) * 1000)
        result = {"taskid": taskid, **result, "elapsedms": elapsed, "agent": agent}
        answer = self.me.envelope("shoal.task.result", result, trace_id, **reply)
        self.handled[envelope["id"]] = self.send("responses", taskid, answer)
        audit.append({"action": "sent", "at": utcnow(), "envelope": summary(answer, self.topic["responses"])})
        self.audit(audit, envelope["correlationid"], trace_id)
        print(f"{result['status']}: task {taskid} from {requester}", file=sys.stderr, flush=True)
        return True

    def drop(self, record: Message, envelope: dict[str, Any] | None, reason: str) -> bool:
        """§2: dropped records are recorded in the audit trail; nothing is answered."""
        ref = summary(envelope, record.topic()) if envelope else {"topic": record.topic()}
        ref.update(partition=record.partition(), offset=record.offset())
        entry = {"action": "dropped", "at": utcnow(), "reason": reason, "envelope": ref}
        correlationid = envelope.get("correlationid") if envelope else None
        self.audit([entry], correlationid if isinstance(correlationid, str) else None, None)
        print(f"dropped ({reason}) offset {record.offset()}", file=sys.stderr, flush=True)
        return False

    # -- lifecycle --

    def run(self) -> None:
        self.announce()
        print(f"agent {self.me.agentid} serving {self.skill} in group {self.args.group}", file=sys.stderr, flush=True)
        while not self.stopping:
            self.heartbeat()
            self.read_roster()
            record = self.work.poll(0.2)
            if record is None or record.error():  # errors are transient here (librdkafka retries)
                continue
            answered = self.handle(record)
            self.producer.flush()  # results and audit are on the broker before the offset moves on
            # §5/§7: commit only after the request is recorded (here: handled and answered).
            self.work.commit(message=record, asynchronous=False)
            self.stopping |= answered and self.args.once

    def close(self) -> None:
        """§4: a clean exit says goodbye, so peers drop us at once instead of after 3 heartbeats."""
        leave = self.me.envelope("shoal.roster.leave", {"agentid": self.me.agentid, "reason": "quit"})
        self.send("announce", self.me.agentid, leave)
        self.producer.flush()
        self.work.close()  # leaves the consumer group, so the queue rebalances at once
        self.roster_consumer.close()


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("SHOAL_BOOTSTRAP", "localhost:9092"), help="host:port,...")
    p.add_argument("--group", required=True, help="the Shoal group name")
    p.add_argument("--skill", default="reverse", choices=sorted(SKILLS), help="the skill to serve (default reverse)")
    p.add_argument("--name", default="", help="display name in the roster")
    p.add_argument("--zone", default="public", choices=["public", "shared", "private"])
    p.add_argument("--once", action="store_true", help="exit after answering one task")
    p.add_argument(
        "--heartbeat-ms",
        type=int,
        default=env_int("SHOAL_HEARTBEAT_MS", 5000),
        help="roster announce interval (the Shoal heartbeat)",
    )
    p.add_argument("--max-depth", type=int, default=3, help="refuse tasks deeper than this")
    p.add_argument("--partitions", type=int, default=env_int("SHOAL_PARTITIONS", 1), help="for topics we create")
    p.add_argument("--replication-factor", type=int, default=env_int("SHOAL_REPLICATION_FACTOR", 1))
    # Kafka client timings: the defaults suit real clusters; a local test broker wants e.g.
    # SHOAL_SESSION_TIMEOUT_MS=2000 SHOAL_HEARTBEAT_INTERVAL_MS=500 SHOAL_REQUEST_TIMEOUT_MS=10000
    # SHOAL_FETCH_MAX_WAIT_MS=10 SHOAL_LINGER_MS=0 (what the test suite uses with its Tansu broker).
    for flag, default in (
        ("session-timeout-ms", 45000),
        ("heartbeat-interval-ms", 3000),
        ("request-timeout-ms", 30000),
        ("fetch-max-wait-ms", 500),
        ("linger-ms", 5),
    ):
        env = "SHOAL_" + flag.upper().replace("-", "_")
        p.add_argument(f"--{flag}", type=int, default=env_int(env, default), help=f"Kafka client setting (${env})")
    p.add_argument(
        "-X",
        dest="extra",
        action="append",
        default=[],
        type=client_option,
        metavar="KEY=VALUE",
        help="extra librdkafka setting for every client, e.g. -X security.protocol=SASL_SSL",
    )
    return p.parse_args(argv)


def client_option(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def main(argv: list[str] | None = None) -> int:
    peer = Peer(parse_args(argv))

    def stop(signum: int, _frame: Any) -> None:
        peer.stopping = True  # finish the current record, then leave cleanly

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        peer.run()
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
