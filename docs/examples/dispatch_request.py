#!/usr/bin/env python3
"""A minimal foreign Shoal requester written from docs/protocol.md alone, with kafka-python (+ cryptography).

It announces itself, sends one shoal.task.request to a skill's work queue, waits for the taker's `accepted`
progress and its result (both addressed to it), prints the result envelope as JSON and exits 0 when the status
is ok, 1 otherwise. Section numbers in the comments (§n) refer to docs/protocol.md.

    python docs/examples/dispatch_request.py --bootstrap localhost:9092 --group demo --skill upper --input "hi"
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

PROTOCOL = "1.0"  # the schemaversion we send; we process any 1.x (§2)
UNKNOWN_SENDER_WAIT = 5.0  # hold an envelope from an agent the roster does not know yet for this long (§3)
# fmt: off
REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "group", "agentid",
            "correlationid", "traceparent", "schemaversion", "zone", "signature")  # every envelope carries these (§2)
# fmt: on


# -- envelopes (§1-§3), the same helpers as in kafka_python_peer.py -------------------------------------------


def utcnow(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class Identity:
    """Our key pair, agent id and group: builds signed envelopes."""

    def __init__(self, group: str, name: str, zone: str = "public") -> None:
        self.key = Ed25519PrivateKey.generate()
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
            "correlationid": eid,
            "traceparent": f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            "schemaversion": PROTOCOL,
            "zone": self.zone,
        }
        envelope.update({k: v for k, v in attrs.items() if v})
        return self.sign(envelope)

    def sign(self, envelope: dict[str, Any]) -> dict[str, Any]:
        signature = self.key.sign(canonical(envelope))
        envelope["signature"] = "ed25519:" + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        return envelope

    def announce(self, heartbeat_ms: int = 5000, skills: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """§4: the full card (a requester serves no skill)."""
        card = {
            "agentid": self.agentid,
            "name": self.name,
            "description": "foreign example requester",
            "skills": skills or [],
            "model": None,
            "zone": self.zone,
            "publickey": self.publickey,
            "capabilities": ["task"],
            "version": "dispatch_request 1.0",
            "heartbeatms": heartbeat_ms,
            "startedat": utcnow(),
            "status": "idle",
            "activetasks": 0,
        }
        return self.envelope("shoal.roster.announce", card)

    def request(self, skill: str, text: str, timeout_s: float, maxdepth: int = 3) -> dict[str, Any]:
        """§4: a new task a person dispatched: depth 0, correlationid = taskid, a new trace."""
        taskid = new_id()
        data = {
            "taskid": taskid,
            "skill": skill,
            "input": text,
            "deadline": utcnow(timeout_s),
            "depth": 0,
            "maxdepth": maxdepth,
            "requester": {"agentid": self.agentid, "name": self.name},
        }
        return self.envelope("shoal.task.request", data, correlationid=taskid)


def topic_names(group: str, skill: str) -> dict[str, str]:
    names = {s: f"group.{group}.{s}" for s in ("announce", "progress", "responses")}
    return {**names, "queue": f"group.{group}.skill.{skill}.requests"}


def ensure_topics(common: dict[str, Any], topics: dict[str, str], partitions: int = 1, replicas: int = 1) -> None:
    """§5: create the topics we use explicitly (never by producing to a missing one); 36 = TopicAlreadyExists."""
    wanted = {t: {"num_partitions": partitions, "replication_factor": replicas} for t in topics.values()}
    wanted[topics["announce"]] = {
        "num_partitions": 1,
        "replication_factor": replicas,
        "configs": {"cleanup.policy": "compact"},
    }
    admin = KafkaAdminClient(**common)
    try:
        result = admin.create_topics(wanted, raise_errors=False)
        failed = {t["name"]: t["error_code"] for t in result["topics"] if t["error_code"] not in (0, 36)}
        if failed:
            raise SystemExit(f"cannot create topics: {failed}")
        admin.wait_for_topics(list(wanted))
    finally:
        admin.close()


def send(producer: KafkaProducer, topic: str, key: str, envelope: dict[str, Any]) -> None:
    """One record: the envelope as JSON, plus the CloudEvents Kafka-binding headers for tools (§5)."""
    pairs = {"content-type": "application/cloudevents+json; charset=UTF-8"}
    for name in ("specversion", "id", "source", "type", "time", "agentid", "correlationid", "zone", "recipient"):
        if name in envelope:
            pairs[f"ce_{name}"] = envelope[name]
    pairs["traceparent"] = envelope["traceparent"]
    value = json.dumps(envelope, ensure_ascii=False).encode()
    producer.send(topic, key=key.encode(), value=value, headers=[(k, str(v).encode()) for k, v in pairs.items()])


def parse(value: bytes | None, group: str) -> dict[str, Any] | None:
    """§2 reading rules without the key check: an envelope we may process, or None (dropped)."""
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(envelope, dict) or any(name not in envelope for name in REQUIRED):
        return None
    if envelope["group"] != group or str(envelope["schemaversion"]).split(".")[0] != PROTOCOL.split(".")[0]:
        return None
    return envelope if isinstance(envelope.get("data"), dict) else None


def update_roster(roster: dict[str, str], envelope: dict[str, Any]) -> None:
    """§3/§4: announcements are self-certifying (own key, id derived from it).

    A leave is not applied here: this requester only needs keys to verify answers, and a `--once` taker's answer
    can reach us after its leave has already been read from the roster.
    """
    data, aid = envelope["data"], envelope["agentid"]
    if envelope["type"] == "shoal.roster.announce":
        key = data.get("publickey", "")
        try:
            if agent_id_of(key) == aid == data.get("agentid") and verify(envelope, key):
                roster[aid] = key
        except (ValueError, TypeError):
            pass


# -- the requester -------------------------------------------------------------------------------------------


def dispatch(args: argparse.Namespace) -> dict[str, Any] | None:
    """Send the request and return the first verified result addressed to us (None on timeout)."""
    me = Identity(args.group, args.name, args.zone)
    topics = topic_names(args.group, args.skill)
    common = {"bootstrap_servers": args.bootstrap, "request_timeout_ms": args.request_timeout_ms, **dict(args.extra)}
    consumer = {**common, "fetch_max_wait_ms": args.fetch_max_wait_ms, "enable_auto_commit": False}
    ensure_topics(common, topics, args.partitions, args.replication_factor)
    producer = KafkaProducer(**common, linger_ms=args.linger_ms)
    roster_consumer = KafkaConsumer(**consumer, group_id=None)  # the roster: no group, from the beginning
    roster_consumer.assign([TopicPartition(topics["announce"], 0)])
    roster_consumer.seek_to_beginning()
    # Addressed topics in our own consumer group, from the latest offset on first join (§5). Wait until the
    # group has assigned partitions and fixed their positions before dispatching, or a fast answer is missed.
    replies = KafkaConsumer(
        **consumer,
        group_id=f"shoal.{args.group}.agent.{me.agentid}",
        auto_offset_reset="latest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
    )
    replies.subscribe([topics["progress"], topics["responses"]])
    joined_by = time.monotonic() + 60
    while not replies.assignment():
        if time.monotonic() > joined_by:
            raise SystemExit("the consumer group never assigned us the progress and responses partitions")
        replies.poll(timeout_ms=100)
    for tp in replies.assignment():
        replies.position(tp)
    roster: dict[str, str] = {}
    pending: list[tuple[float, dict[str, Any]]] = []  # (arrival, envelope) awaiting the sender's announcement
    result = None
    try:
        send(producer, topics["announce"], me.agentid, me.announce(args.heartbeat_ms))
        request = me.request(args.skill, args.input, args.timeout, args.max_depth)
        taskid = request["data"]["taskid"]
        send(producer, topics["queue"], taskid, request)  # work queue: key = taskid
        producer.flush()
        print(f"sent task {taskid} (request {request['id']}) to {topics['queue']}", file=sys.stderr, flush=True)
        next_beat = time.monotonic() + args.heartbeat_ms / 1000
        give_up = time.monotonic() + args.timeout + 5  # the taker answers `expired` at the deadline at the latest
        while result is None and time.monotonic() < give_up:
            if time.monotonic() >= next_beat:  # the announcement is the heartbeat
                send(producer, topics["announce"], me.agentid, me.announce(args.heartbeat_ms))
                next_beat = time.monotonic() + args.heartbeat_ms / 1000
            for records in roster_consumer.poll(timeout_ms=0).values():
                for envelope in filter(None, (parse(r.value, args.group) for r in records)):
                    update_roster(roster, envelope)
            for records in replies.poll(timeout_ms=100).values():
                for envelope in filter(None, (parse(r.value, args.group) for r in records)):
                    if envelope.get("recipient") == me.agentid and envelope["data"].get("taskid") == taskid:
                        pending.append((time.monotonic(), envelope))
            for arrival, envelope in list(pending):
                key = roster.get(envelope["agentid"])
                if key is None and time.monotonic() - arrival < UNKNOWN_SENDER_WAIT:
                    continue  # its announcement may still be on its way
                pending.remove((arrival, envelope))
                if key is None or not verify(envelope, key):
                    print(f"dropped an unverifiable {envelope['type']}", file=sys.stderr, flush=True)
                elif envelope["type"] == "shoal.task.progress":
                    state, agent = envelope["data"].get("state"), envelope["data"].get("agent", {})
                    print(f"progress: {state} by {agent.get('name')} ({agent.get('agentid')})", file=sys.stderr)
                elif envelope["type"] == "shoal.task.result" and result is None:
                    result = envelope  # the first result per task wins; later ones are ignored (§4)
        replies.commit()
    finally:
        send(
            producer,
            topics["announce"],
            me.agentid,
            me.envelope("shoal.roster.leave", {"agentid": me.agentid, "reason": "quit"}),
        )
        producer.flush()
        replies.close()
        roster_consumer.close()
        producer.close()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=env("SHOAL_BOOTSTRAP", "localhost:9092"), help="host:port,...")
    p.add_argument("--group", required=True, help="the Shoal group name")
    p.add_argument("--skill", default="upper", help="the skill whose work queue gets the task (default upper)")
    p.add_argument("--input", default="hello from a foreign requester", help="the task input")
    p.add_argument("--name", default="dispatch-request", help="display name in the roster")
    p.add_argument("--zone", default="public", choices=["public", "shared", "private"])
    p.add_argument("--timeout", type=float, default=30.0, help="seconds until the task's deadline")
    p.add_argument("--max-depth", type=int, default=3, help="the request's maxdepth")
    p.add_argument("--heartbeat-ms", type=int, default=int(env("SHOAL_HEARTBEAT_MS", 5000)), help="announce interval")
    p.add_argument("--partitions", type=int, default=int(env("SHOAL_PARTITIONS", 1)), help="for topics we create")
    p.add_argument("--replication-factor", type=int, default=int(env("SHOAL_REPLICATION_FACTOR", 1)))
    # Kafka client timings: defaults suit real clusters; see kafka_python_peer.py for local test broker values.
    for flag, default in (
        ("session-timeout-ms", 45000),
        ("heartbeat-interval-ms", 3000),
        ("request-timeout-ms", 30000),
        ("fetch-max-wait-ms", 500),
        ("linger-ms", 5),
    ):
        name = "SHOAL_" + flag.upper().replace("-", "_")
        p.add_argument(f"--{flag}", type=int, default=int(env(name, default)), help=f"Kafka client setting (${name})")
    p.add_argument(
        "-X",
        dest="extra",
        action="append",
        default=[],
        type=lambda t: (t.partition("=")[0], int(v) if (v := t.partition("=")[2]).isdigit() else v),
        metavar="KEY=VALUE",
        help="extra kafka-python setting for every client, e.g. -X security_protocol=SASL_SSL",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    result = dispatch(parse_args(argv))
    if result is None:
        print("no result before the deadline", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["data"].get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
