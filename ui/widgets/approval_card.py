"""One question the agent is waiting on: which tool, how risky, the exact action, and three answers.

The action is shown exactly as the core will run it (`ApprovalRequest.summary`, e.g. the re-quoted argv of a
shell command), in a monospace, selectable box that wraps anywhere: nothing is paraphrased or cut off, so
what a person approves is what runs.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase, QTextOption
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from core.approvals import PendingApproval
from core.tools.registry import ApprovalDecision
from ui.widgets.event_format import pretty_json
from ui.widgets.risk import risk_badge, risk_color

MAX_SUMMARY_LINES = 6


class ApprovalCard(QFrame):
    decided = Signal(str, object)  # approval id, ApprovalDecision

    def __init__(self, pending: PendingApproval, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pending = pending
        request = pending.request
        self.setObjectName("approvalCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(
            f"QFrame#approvalCard {{ border: 1px solid {risk_color(request.risk)}; border-left-width: 4px;"
            " border-radius: 4px; }"
        )
        self.session_label = QLabel(f"session {request.session_id[:8]}…", self)
        self.session_label.setToolTip(request.session_id)
        self.summary = self._summary_box(request.summary, request.arguments)
        self.approve_button = QPushButton("Approve once", self)
        self.session_button = QPushButton("Always for this session", self)
        self.deny_button = QPushButton("Deny", self)
        self.approve_button.setDefault(True)
        self.session_button.setToolTip(f"Run {request.tool} without asking again in this session")
        self.deny_button.setToolTip("The agent is told you did not approve, and continues without it")
        for button, decision in (
            (self.approve_button, ApprovalDecision.APPROVE_ONCE),
            (self.session_button, ApprovalDecision.APPROVE_SESSION),
            (self.deny_button, ApprovalDecision.DENY),
        ):
            button.clicked.connect(lambda _=False, d=decision: self._decide(d))
        self._lay_out(request.tool, request.risk)
        if not request.session_id:  # not asked by a turn (e.g. "let X join the group?"): no session to remember
            self.session_label.hide()
            self.session_button.hide()

    def _summary_box(self, summary: str, arguments: dict[str, object]) -> QPlainTextEdit:
        box = QPlainTextEdit(summary, self)
        box.setReadOnly(True)
        box.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        box.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        box.setToolTip(f"Arguments:\n{pretty_json(arguments)}")
        lines = min(MAX_SUMMARY_LINES, max(1, summary.count("\n") + 1 + len(summary) // 60))
        box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + 14)
        return box

    def _lay_out(self, tool: str, risk: str) -> None:
        title = QLabel(f"<b>{html.escape(tool)}</b> wants to run:", self)
        head = QHBoxLayout()
        head.addWidget(risk_badge(risk, self))
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.session_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.approve_button)
        buttons.addWidget(self.session_button)
        buttons.addStretch(1)
        buttons.addWidget(self.deny_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(head)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)

    @property
    def approval_id(self) -> str:
        return self.pending.id

    def set_session_title(self, title: str) -> None:
        self.session_label.setText(f"in “{title}”")

    def _decide(self, decision: ApprovalDecision) -> None:
        """Answer once: the buttons lock so a double click cannot answer twice."""
        for button in (self.approve_button, self.session_button, self.deny_button):
            button.setEnabled(False)
        self.decided.emit(self.pending.id, decision)
