"""The order of a kshark run, and which failure turns which later checks into skips.

Settings first (nothing below can run on invalid TLS files); then every bootstrap server (DNS, TCP, TLS,
Kafka), concurrently; then, over the servers that answered Kafka requests, SASL login, metadata, the group's
topics, the produce/consume probe and the consumer groups. The whole run shares one `Budget`: each network
step gets at most `timeout` seconds and the run at most `budget` (3 × `timeout` unless given), so it ends in
about 15 s by default even against an address that swallows packets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.group import kafka_config as kc
from core.group import topics as tp
from core.group.kshark import cluster, groups, layout, network
from core.group.kshark.probe import best_effort, round_trip
from core.group.kshark.report import Budget, Check, skipped, timed

if TYPE_CHECKING:
    import ssl

    from core.settings import GroupSettings

SETTINGS, SASL, METADATA = "Settings", "SASL authentication", "Kafka metadata"
TOPICS, PROBE = "Group topics", "Produce/consume probe"
LATER = ((METADATA, "metadata"), (TOPICS, "topics"), (PROBE, "probe"), (groups.NAME, "consumer_group"))


def _prepare(settings: GroupSettings) -> tuple[Check, ssl.SSLContext | None]:
    """The settings line, and the verifying TLS context for SSL protocols (None when it cannot be built)."""
    if not settings.bootstrap_servers:
        hint = "Set group.bootstrap_servers, e.g. shoal config set group.bootstrap_servers '[\"kafka1:9092\"]'."
        return Check(SETTINGS, "fail", "no bootstrap servers are configured", hint, kind="settings"), None
    context = None
    info = kc.describe(settings)
    try:
        if settings.security_protocol in kc.SSL_PROTOCOLS:
            context = kc.ssl_context(settings)
    except ConfigError as exc:
        return Check(SETTINGS, "fail", exc.message, exc.fix, kind="settings", data=info), None
    who = f" as {info['sasl_username'] or '(no user)'} ({info['sasl_mechanism']})" if "sasl_username" in info else ""
    line = f"{info['security_protocol']} to {', '.join(info['bootstrap_servers'])}{who}, client id {info['client_id']}"
    return Check(SETTINGS, "ok", line, kind="settings", data=info), context


def meta(settings: GroupSettings, *, probe: bool, timeout: float, budget: float | None = None) -> dict[str, Any]:
    """The run's parameters for the JSON report (no secrets)."""
    return {
        "group": settings.name,
        "security_protocol": settings.security_protocol,
        "bootstrap_servers": list(settings.bootstrap_servers),
        "probe": probe,
        "timeout_s": timeout,
        "budget_s": budget if budget is not None else 3 * timeout,
    }


def _skip_later(reason: str, names: tuple[tuple[str, str], ...] = LATER) -> list[Check]:
    return [skipped(name, kind, reason) for name, kind in names]


async def run_checks(
    settings: GroupSettings, *, probe: bool = True, timeout: float = 5.0, budget: float | None = None
) -> AsyncGenerator[Check, None]:
    """Yield each check as it completes (see the module docstring for the order). A caller that stops early
    (a dialog closed mid-run) should `aclose()` it: that closes every Kafka client still open."""
    client = settings.client.model_copy(update={"request_timeout_ms": max(1000, int(timeout * 1000))})
    settings = settings.model_copy(update={"client": client})
    clock = Budget(budget if budget is not None else 3 * timeout, timeout)
    first, context = _prepare(settings)
    yield first
    tls = settings.security_protocol in kc.SSL_PROTOCOLS
    target = network.Target(settings, context, tls, clock, kc.client_id(settings))
    usable: list[tuple[str, int]] = []
    async with contextlib.aclosing(network.all_servers(list(settings.bootstrap_servers), target)) as servers:
        async for check in servers:
            yield check
            if check.kind == "kafka" and check.status == "ok":
                usable.append(kc.split_server(check.server))
    async with contextlib.aclosing(_cluster(settings, usable, first, clock, probe)) as rest:
        async for check in rest:  # aclosing: closing this report early closes the clients now, not at GC
            yield check


async def _cluster(
    settings: GroupSettings, usable: list[tuple[str, int]], first: Check, clock: Budget, probe: bool
) -> AsyncGenerator[Check, None]:
    """SASL and metadata over one connection, then topics, probe and consumer groups over admin clients."""
    reason = ""
    if first.status == "fail":
        reason = "the settings are incomplete (see Settings)"
    elif not usable:
        reason = "no bootstrap server answers Kafka requests"
    if settings.security_protocol in kc.SASL_PROTOCOLS:
        missing = cluster.missing_credentials(settings)
        if missing is not None:
            yield Check(SASL, "fail", missing.detail, missing.hint, kind="sasl")
            reason = reason or "no SASL credentials"
        elif reason:
            yield skipped(SASL, "sasl", reason)
    if reason:
        for check in _skip_later(reason):
            yield check
        return
    link = cluster.Link(dict(kc.client_kwargs(settings)), usable, clock)
    try:
        if settings.security_protocol in kc.SASL_PROTOCOLS:
            login = await timed(SASL, "sasl", clock, lambda: cluster.sasl(settings, link))
            yield login
            if login.status not in ("ok", "warn"):
                for check in _skip_later("SASL authentication failed"):
                    yield check
                return
        metadata = await timed(METADATA, "metadata", clock, lambda: cluster.metadata(link))
        yield metadata
    finally:
        link.close()
    if metadata.status == "fail":
        for check in _skip_later("no usable Kafka metadata", LATER[1:]):
            yield check
        return
    async with contextlib.aclosing(_group_checks(settings, clock, probe)) as checks:
        async for check in checks:
            yield check


async def _group_checks(settings: GroupSettings, clock: Budget, probe: bool) -> AsyncGenerator[Check, None]:
    manager = tp.TopicManager(settings, timeout=clock.step_limit)
    try:
        topics = await timed(TOPICS, "topics", clock, lambda: layout.group_topics(manager, settings))
        yield topics
        if probe:
            yield await timed(PROBE, "probe", clock, lambda: round_trip(manager, settings, clock))
        else:
            yield skipped(PROBE, "probe", "not requested")
    finally:
        await best_effort(clock, manager.stop())
    counts = {r["name"]: r["partitions"] for r in topics.data.get("topics", []) if r["partitions"]}
    found: list[groups.GroupFacts] = []

    async def consumer_groups() -> str:
        found.extend(await _collect(settings, counts, clock))
        return ""

    listing = await timed(groups.NAME, "consumer_group", clock, consumer_groups)
    if listing.status != "ok":
        yield listing
        return
    for check in groups.lines(found, settings, listing.duration_ms):
        yield check


async def _collect(settings: GroupSettings, counts: dict[str, int], clock: Budget) -> list[groups.GroupFacts]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kc.admin_kwargs(settings))
    try:
        await admin.start()
        return await groups.collect(admin, settings, counts, clock)
    finally:
        await best_effort(clock, admin.close())
