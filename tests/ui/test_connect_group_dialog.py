"""The Connect-to-group dialog with real widgets: per-field validation, protocol-dependent fields, the password
kept out of config.toml, and Test connection streaming real checks against the Tansu broker and dead ports."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from core import config_file
from core.group import kafka_config as kc
from core.settings import load_settings
from tests.fixtures.kafka_broker import TansuBroker
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.ui.conftest import scripted_bridge, wait_until
from ui.bridge import Bridge
from ui.dialogs.connect_group import ConnectGroupDialog


@asynccontextmanager
async def connect_dialog() -> AsyncIterator[tuple[ConnectGroupDialog, Bridge]]:
    async with scripted_bridge(["hi"]) as (bridge, _):
        dialog = ConnectGroupDialog(bridge)
        dialog.open()
        try:
            yield dialog, bridge
        finally:
            dialog.reject()
            await wait_until(lambda: not dialog.testing, message="the test did not stop with the dialog")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def written() -> dict[str, Any]:
    return config_file.read(load_settings().config_file)


def fill(dialog: ConnectGroupDialog, *, servers: str, group: str, **fields: str) -> None:
    dialog.servers.setText(servers)
    dialog.group_name.setText(group)
    dialog.agent_name.setText(fields.get("agent", "desk"))
    if "protocol" in fields:
        dialog.protocol.setCurrentText(fields["protocol"])


async def test_wrong_fields_block_connect_with_a_message_each() -> None:
    async with connect_dialog() as (dialog, bridge):
        fill(dialog, servers="  ,  ", group="my group!")
        dialog.skills.add_row("Code Review", "reads diffs")
        dialog.skills.add_row("", "")  # an empty row is ignored, not an error
        dialog.skills.add_row("summarize", "")
        dialog.skills.add_row("summarize", "again")
        dialog.connect_button.click()
        await asyncio.sleep(0.05)
        assert dialog.isVisible() and bridge.core.group is None
        assert "at least one broker as host:port" in dialog.errors["bootstrap_servers"].plain
        assert dialog.errors["name"].plain.startswith("Use 1–63 letters, digits, - or _")
        rows = dialog.skills.rows
        assert rows[0].error.plain.startswith("Skill names are 1–63 lowercase letters")
        assert rows[1].error.kind == "" and rows[2].error.kind == ""
        assert rows[3].error.plain == "There is already a skill called summarize."
        assert not load_settings().config_file.exists(), "nothing is written while a field is wrong"

        dialog.servers.setText("kafka.example.com:port")
        dialog.connect_button.click()
        await asyncio.sleep(0.05)
        assert "'kafka.example.com:port' is not host:port" in dialog.errors["bootstrap_servers"].plain
        dialog.servers.textEdited.emit("x")  # typing clears the field's message
        assert dialog.errors["bootstrap_servers"].isHidden()


async def test_sasl_and_tls_fields_follow_the_protocol() -> None:
    async with connect_dialog() as (dialog, _):
        visible = {}
        for protocol in ("SSL", "SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"):
            dialog.protocol.setCurrentText(protocol)
            visible[protocol] = (dialog.username.isVisible(), dialog.cafile.isVisible())
        assert visible == {
            "PLAINTEXT": (False, False),
            "SSL": (False, True),
            "SASL_PLAINTEXT": (True, False),
            "SASL_SSL": (True, True),
        }
        assert dialog.password.isVisible() == dialog.mechanism.isVisible() == dialog.username.isVisible()
        assert dialog.keyfile.isVisible() == dialog.certfile.isVisible() == dialog.cafile.isVisible()
        assert dialog.password.echoMode() == dialog.password.EchoMode.Password

        dialog.protocol.setCurrentText("SASL_SSL")
        fill(dialog, servers="localhost:9092", group="team")
        dialog.keyfile.setText("/nowhere/client.key")
        dialog.connect_button.click()
        await asyncio.sleep(0.05)
        assert dialog.errors["sasl_username"].plain.startswith("Enter your Kafka user name")
        assert dialog.errors["password"].plain.startswith("Enter the password")
        assert dialog.errors["ssl_keyfile"].plain == "No file at /nowhere/client.key."
        assert "needs its certificate" in dialog.errors["ssl_certfile"].plain


async def test_the_password_goes_to_the_keyring_and_never_into_the_file() -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    async with connect_dialog() as (dialog, bridge):
        fill(dialog, servers=f"127.0.0.1:{closed_port()}", group=group, protocol="SASL_PLAINTEXT")
        dialog.mechanism.setCurrentText("SCRAM-SHA-256")
        dialog.username.setText("ada")
        dialog.password.setText("s3cret-Pa55word")
        dialog.skills.add_row("coder", "writes Python")
        connected: list[bool] = []
        dialog.connected.connect(lambda: connected.append(True))
        dialog.connect_button.click()
        await wait_until(lambda: bool(connected), message=dialog.general_error.plain or "not connected")
        assert not dialog.isVisible()
        text = load_settings().config_file.read_text(encoding="utf-8")
        assert "s3cret-Pa55word" not in text and "password" not in text
        assert MemoryKeyring.store[("shoal", f"group-password:{group}")] == "s3cret-Pa55word"
        group_section = written()["group"]
        assert group_section["enabled"] is True and group_section["name"] == group
        assert group_section["sasl_username"] == "ada" and group_section["sasl_mechanism"] == "SCRAM-SHA-256"
        assert group_section["skills"] == [{"name": "coder", "description": "writes Python", "handler": "agent"}]
        assert bridge.core.group is not None, "the core joined (connecting in the background)"
        assert bridge.core.settings.group.name == group

        again = ConnectGroupDialog(bridge)  # reopened: the stored password is not asked for again
        assert again.password.text() == "" and again.password.placeholderText().startswith("stored")
        assert again.skills.value() == [{"name": "coder", "description": "writes Python"}]
        assert again.disconnect_button.isEnabled()
        again.disconnect_button.click()
        await wait_until(lambda: bridge.core.group is None, message=again.general_error.plain or "still in the group")
        assert written()["group"]["enabled"] is False


async def test_test_connection_streams_every_check_against_the_broker(kafka_broker: TansuBroker) -> None:
    async with connect_dialog() as (dialog, bridge):
        fill(dialog, servers=kafka_broker.bootstrap, group=f"g{uuid.uuid4().hex[:8]}")
        dialog.test_button.click()
        assert dialog.testing and dialog.test_button.text() == "Stop test"
        await wait_until(lambda: bool(dialog.checks.checks))
        assert "Produce/consume probe" not in dialog.checks.statuses(), "rows appear as each check completes"
        await wait_until(lambda: not dialog.testing, timeout=30)
        host, port = kc.split_server(kafka_broker.bootstrap)
        statuses = dialog.checks.statuses()
        assert list(statuses) == [
            "Settings",
            f"DNS {host}",
            f"TCP {host}:{port}",
            f"Kafka {host}:{port}",
            "Kafka metadata",
            "Group topics",
            "Produce/consume probe",
            "Consumer groups",
        ]
        assert statuses["Produce/consume probe"] == "ok" and statuses["Kafka metadata"] == "ok"
        assert statuses["Group topics"] == "warn"  # a new group: its topics are created on join
        assert statuses["Consumer groups"] == "warn"  # and nobody has joined it yet
        assert len(dialog.checks.labels) == 8 and "round trip" in dialog.checks.labels[-2].text()
        assert "It works, with warnings" in dialog.checks.status.text()
        assert dialog.test_button.text() == "Test connection"
        assert bridge.core.group is None and not load_settings().config_file.exists(), "testing saves nothing"


async def test_a_closed_port_fails_at_tcp_with_a_hint() -> None:
    async with connect_dialog() as (dialog, _):
        port = closed_port()
        fill(dialog, servers=f"127.0.0.1:{port}", group="team")
        dialog.test_button.click()
        await wait_until(lambda: not dialog.testing, timeout=20)
        tcp = next(c for c in dialog.checks.checks if c.name == f"TCP 127.0.0.1:{port}")
        assert tcp.status == "fail" and "is the broker running" in tcp.hint
        label = dialog.checks.labels[dialog.checks.checks.index(tcp)].text()
        assert "FAIL" in label and "is the broker running" in label
        assert dialog.checks.statuses()["Kafka metadata"] == "skip"
        assert "fix the first failed step" in dialog.checks.status.text()


async def test_a_running_test_stops_at_once_and_the_gui_keeps_going() -> None:
    """A listener that accepts and never answers: the Kafka handshake would wait for its full timeout."""
    clients: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect_dialog() as (dialog, _):
            fill(dialog, servers=f"127.0.0.1:{port}", group="team")
            dialog.test_button.click()
            await wait_until(lambda: f"TCP 127.0.0.1:{port}" in dialog.checks.statuses(), timeout=10)
            await asyncio.sleep(0.2)  # inside the metadata step now
            assert dialog.testing
            loop = asyncio.get_running_loop()
            started = loop.time()
            dialog.test_button.click()  # "Stop test"
            await wait_until(lambda: not dialog.testing, timeout=3)
            assert loop.time() - started < 1.5
            assert dialog.checks.status.text().endswith("Stopped.</span>")
            assert "Kafka metadata" not in dialog.checks.statuses()
    finally:
        for writer in clients:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_the_report_shows_a_tls_mismatch_in_red_with_its_hint(kafka_broker: TansuBroker) -> None:
    """The kshark report in the dialog: SSL chosen for the broker's plaintext port."""
    from ui.widgets.group_format import check_style

    async with connect_dialog() as (dialog, _):
        fill(dialog, servers=kafka_broker.bootstrap, group=f"g{uuid.uuid4().hex[:8]}", protocol="SSL")
        dialog.test_button.click()
        await wait_until(lambda: not dialog.testing, timeout=30)
        host, port = kc.split_server(kafka_broker.bootstrap)
        checks = {c.name: c for c in dialog.checks.checks}
        tls = checks[f"TLS {host}:{port}"]
        assert tls.status == "fail" and tls.hint.startswith("The server does not speak TLS")
        label = dialog.checks.labels[dialog.checks.checks.index(tls)].text()
        assert f"color:{check_style('fail')[1]}" in label and "FAIL" in label
        assert "The server does not speak TLS" in label and "PLAINTEXT" in label
        skipped = dialog.checks.labels[dialog.checks.checks.index(checks["Consumer groups"])].text()
        assert f"color:{check_style('skip')[1]}" in skipped and "SKIP" in skipped and "→" not in skipped
        assert dialog.checks.statuses()[f"TCP {host}:{port}"] == "ok"
        assert "fix the first failed step" in dialog.checks.status.text()
