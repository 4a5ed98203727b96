"""The shape of a kshark report: one `Check` per line, the run's time budget, and the text and JSON renderings.

Every check ends as a `Check` whatever happens inside it (a timeout, a refused login, a bug), so a report always
finishes and always says which layer is at fault. A check that cannot run because an earlier one failed is a
"skip" that names the reason; skips never change the verdict.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import ShoalError

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")
SCHEMA = "shoal.kshark/1"
RANK = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}
SYMBOL = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "–"}
# Exit codes of `shoal kshark`: scripts branch on them (docs/kshark.md).
EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 2
MIN_STEP = 0.05  # below this much time left, a check is skipped rather than started and cut short
TIMEOUT_HINTS = {
    "tcp": "A firewall or VPN may be dropping the packets: check the host and port with the cluster's admin.",
    "tls": "The port may be a PLAINTEXT listener (it waits for a Kafka request): check the port and protocol.",
    "kafka": "The port is open but does not answer like a Kafka broker: check the port (a proxy? another service?).",
    "": "The server is slow or not a Kafka broker: check group.bootstrap_servers and group.security_protocol.",
}


@dataclass(frozen=True)
class Check:
    """One line of the report. `hint` says what to do when the status is warn or fail; `kind` names the check
    for machines (dns, tcp, tls, kafka, sasl, metadata, topics, probe, consumer_group, …), `server` is the
    bootstrap server of per-server checks, and `data` holds the structured facts behind `detail`."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    duration_ms: float = 0.0
    kind: str = ""
    server: str = ""
    data: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "server": self.server or None,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
            "duration_ms": self.duration_ms,
            "data": self.data,
        }


class Failed(Exception):
    """Raised inside a check to end it with a status other than ok, a detail, a hint and optional data."""

    def __init__(self, detail: str, hint: str = "", status: Status = "fail", data: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail, self.hint, self.status, self.data = detail, hint, status, data or {}


@dataclass
class Passed:
    """What a check returns when it passes: its detail and the structured facts behind it (a check that only
    warns raises `Failed` with status "warn" instead)."""

    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class Budget:
    """The whole run's time limit, shared by its steps: each step gets at most `step` seconds and never more
    than what is left, so a black-hole address cannot stretch the run past `total`."""

    def __init__(self, total: float, step: float) -> None:
        self.total, self.step_limit = total, step
        self.deadline = time.monotonic() + total

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def step(self) -> float:
        return max(0.0, min(self.step_limit, self.remaining()))

    @property
    def spent(self) -> bool:
        return self.remaining() < MIN_STEP

    def out_of_time(self, name: str, kind: str, server: str = "") -> Check:
        return Check(
            name,
            "skip",
            f"not run: the run's {self.total:g} s time budget is spent",
            "Run again with a larger --timeout.",
            kind=kind,
            server=server,
        )


async def timed(
    name: str, kind: str, budget: Budget, step: Callable[[], Awaitable[str | Passed]], server: str = ""
) -> Check:
    """Run one check within the budget's step time; every outcome (even a bug) becomes a Check."""
    if budget.spent:
        return budget.out_of_time(name, kind, server)
    limit = budget.step()
    start = time.monotonic()
    status: Status = "ok"
    hint = ""
    data: dict[str, Any] = {}
    try:
        async with asyncio.timeout(limit):
            result = await step()
        detail, data = (result.detail, result.data) if isinstance(result, Passed) else (result, {})
    except Failed as failed:
        status, detail, hint, data = failed.status, failed.detail, failed.hint, failed.data
    except TimeoutError:
        status, detail = "fail", f"no answer within {limit:.3g} s"
        hint = TIMEOUT_HINTS.get(kind, TIMEOUT_HINTS[""])
        if limit < budget.step_limit:
            detail += f" (all that was left of the run's {budget.total:g} s)"
            hint += " Or run again with a larger --timeout."
    except ShoalError as exc:
        status, detail, hint = "fail", exc.message, exc.fix
    except Exception as exc:
        status, detail, hint = "fail", f"{type(exc).__name__}: {exc}", "Unexpected: run again with debug logging."
    elapsed = round((time.monotonic() - start) * 1000, 1)
    return Check(name, status, detail, hint, elapsed, kind, server, data)


def skipped(name: str, kind: str, reason: str, server: str = "") -> Check:
    return Check(name, "skip", reason, kind=kind, server=server)


# -- verdict and renderings --------------------------------------------------------------------------------


def overall(checks: Iterable[Check]) -> Status:
    """The worst status among the checks (skips do not count); "ok" when there are none."""
    return max((c.status for c in checks if c.status != "skip"), key=RANK.__getitem__, default="ok")


def counts(checks: Iterable[Check]) -> dict[str, int]:
    items = list(checks)
    return {status: sum(c.status == status for c in items) for status in STATUSES}


def exit_code(checks: Iterable[Check], *, strict: bool = False) -> int:
    """0 when nothing failed (warnings allowed), 2 when a check failed; with `strict`, 1 for warnings."""
    verdict = overall(checks)
    if verdict == "fail":
        return EXIT_FAIL
    return EXIT_WARN if strict and verdict == "warn" else EXIT_OK


def tally(checks: Iterable[Check]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts(checks).items() if n) or "no checks"


def summarize(checks: Iterable[Check]) -> str:
    """Plain text for logs: one line per check, the hint under anything warn or fail, then a verdict."""
    items = list(checks)
    lines = []
    for check in items:
        lines.append(f"{SYMBOL[check.status]} {check.name}: {check.detail} ({check.duration_ms:.0f} ms)")
        if check.hint and check.status in ("warn", "fail"):
            lines.append(f"    → {check.hint}")
    lines.append(f"Result: {overall(items).upper()} ({tally(items)})")
    return "\n".join(lines)


def report_dict(
    checks: Iterable[Check], *, meta: dict[str, Any], started: float, strict: bool = False
) -> dict[str, Any]:
    """The `--json` document (schema: resources/schemas/kshark.schema.json). `started` is a `time.time()`."""
    items = list(checks)
    return {
        "schema": SCHEMA,
        "status": overall(items),
        "exit_code": exit_code(items, strict=strict),
        "counts": counts(items),
        "started": datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z"),
        "duration_ms": round((time.time() - started) * 1000, 1),
        **meta,
        "checks": [c.to_dict() for c in items],
    }


def to_json(checks: Iterable[Check], *, meta: dict[str, Any] | None = None, started: float | None = None) -> str:
    return json.dumps(
        report_dict(checks, meta=meta or {}, started=time.time() if started is None else started), ensure_ascii=False
    )
