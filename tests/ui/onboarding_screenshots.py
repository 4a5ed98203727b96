"""Screenshots of closed groups in the desktop app for docs and review, against a real Tansu broker: the invite
dialog right after founding (the code shown once), its join tab with a refusal, and the group pane of the founder
with members admitted, one waiting, one removed, and a private zone.

    xvfb-run -a .venv/bin/python -m tests.ui.onboarding_screenshots docs/screenshots
    (or QT_QPA_PLATFORM=offscreen … without a display server)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "tests.fixtures.memory_keyring.MemoryKeyring")


async def shots(folder: Path, tmp: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from core.group.invite import Invite
    from tests.fixtures.cores import scripted_core
    from tests.fixtures.kafka_broker import TansuBroker
    from tests.group.helpers import group_overrides
    from tests.group.test_onboarding import member
    from tests.ui.conftest import wait_until
    from tests.ui.test_group_onboarding_ui import desktop
    from ui.dialogs.group_invite import GroupInviteDialog
    from ui.theme import apply_theme

    apply_theme(QApplication.instance(), "light")
    group = f"research-{uuid.uuid4().hex[:4]}"
    with TansuBroker() as kafka:
        async with desktop(tmp, "founder") as (window, bridge), AsyncExitStack() as stack:
            pane = window.roster
            pane.invite_button.click()
            [dialog] = [d for d in pane.dialogs() if isinstance(d, GroupInviteDialog)]
            dialog.group_name.setText(group)
            dialog.servers.setText(kafka.bootstrap)
            dialog.founder_name.setText("desk")
            dialog.create_button.click()
            await wait_until(lambda: not dialog.running, timeout=60)
            code = dialog.code_field.text()
            await asyncio.sleep(0.3)
            assert dialog.grab().save(str(folder / "group-invite.png"))
            dialog.reject()

            invite = Invite.parse(code)
            for name in ("build-box", "laptop", "old-laptop"):
                core = await stack.enter_async_context(member(kafka, group, name, tmp / name, invite))
                await core.group.node.onboarding.join(30)
            await wait_until(lambda: {"build-box", "laptop", "old-laptop"} <= set(pane.table.names()), timeout=30)
            ids = {m.name: m.agentid for m in bridge.core.group.members()}
            stranger = group_overrides(kafka, group, "stranger", tmp / "stranger")
            await stack.enter_async_context(scripted_core(["hi"], overrides=stranger))  # no invite: held back
            await bridge.group.admin.define_zone("finance", [ids["desk"], ids["laptop"]], "Q3 numbers")
            await bridge.group.admin.remove_member(ids["old-laptop"], "lost on a train")
            await wait_until(lambda: ("stranger", "pending") in pane.membership_list.entries(), timeout=30)
            await asyncio.sleep(1.0)
            window.group_dock.show()
            window.group_dock.raise_()
            pane.resize(1180, 520)
            assert pane.grab().save(str(folder / "group-membership.png"))
            editor = pane.open_zone("finance")
            await asyncio.sleep(0.3)
            assert editor.grab().save(str(folder / "group-zone.png"))
            editor.reject()

            async with desktop(tmp, "guesser", join_timeout=8) as (guesser, _bridge):
                join = guesser.roster.open_invite("join")
                assert isinstance(join, GroupInviteDialog)
                join.code_edit.setPlainText(Invite(group, b"x" * 32, invite.founder, invite.bootstrap).code())
                join.joiner_name.setText("guesser")
                join.join_button.click()
                await wait_until(lambda: not join.running, timeout=60)
                await asyncio.sleep(0.3)
                assert join.grab().save(str(folder / "group-join.png"))
                join.reject()


def main() -> int:
    import qasync

    from app.gui import make_qapp

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    app = make_qapp()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-shots-") as tmp, loop:
        os.environ["SHOAL_CONFIG"] = str(Path(tmp) / "config.toml")
        loop.run_until_complete(asyncio.wait_for(shots(folder, Path(tmp)), 180))
    print(f"saved group-invite.png, group-membership.png and group-join.png in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
