"""The group's topics (docs/protocol.md §5) and their explicit creation.

Topics are always created explicitly, with the group's partition count and retention: producing to (or
subscribing to) a missing topic makes many brokers auto-create it with *their* defaults (Tansu: 4 partitions,
Kafka: `num.partitions`), which breaks the single-partition ordering of `announce` and `control`.

`TopicManager` keeps one admin client open so the agent can call `ensure()` again whenever it suspects the
topics vanished (a broker restart with in-memory storage loses them all), and each call is time-bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import ConfigError, NetworkError
from core.group.claimbook import MAX_TTL_MS
from core.group.kafka_config import admin_kwargs

if TYPE_CHECKING:
    from core.settings import GroupSettings

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
# Topics every agent reads in full (broadcast and addressed) get one partition: more would add no parallelism
# (each reader takes them all) and multiply what every poll of every agent costs. Queues, traces and the
# audit trail (many writers, read by tools or by one taker per task) get the group's partition count.
SINGLE_PARTITION = ("announce", "control", "requests", "responses", "progress", "memory", "claims")
SHARED_SUFFIXES = ("announce", "control", "requests", "responses", "progress", "traces", "memory", "audit", "claims")
# Broker answers meaning "I do not accept these topic configs", as opposed to "you may not" or "no such thing".
_CONFIG_REJECTED = frozenset(
    {"InvalidConfigurationError", "PolicyViolationError", "UnsupportedVersionError", "InvalidRequestError"}
)
_NOT_ALLOWED = frozenset({"TopicAuthorizationFailedError", "ClusterAuthorizationFailedError"})


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the group wants it; `configs()` is what goes into CreateTopics."""

    name: str
    partitions: int
    retention_ms: int
    compact: bool = False

    def configs(self, *, compact: bool | None = None) -> dict[str, str]:
        use_compact = self.compact if compact is None else compact
        out = {"retention.ms": str(self.retention_ms)}
        if use_compact:
            out["cleanup.policy"] = "compact"
        return out

    def describe(self) -> str:
        """For humans who must create the topic by hand."""
        policy = "cleanup.policy=compact" if self.compact else f"retention.ms={self.retention_ms}"
        return f"{self.name} (partitions={self.partitions}, {policy})"


# A key is held at most MAX_TTL_MS after its claim (done included); a day more covers clocks and pruning.
CLAIMS_RETENTION_MS = MAX_TTL_MS + 24 * HOUR_MS


def topic(group: str, suffix: str) -> str:
    return f"group.{group}.{suffix}"


def skill_topic(group: str, skill: str) -> str:
    return topic(group, f"skill.{skill}.requests")


def _hours_ms(hours: float) -> int:
    return max(1, round(hours * HOUR_MS))


def skill_spec(settings: GroupSettings, skill: str) -> TopicSpec:
    """A skill's work queue; a requester ensures it before producing to a skill no peer has created yet."""
    return TopicSpec(skill_topic(settings.name, skill), settings.partitions, _hours_ms(settings.retention_hours))


def group_topics(settings: GroupSettings) -> list[TopicSpec]:
    """Every topic this agent needs: the shared ones plus the queue of each skill it serves."""
    retention = _hours_ms(settings.retention_hours)
    specs = []
    for suffix in SHARED_SUFFIXES:
        partitions = 1 if suffix in SINGLE_PARTITION else settings.partitions
        keep = _hours_ms(settings.audit_retention_hours) if suffix == "audit" else retention
        if suffix == "control":
            keep = -1  # admissions, revocations and zones are the group's membership: read from the start, kept
        if suffix == "claims":  # a claim record must outlive the longest hold it can start (claimbook.py)
            keep = max(retention, CLAIMS_RETENTION_MS)
        specs.append(TopicSpec(topic(settings.name, suffix), partitions, keep, compact=suffix == "announce"))
    specs.extend(skill_spec(settings, skill.name) for skill in settings.skills)
    return specs


def principal_of(settings: GroupSettings) -> str:
    """Who the broker sees, for permission messages."""
    if settings.security_protocol.startswith("SASL"):
        return f"User:{settings.sasl_username}"
    if settings.ssl_certfile:
        return "the principal of the client certificate (group.ssl_certfile)"
    return "User:ANONYMOUS (no authentication configured)"


