"""Fixtures for group tests: a real Tansu broker (Kafka protocol), see tests/fixtures/kafka_broker.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.kafka_broker import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """One broker for the whole run (starting one takes ~30 ms, but sharing keeps topics cheap to reason about:
    give every test its own topic and group names). Never restart it: use `fresh_broker` for that."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def fresh_broker() -> Iterator[TansuBroker]:
    """A broker of the test's own, for tests that restart or stop it (an outage would break the shared one)."""
    with TansuBroker() as broker:
        yield broker


from tests.fixtures.memory import embedding_client  # noqa: E402, F401 - the shared embedding model process
