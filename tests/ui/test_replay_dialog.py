"""File › Replay group topic…: the dialog lists a topic's envelopes from the real broker, each marked verified
or not, filtered by start and correlation, with group mode off in the app."""

from __future__ import annotations

import json
import uuid
from typing import Any

from PySide6.QtWidgets import QPushButton

from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker, create_topics
from tests.group.helpers import RawPeer
from tests.ui.conftest import scripted_bridge, wait_until
from ui.dialogs.replay import ReplayDialog
from ui.main_window import MainWindow
from ui.widgets.envelope_table import Col


async def sent_sequence(broker: TansuBroker, group: str) -> list[dict[str, Any]]:
    """A hand-made peer announces itself and sends two requests, then a tampered copy of the first."""
    await create_topics(broker.bootstrap, [f"group.{group}.announce", f"group.{group}.requests"])
    async with RawPeer(broker, group, "ripley") as peer:
        await peer.announce()
        first, second = peer.request("", "first question"), peer.request("", "second question")
        tampered = {**first, "data": {**first["data"], "input": "something else"}}
        for envelope in (first, second, tampered):
            await peer.send("requests", envelope, key=peer.agent_id)
    return [first, second, tampered]


def cells(dialog: ReplayDialog, col: Col) -> list[str]:
    return [dialog.table.item(row, col).text() for row in range(dialog.table.rowCount())]


async def test_the_dialog_lists_a_topic_verified_from_an_offset_and_by_correlation(kafka_broker: TansuBroker) -> None:
    group = f"u{uuid.uuid4().hex[:8]}"
    sent = await sent_sequence(kafka_broker, group)
    overrides = {
        "memory": {"enabled": False},
        "group": {"name": group, "bootstrap_servers": [kafka_broker.bootstrap], "client": dict(TEST_CLIENT_SETTINGS)},
    }
    async with scripted_bridge(["unused"], overrides=overrides) as (bridge, _):
        window = MainWindow(bridge)
        window.replay_action.trigger()
        dialog = window.findChild(ReplayDialog)
        assert dialog is not None and dialog.isVisible()
        dialog.topic.setEditText("requests")
        dialog.list_button.click()
        await wait_until(lambda: dialog.table.rowCount() == 3, timeout=20, message=dialog.status.plain)
        assert cells(dialog, Col.WHERE) == ["0:0", "0:1", "0:2"]
        assert cells(dialog, Col.STATUS) == ["verified", "verified", "bad-signature"]
        assert all(text.startswith("ripley (") for text in cells(dialog, Col.SENDER))
        assert cells(dialog, Col.CORRELATION) == [e["correlationid"][:12] for e in sent]
        assert 'input="second question"' in cells(dialog, Col.SUMMARY)[1]
        assert dialog.table.row_data(0)["id"] == sent[0]["id"]
        assert dialog.status.kind == "ok" and "3 envelopes, 2 verified" in dialog.status.plain

        dialog.start.setText("1")
        dialog.correlation.setText(sent[0]["correlationid"])
        dialog.list_button.click()
        await wait_until(lambda: dialog.table.rowCount() == 1 and not dialog.running, timeout=20)
        assert cells(dialog, Col.WHERE) == ["0:2"] and cells(dialog, Col.STATUS) == ["bad-signature"]

        dialog.start.setText("last tuesday")
        dialog.list_button.click()
        await wait_until(lambda: dialog.status.kind == "error", timeout=20)
        assert "is not a position" in dialog.status.plain
        assert isinstance(dialog.list_button, QPushButton) and dialog.list_button.isEnabled()
        assert json.dumps(dialog.table.row_data(0))  # rows are plain data (what the bridge returned)
        dialog.reject()
