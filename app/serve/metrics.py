"""`/metrics` in the Prometheus text format.

Counters come from two places: the HTTP gate (requests, latency, refusals) and the timeline, whose
listener sees every recorded step whoever started it (API, desktop, scheduler, a peer's task) — so
tokens, tool calls and errors count all the agent's work, not only what came through HTTP. Group
figures (outbox depth, consumer lag) are read when scraped. A registry per server, never the global
one, so two servers in one process (tests) do not share counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.timeline.store import Event

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # no `_created` series: twice the lines for a timestamp nobody graphs


class _GroupCollector(Collector):
    """Scrape-time figures of the group: outbox depth and, per topic partition, consumer lag (records and
    seconds, docs/lag.md), and whether a lag warning is on."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Any:
        try:
            figures = self._read()
        except Exception:  # a scrape must never fail because the group is reconnecting
            log.debug("group figures unavailable for /metrics", exc_info=True)
            figures = {}
        outbox = GaugeMetricFamily("shoal_group_outbox_depth", "Envelopes written but not yet acknowledged by Kafka")
        outbox.add_metric([], float(figures.get("outbox_depth", 0)))
        yield outbox
        lag = GaugeMetricFamily(
            "shoal_group_consumer_lag",
            "Records behind the end of each consumed partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(figures.get("lag", {}).items()):
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag
        seconds = GaugeMetricFamily(
            "shoal_group_consumer_lag_seconds",
            "Age of the oldest unhandled record of each consumed partition (0 when caught up)",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(figures.get("lag_seconds", {}).items()):
            seconds.add_metric([topic, str(partition)], float(behind))
        yield seconds
        warning = GaugeMetricFamily("shoal_group_lag_warning", "1 while a partition's lag stays over the limits")
        warning.add_metric([], 1.0 if figures.get("lag_warning") else 0.0)
        yield warning
        joined = GaugeMetricFamily("shoal_group_joined", "1 while attached to a Kafka group")
        joined.add_metric([], 1.0 if figures.get("joined") else 0.0)
        yield joined


class ServeMetrics:
    def __init__(self, group_figures: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shoal_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "shoal_http_request_seconds",
            "Time to the response's first byte",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.refused = Counter(
            "shoal_http_refused", "Requests refused before routing", ["reason"], registry=self.registry
        )
        self.tokens = Counter("shoal_llm_tokens", "Model tokens", ["direction", "model"], registry=self.registry)
        self.llm_calls = Counter("shoal_llm_calls", "Model calls", ["model", "status"], registry=self.registry)
        self.tool_calls = Counter("shoal_tool_calls", "Tool calls finished", ["tool", "status"], registry=self.registry)
        self.turns = Counter("shoal_turns", "Turns ended", ["status"], registry=self.registry)
        self.errors = Counter("shoal_errors", "Failures recorded in the timeline", ["kind"], registry=self.registry)
        self.streams = Gauge("shoal_sse_streams", "Open Server-Sent Events streams", registry=self.registry)
        if group_figures is not None:
            self.registry.register(_GroupCollector(group_figures))

    def on_event(self, event: Event) -> None:
        """Timeline listener (called on the loop after each committed write): count the agent's work."""
        kind = event.kind
        if kind == "llm.response":
            model = event.model or ""
            self.llm_calls.labels(model, event.status).inc()
            self.tokens.labels("input", model).inc(event.input_tokens or 0)
            self.tokens.labels("output", model).inc(event.output_tokens or 0)
        elif kind == "tool.result":
            self.tool_calls.labels(event.name, event.status).inc()
        elif kind == "turn.end":
            self.turns.labels(event.status).inc()
        elif kind == "error":
            self.turns.labels("failed").inc()
            self.errors.labels(event.name or "error").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
