"""A group member: identity, roster, readers, the outbox and heartbeats, with one lifecycle.

`start()` returns at once: connecting happens in the background and is retried until the broker answers,
while `publish()` keeps writing to the durable outbox. So the agent works the same with the broker down,
and everything it said goes out when the broker is back. aiokafka is imported only here and in the reader,
on the first join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import NetworkError, ShoalError, classify
from core.group.artifacts import ArtifactStore, build_store
from core.group.claims import Claims
from core.group.closed import load_membership
from core.group.envelope import ROSTER_ANNOUNCE, ROSTER_LEAVE
from core.group.hierarchy import card_fields
from core.group.identity import Identity, load_or_create
from core.group.inbox import received_event, record_incoming
from core.group.intake import Incoming, Rejected
from core.group.invite import Invite
from core.group.lag import LagMonitor
from core.group.membership import Membership
from core.group.onboarding import Onboarding
from core.group.outbox import Outbox, OutboxSender
from core.group.publisher import Publisher
from core.group.reader import Reader
from core.group.roster import Member, Roster
from core.group.session_cache import StoredSession
from core.group.taskboard import TaskBoard
from core.group.topics import TopicManager, group_topics, skill_spec, skill_topic
from core.group.zonecrypt import BoxKey
from core.group.zones import Zones
from core.settings import GroupSettings
from core.timeline.db import Database
from core.timeline.ids import now_iso
from core.timeline.store import Event, Timeline

log = logging.getLogger(__name__)
# Records nobody waits for go through a producer that lingers, so they leave in a few large requests instead
# of one request each (every request costs both sides CPU that the latency of the task path pays for).
BULK_TOPICS = ("audit", "traces")
BULK_LINGER_MS = 50
INBOX_TOPICS = ("requests", "responses", "progress", "control", "memory", "claims")
REPLAYED_TOPICS = ("announce", "control", "claims")  # read from the start every time, never committed
EnvelopeHandler = Callable[[Incoming, Event], Awaitable[None]]
EarlyHandler = Callable[[Incoming, Event], None]
StateListener = Callable[[str, ShoalError | None], None]


class GroupNode(Publisher):
    def __init__(
        self,
        settings: GroupSettings,
        db: Database,
        timeline: Timeline,
        *,
        identity: Identity | None = None,
        ephemeral: bool = False,
        model_id: str = "",
        version: str = "",
        identity_scope: str = "",
        invite: Invite | None = None,
        parent_identity: Identity | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.timeline = timeline
        self.identity = identity
        self.ephemeral = ephemeral  # a short-lived CLI member: fresh identity, no committed offsets
        self.model_id = model_id
        self.version = version
        self.identity_scope = identity_scope  # keeps two agents on one machine (two data folders) apart
        self.roster = Roster()
        self.invite = invite  # the join secret; loaded from the keyring on start when not given
        self.parent_identity = parent_identity  # a session member: the machine's admitted identity
        self.membership = Membership(None)
        self.box_key: BoxKey | None = None  # this agent's X25519 key for private zones (core/group/zonecrypt.py)
        self.box_public = ""
        self.zones: Zones | None = None
        self.fresh_identity = False  # a command's own identity (new, or a kept session), not the machine's
        self.session: StoredSession | None = None  # a kept command session to reuse (core/group/session_cache.py)
        self.outbox = Outbox(db)
        self.sender = OutboxSender(
            self.outbox,
            self._produce,
            self._recover,
            self._sender_state,
            ack_timeout=max(5.0, settings.client.request_timeout_ms / 1000),
        )
        self.store: ArtifactStore | None = None
        self.topics: TopicManager | None = None
        self.readers: list[Reader] = []
        self._dispatched_skills: set[str] = set()  # queues this agent sent tasks to: remade after a broker restart
        self._made_queues: set[str] = set()  # of those, the ones known to exist
        self.handlers: dict[str, EnvelopeHandler] = {}
        self.duplicate_handlers: dict[str, EnvelopeHandler] = {}
        self.early_handlers: dict[str, EarlyHandler] = {}
        self.session_for_task: dict[str, str] = {}  # task id -> local session its envelopes belong to
        self.state = "stopped"  # stopped | connecting | online | offline
        self.last_error: ShoalError | None = None
        self.status = "idle"
        self.active_tasks = 0
        self._state_listeners: list[StateListener] = []
        self._producer: Any = None
        self._bulk_producer: Any = None  # audit and trace records: nobody waits for them, so they linger
        self._tasks: list[asyncio.Task[None]] = []
        self._online = asyncio.Event()
        self._started_at = now_iso()
        self.board = TaskBoard(self)  # the tasks this agent works on, for its card (core/group/taskboard.py)
        self.claims = Claims(self)  # claims on work keys (core/group/claims.py)
        self.lag_monitor = LagMonitor(self)  # consumer lag per partition, and its warnings (core/group/lag.py)
        self.onboarding = Onboarding(self)

    # --- identity and names --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.display_name()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.state != "stopped":
            return
        self.fresh_identity = self.identity is None and self.ephemeral
        if self.identity is None:
            if self.ephemeral:
                self.identity = self.session.identity if self.session is not None else Identity.generate()
            else:
                self.identity = await asyncio.to_thread(load_or_create, self.group_name, self.identity_scope)
        self.store = build_store(self.settings.artifacts)
        self.roster = Roster(self.identity.agent_id)
        await load_membership(self)  # closed or open, zones, the zone key (core/group/closed.py)
        self._set_state("connecting", None)
        self._tasks.append(asyncio.create_task(self._connect(), name="shoal-group-connect"))

    def live(self) -> bool:
        """Past the history of the roster and control topics: what arrives now is happening now."""
        inbox = next((r for r in self.readers if r.name == "inbox"), None)
        return inbox is not None and inbox.caught_up.is_set()

    async def wait_online(self, timeout: float) -> None:
        """For commands that need the broker now (dispatch, members): a clear error instead of waiting forever."""
        try:
            await asyncio.wait_for(self._online.wait(), timeout)
        except TimeoutError:
            servers = ", ".join(self.settings.bootstrap_servers)
            reason = self.last_error.message if self.last_error else "no answer"
            raise NetworkError(
                f"Cannot reach the Kafka group at {servers} within {timeout:g} s: {reason}",
                "Check group.bootstrap_servers and that the broker runs; `shoal group test` checks each step.",
            ) from None

    async def roster_caught_up(self, timeout: float) -> None:
        """Wait until the roster reader has read every announcement already on the topic."""
        roster = next((r for r in self.readers if r.name == "inbox"), None)
        if roster is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(roster.caught_up.wait(), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye, flush the outbox for up to `timeout` s, then close everything (idempotent)."""
        if self.state == "stopped":
            return
        if self._online.is_set():
            with contextlib.suppress(Exception):
                await self.publish(
                    ROSTER_LEAVE,
                    {"agentid": self.agent_id, "reason": "quit"},
                    suffix="announce",
                    key=self.agent_id,
                    correlationid=self.agent_id,
                    record=False,
                )
        self.board.close()
        await self.onboarding.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout)
        self._tasks.clear()
        await self.lag_monitor.stop(min(timeout, 2.0))
        await self.sender.stop(timeout if self._online.is_set() else 0.0)
        for reader in self.readers:
            await reader.stop(timeout)
        self.readers.clear()
        await self._close_clients(timeout)
        self._online.clear()
        self._set_state("stopped", None)

    async def _close_clients(self, timeout: float) -> None:
        producers = [p for p in (self._producer, self._bulk_producer) if p is not None]
        self._producer = self._bulk_producer = None
        for producer in producers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout)
        if self.topics is not None:
            with contextlib.suppress(Exception):
                await self.topics.stop()
            self.topics = None

    async def _connect(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._open()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify(exc)
                log.warning("group %s: cannot connect yet: %s", self.group_name, error.message)
                self._set_state("offline", error)
                for reader in self.readers:
                    await reader.stop(1.0)
                self.readers.clear()
                await self._close_clients(1.0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self._online.set()
        self._set_state("online", None)
        self.sender.start()
        self.lag_monitor.start()  # the readers are open
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="shoal-group-heartbeat"))

    async def _open(self) -> None:
        from aiokafka import AIOKafkaProducer

        from core.group.kafka_config import producer_kwargs

        self.topics = TopicManager(self.settings)
        await self.topics.start()
        await self._ensure_topics()
        self._producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        await self._producer.start()
        self._bulk_producer = AIOKafkaProducer(**{**producer_kwargs(self.settings), "linger_ms": BULK_LINGER_MS})
        await self._bulk_producer.start()
        inbox_group = None if self.ephemeral else f"shoal.{self.group_name}.agent.{self.agent_id}"
        announce = self.topic("announce")
        topics = [announce] + [self.topic(s) for s in INBOX_TOPICS]
        # the roster, the membership and the claims (core/group/claimbook.py) are rebuilt from the start every time
        replay = tuple(self.topic(s) for s in REPLAYED_TOPICS)
        self.readers = [Reader(self, "inbox", topics, self._on_envelopes, group_id=inbox_group, replay=replay)]
        for skill in [] if self.ephemeral else self.settings.skills:  # a command never takes the group's tasks
            group_id = f"shoal.{self.group_name}.skill.{skill.name}"
            topic_name = skill_topic(self.group_name, skill.name)
            self.readers.append(
                Reader(self, f"skill-{skill.name}", [topic_name], self._on_envelopes, group_id=group_id, subscribe=True)
            )
        for reader in self.readers:
            await reader.start()

    async def _ensure_topics(self) -> None:
        assert self.topics is not None
        skills = {s.name for s in self.settings.skills} | self._dispatched_skills
        specs = group_topics(self.settings) + [skill_spec(self.settings, name) for name in sorted(skills)]
        await self.topics.ensure(specs)

    async def ensure_skill_topic(self, skill: str) -> None:
        """A dispatcher creates the queue of a skill nobody serves yet, so the task waits there for a taker.

        Never fails a dispatch: with the broker away the request waits in the outbox, and the queue is made
        with the group's other topics (`_ensure_topics`) before the outbox sends again."""
        known = skill in self._made_queues
        self._dispatched_skills.add(skill)
        if known or self.topics is None or not self._online.is_set() or not self.sender.healthy:
            return  # made already (a broker that forgets topics fails a send: `_recover` makes them again)
        try:
            await self.topics.ensure([skill_spec(self.settings, skill)])
            self._made_queues.add(skill)
        except Exception as exc:
            log.warning("group: cannot create the queue of skill %s now (%s); the outbox retries", skill, exc)

    # --- state ---------------------------------------------------------------------------------

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def _set_state(self, state: str, error: ShoalError | None) -> None:
        if state == self.state and error is None:
            return
        if state == "offline":
            for reader in self.readers:  # the broker may come back without its topics: check before committing
                reader.suspect_outage()
        self.state, self.last_error = state, error
        for listener in list(self._state_listeners):
            try:
                listener(state, error)
            except Exception:
                log.exception("group state listener failed")

    def _sender_state(self, ok: bool, error: ShoalError | None) -> None:
        if self._online.is_set():
            self._set_state("online" if ok else "offline", error)

    # --- sending -------------------------------------------------------------------------------

    async def _produce(
        self, topic_name: str, key: str | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        """Queue one record with the producer; the future resolves when the broker acknowledges it."""
        bulk = topic_name.rsplit(".", 1)[-1] in BULK_TOPICS
        producer = self._bulk_producer if bulk else self._producer
        if producer is None:
            raise NetworkError(
                "Not connected to the group yet.", "Wait for the broker; the outbox keeps the envelopes."
            )
        future: asyncio.Future[Any] = await producer.send(
            topic_name, value, key=key.encode() if key else None, headers=headers
        )
        return future

    async def _recover(self) -> None:
        """After a failed send: the broker may have restarted and forgotten its topics; make them again."""
        self._made_queues.clear()
        if self.topics is not None:
            await self._ensure_topics()

    # --- receiving -----------------------------------------------------------------------------

    def on(self, event_type: str, handler: EnvelopeHandler, *, duplicate: EnvelopeHandler | None = None) -> None:
        self.handlers[event_type] = handler
        if duplicate is not None:
            self.duplicate_handlers[event_type] = duplicate

    def on_early(self, event_type: str, handler: EarlyHandler) -> None:
        """`handler` sees each verified envelope of this type before its receipt is recorded, so it must be
        idempotent and touch nothing durable (it may see a repeat: recognise it by envelope id)."""
        self.early_handlers[event_type] = handler

    async def _on_envelopes(self, accepted: list[Incoming], rejected: list[Rejected]) -> None:
        received = [(incoming, received_event(incoming, self.session_for_task)) for incoming in accepted]
        for incoming, event in sorted(received, key=lambda pair: pair[0].envelope.time):
            early = self.early_handlers.get(incoming.envelope.type)
            if early is not None:
                try:
                    early(incoming, event)
                except Exception:
                    log.exception("group early handler for %s failed", incoming.envelope.type)
        fresh, duplicates = await record_incoming(self, received, rejected)
        fresh.sort(key=lambda pair: pair[0].envelope.time)  # progress and result travel on different topics
        for incoming, event in fresh:
            await self._dispatch(self.handlers, incoming, event)
        for incoming, event in duplicates:
            await self._dispatch(self.duplicate_handlers, incoming, event)

    async def _dispatch(self, handlers: dict[str, EnvelopeHandler], incoming: Incoming, event: Event) -> None:
        handler = handlers.get(incoming.envelope.type)
        if handler is None:
            return
        try:
            await handler(incoming, event)
        except Exception:
            log.exception("group handler for %s failed", incoming.envelope.type)

    # --- the roster ----------------------------------------------------------------------------

    def card(self) -> dict[str, Any]:
        assert self.identity is not None
        return {
            "agentid": self.agent_id,
            "name": self.name,
            "description": self.settings.description,
            "skills": []
            if self.ephemeral
            else [{"name": s.name, "description": s.description} for s in self.settings.skills],
            "model": self.model_id,
            "zone": self.settings.zone,
            "publickey": self.identity.public_b64,
            "capabilities": ["task", "stream"] + (["ephemeral"] if self.ephemeral else []),
            "version": self.version,
            "heartbeatms": int(self.settings.heartbeat_interval * 1000),
            "startedat": self._started_at,
            "status": "busy" if self.board.tasks else self.status,
            "activetasks": self.active_tasks,
            "tasks": self.board.cards(),  # who is on which task, step n of m (core/group/taskboard.py)
            **card_fields(self.settings, self.roster, ephemeral=self.ephemeral),  # parent, role
        }

    async def announce(self) -> None:
        if self.ephemeral and self.membership.enforced and self.membership.status(self.agent_id) != "admitted":
            return  # a command that only looks, in a closed group, is not announced (members would hold its card)
        await self.publish(
            ROSTER_ANNOUNCE,
            self.card(),
            suffix="announce",
            key=self.agent_id,
            correlationid=self.agent_id,
            record=False,
        )

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self.announce()
                gone = self.roster.expire()
                for member in gone:
                    log.info("group: %s (%s) missed 3 heartbeats and left the roster", member.name, member.agentid)
                if self.topics is not None and self.sender.healthy:
                    await self._ensure_topics()  # a restarted broker forgets topics: notice before producing
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("group heartbeat: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval)

    def lag(self) -> dict[tuple[str, int], int]:
        """Consumer lag per (topic, partition) over this node's readers (see Reader.lag)."""
        out: dict[tuple[str, int], int] = {}
        for reader in self.readers:
            out.update(reader.lag())
        return out

    def members(self) -> list[Member]:
        self.roster.expire(time.monotonic())
        return self.roster.members()