def _permission_error(settings: GroupSettings, specs: Iterable[TopicSpec], action: str) -> ConfigError:
    principal = principal_of(settings)
    prefix = topic(settings.name, "")
    listing = "; ".join(s.describe() for s in specs)
    return ConfigError(
        f"The Kafka principal {principal} lacks permission to {action}.",
        f"Grant it CREATE and DESCRIBE on topics with prefix {prefix!r}, e.g. `kafka-acls --add --allow-principal "
        f"{principal.split(' ')[0]} --operation Create --operation Describe --operation Read --operation Write "
        f"--topic {prefix} --resource-pattern-type prefixed`; or ask an admin to pre-create: {listing}.",
    )


def _error_name(code: int) -> str:
    from aiokafka.errors import for_code

    return for_code(code).__name__


def _default_factory(settings: GroupSettings) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**admin_kwargs(settings))


class TopicManager:
    """One admin client for the group's topics; `start`/`stop` are idempotent, each call bounded by `timeout`.

    `admin_factory(settings)` builds the admin client (tests pass a fake).
    """

    def __init__(
        self,
        settings: GroupSettings,
        *,
        timeout: float | None = None,
        admin_factory: Callable[[GroupSettings], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout if timeout is not None else settings.client.request_timeout_ms / 1000 + 5
        self._factory = admin_factory or _default_factory
        self._admin: Any = None
        self._lock = asyncio.Lock()  # callers on several tasks must not bootstrap two clients

    async def __aenter__(self) -> TopicManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def started(self) -> bool:
        return self._admin is not None

    async def start(self) -> None:
        """Connect (bootstrap) the admin client. NetworkError naming the servers when none answers."""
        async with self._lock:
            if self._admin is not None:
                return
            admin = self._factory(self.settings)
            try:
                async with asyncio.timeout(self.timeout):
                    await admin.start()
            except BaseException as exc:
                await _close_quietly(admin)
                _reraise(self._translate(exc), exc)
            self._admin = admin

    async def stop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await _close_quietly(admin)

    async def existing(self) -> set[str]:
        """Names of all topics the broker lists (never describes missing ones: that can auto-create them)."""
        return set(await self._call(lambda admin: admin.list_topics()))

    async def partitions(self, names: list[str]) -> dict[str, int]:
        """Partition counts of topics that exist (call `existing()` first on brokers that auto-create)."""
        described = await self._call(lambda admin: admin.describe_topics(names))
        return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}

    async def delete(self, names: list[str]) -> dict[str, str | None]:
        """Delete topics; topic name -> None when deleted, else the broker's error class name."""
        response = await self._call(lambda admin: admin.delete_topics(names))
        return {str(name): (_error_name(code) if code else None) for name, code in response.topic_error_codes}

    async def ensure(self, specs: Iterable[TopicSpec], replication_factor: int | None = None) -> list[str]:
        """Create the topics among `specs` that do not exist yet; returns the names this call created."""
        wanted = list(specs)
        rf = replication_factor or self.settings.replication_factor
        present = await self.existing()
        missing = [s for s in wanted if s.name not in present]
        if not missing:
            return []
        created = await self._create(missing, rf)
        await self._await_listed(created)
        if created:
            log.info("created topics %s", ", ".join(created))
        return created

    # -- internals --

    async def _create(self, specs: list[TopicSpec], rf: int) -> list[str]:
        """One CreateTopics round, then per-topic fallbacks for brokers that refuse the configs."""
        errors = await self._create_round(specs, rf, {s.name: s.configs() for s in specs})
        created = [s.name for s in specs if s.name in errors and errors[s.name] is None]
        for spec in specs:
            error = errors.get(spec.name)
            if error is not None and await self._fallback(spec, rf, error):
                created.append(spec.name)
        return created

    async def _fallback(self, spec: TopicSpec, rf: int, error: tuple[str, str]) -> bool:
        """Retry one topic whose configs were refused: without compaction first, then with broker defaults."""
        name, message = error
        if name == "TopicAlreadyExistsError":
            return False  # a peer created it between our listing and our request: fine
        if name not in _CONFIG_REJECTED:
            raise self._create_error(spec, name, message)
        attempts: list[tuple[str, dict[str, str]]] = []
        if spec.compact:
            attempts.append(("compaction unavailable, using time retention", spec.configs(compact=False)))
        attempts.append(("retention configs refused, using the broker's defaults", {}))
        for note, configs in attempts:
            log.warning("topic %s: broker refused configs (%s: %s); %s", spec.name, name, message, note)
            retry = await self._create_round([spec], rf, {spec.name: configs})
            outcome = retry.get(spec.name)
            if outcome is None:
                return True
            if outcome[0] == "TopicAlreadyExistsError":
                return False
            if outcome[0] not in _CONFIG_REJECTED:
                raise self._create_error(spec, *outcome)
            name, message = outcome
        raise self._create_error(spec, name, message)

    async def _create_round(
        self, specs: list[TopicSpec], rf: int, configs: dict[str, dict[str, str]]
    ) -> dict[str, tuple[str, str] | None]:
        """Topic name -> None when created, else (error class name, broker message)."""
        from aiokafka.admin import NewTopic

        new = [NewTopic(s.name, s.partitions, rf, topic_configs=configs[s.name]) for s in specs]
        response = await self._call(lambda admin: admin.create_topics(new))
        out: dict[str, tuple[str, str] | None] = {}
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 and entry[2] else ""
            out[name] = None if code == 0 else (_error_name(code), message)
        return out

    def _create_error(self, spec: TopicSpec, name: str, message: str) -> ConfigError | NetworkError:
        detail = f"{name}{': ' + message if message else ''}"
        if name in _NOT_ALLOWED:
            return _permission_error(self.settings, [spec], f"create topic {spec.name} ({detail})")
        if name == "InvalidReplicationFactorError":
            return ConfigError(
                f"The cluster cannot hold {self.settings.replication_factor} replicas of {spec.name} ({detail}).",
                "Lower group.replication_factor to at most the number of brokers (1 for a single broker).",
            )
        if name == "InvalidPartitionsError":
            return ConfigError(
                f"The cluster refused {spec.partitions} partitions for {spec.name} ({detail}).",
                "Change group.partitions to a value the cluster allows.",
            )
        return NetworkError(
            f"The broker refused to create topic {spec.name} ({detail}).",
            f"Ask the cluster's admin to create it: {spec.describe()}.",
        )

    async def _await_listed(self, names: list[str]) -> None:
        """Wait until metadata lists what we created, so nobody produces into a not-yet-known topic."""
        for _ in range(50):
            if set(names) <= await self.existing():
                return
            await asyncio.sleep(0.05)
        log.warning("created topics %s are not listed yet", names)

    async def _call(self, action: Callable[[Any], Any]) -> Any:
        """Run one admin request within the timeout; one reconnect when the connection dropped (broker restart).
        A timeout is not retried: the caller asked for a bound, not for twice the bound."""
        from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

        for attempt in (1, 2):
            await self.start()
            admin = self._admin
            try:
                async with asyncio.timeout(self.timeout):
                    return await action(admin)
            except (KafkaConnectionError, NodeNotReadyError) as exc:
                if attempt == 2:
                    _reraise(self._translate(exc), exc)
                log.info("admin connection lost (%s); reconnecting", exc)
                if self._admin is admin:  # another task may have replaced it already
                    await self.stop()
            except Exception as exc:
                _reraise(self._translate(exc), exc)
        raise AssertionError("unreachable")

    def _translate(self, exc: BaseException) -> BaseException:
        """Turn aiokafka failures into errors that say who must act; anything else passes through."""
        from aiokafka.errors import KafkaConnectionError, KafkaError

        if isinstance(exc, ConfigError | NetworkError) or not isinstance(exc, KafkaError | OSError | TimeoutError):
            return exc
        name = type(exc).__name__
        if name in _NOT_ALLOWED:
            return _permission_error(self.settings, group_topics(self.settings), "describe or create group topics")
        if isinstance(exc, KafkaError) and not isinstance(exc, KafkaConnectionError):
            return NetworkError(
                f"A Kafka admin request failed ({name}: {exc}).",
                "Retry; if it persists, run Test connection and check the broker's logs.",
            )
        servers = ", ".join(self.settings.bootstrap_servers)
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{name}: {exc}"
        return NetworkError(
            f"Cannot reach the Kafka brokers {servers} ({reason}).",
            "Check group.bootstrap_servers, the network and the security settings; run Test connection for details.",
        )


def _reraise(error: BaseException, cause: BaseException) -> NoReturn:
    if error is cause:
        raise cause
    raise error from cause


async def _close_quietly(admin: Any) -> None:
    try:
        await asyncio.wait_for(admin.close(), 5)
    except Exception as exc:  # closing a half-open client must not hide the error that made us close it
        log.debug("closing the admin client failed: %s", exc)


async def ensure_topics(
    target: GroupSettings | TopicManager, specs: Iterable[TopicSpec], replication_factor: int | None = None
) -> list[str]:
    """Create the missing topics among `specs`; returns the names created.

    Pass a started `TopicManager` to reuse its connection, or settings for a one-off client.
    """
    if isinstance(target, TopicManager):
        return await target.ensure(specs, replication_factor)
    async with TopicManager(target) as manager:
        return await manager.ensure(specs, replication_factor)
