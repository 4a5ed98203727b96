"""kshark, the group connection doctor (`shoal kshark`, `shoal group test`, the connect dialog's Test button).

Kafka clients report almost every failure as "unable to bootstrap", which tells the user nothing. kshark
checks each layer between this machine and the group on its own, per bootstrap server DNS, TCP, TLS (with the
certificate's names and expiry) and whether the listener speaks Kafka in the chosen protocol; then SASL login,
metadata, the group's topics against docs/protocol.md §5, a produce/consume round trip and the group's
consumer groups with their lag. Each check is one line: ok, warn, fail or skip, a short detail, and a hint that
says what to do. Checks are yielded as they finish so a dialog (or the CLI) can show progress. See
docs/kshark.md.

Modules: `report` (Check, the budget, verdict and JSON), `network` (per server), `certs`, `wire` (a raw
ApiVersions), `cluster` (SASL, metadata), `layout` (topics), `probe`, `groups` (consumer groups, lag), `run`.
No aiokafka at import time: it is imported inside the checks that need it.
"""

from __future__ import annotations

from core.group.kshark.report import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_WARN,
    SCHEMA,
    Check,
    Status,
    exit_code,
    overall,
    report_dict,
    summarize,
    tally,
    to_json,
)
from core.group.kshark.run import meta, run_checks

__all__ = [
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_WARN",
    "SCHEMA",
    "Check",
    "Status",
    "exit_code",
    "meta",
    "overall",
    "report_dict",
    "run_checks",
    "summarize",
    "tally",
    "to_json",
]
