"""Builders for group tests: settings for a member of a test group on the real broker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker


def group_overrides(
    broker: TansuBroker,
    group: str,
    name: str,
    data_dir: Path,
    *,
    skills: list[dict[str, str]] | None = None,
    heartbeat: float = 0.5,
    **extra: Any,
) -> dict[str, Any]:
    """CLI-layer settings for one member: its own data folder, test client timings, short heartbeats."""
    return {
        "paths": {"data_dir": str(data_dir)},
        "group": {
            "enabled": True,
            "name": group,
            "bootstrap_servers": [broker.bootstrap],
            "agent_name": name,
            "skills": skills or [],
            "heartbeat_interval": heartbeat,
            "partitions": 2,
            "client": dict(TEST_CLIENT_SETTINGS),
            **extra,
        },
    }


def group_env(broker: TansuBroker, group: str, name: str, data_dir: Path, **kwargs: Any) -> dict[str, str]:
    """The same as environment variables, for member processes (`SHOAL_GROUP__*`)."""
    import json

    env = dict(os.environ)
    for section, values in group_overrides(broker, group, name, data_dir, **kwargs).items():
        for key, value in values.items():
            name_ = f"SHOAL_{section.upper()}__{key.upper()}"
            env[name_] = json.dumps(value) if not isinstance(value, str) else value
    return env


async def eventually(check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Wait for `check()` to hold; fail with the condition's source line otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
