"""“Check…”: what the rules would decide for one request, as `shoal policy check` explains it.

Action, target, requester, label and (for tools) risk in; the decision (allow green, ask amber, deny red), the
rule that made it with its file and line, why each rule before it did not apply, and the quotas and rate
limits that would also count, out. Nothing is recorded or asked: it only reads the rules in force.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.policy.labels import NAMES
from ui.policy_bridge import ACTIONS, Checked, PolicyBridge
from ui.widgets.inline_message import InlineMessage
from ui.widgets.policy_format import effect_color

REQUESTERS = ("local", "schedule", "api", "peer:")
OWN_RISK = "the tool's own"
TARGET_HINT = {
    "model": "llama_cpp, or openai:<host>",
    "tool": "a tool's name",
    "zone": "public, shared, or a private zone's name",
    "peer": "a peer's name or agent id, or skill:<name>",
}


def _editable(parent: QWidget, items: tuple[str, ...] | list[str] = ()) -> QComboBox:
    box = QComboBox(parent)
    box.setEditable(True)
    box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    box.addItems(list(items))
    return box


class PolicyCheck(QWidget):
    def __init__(self, policy: PolicyBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.policy = policy
        self.action = QComboBox(self)
        self.action.addItems(list(ACTIONS))
        self.target = _editable(self)
        self.requester = _editable(self, REQUESTERS)
        self.requester.setToolTip("local (you, here), schedule, api, or peer:<name> for a group member's task")
        self.label = QComboBox(self)
        self.label.addItems(list(NAMES))
        self.risk = QComboBox(self)
        self.risk.addItems([OWN_RISK, "low", "medium", "high"])
        self.risk.setToolTip("Tools only: the risk the rule sees (unknown tools count as high)")
        self.check_button = QPushButton("&Check", self)
        self.check_button.setToolTip("What the rules in force would decide (nothing is recorded or asked)")
        self.verdict = QLabel(self)
        self.verdict.setObjectName("policyVerdict")
        self.verdict.hide()
        self.error = InlineMessage(self)
        self.explanation = QPlainTextEdit(self)
        self.explanation.setReadOnly(True)
        self.explanation.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.explanation.setPlaceholderText("The decision, the rule that made it, and why the rules before it did not.")
        self._build()
        self.action.currentTextChanged.connect(self._on_action)
        self.check_button.clicked.connect(self.run_check)
        self.label.activated.connect(lambda _index: self.label.setProperty("touched", True))  # keep their choice
        self.target.lineEdit().returnPressed.connect(self.run_check)
        self.requester.lineEdit().returnPressed.connect(self.run_check)

    def _build(self) -> None:
        """No mnemonics on the labels: the pane is docked in the main window, where Alt+L is the composer's label
        picker; Tab moves through the fields, Enter in a text field checks."""
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Action:", self.action)
        form.addRow("Target:", self.target)
        form.addRow("Requester:", self.requester)
        form.addRow("Data label:", self.label)
        form.addRow("Risk:", self.risk)
        buttons = QHBoxLayout()
        buttons.addWidget(self.verdict, 1)
        buttons.addWidget(self.check_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        column.addLayout(form)
        column.addLayout(buttons)
        column.addWidget(self.error)
        column.addWidget(self.explanation, 1)

    # --- public ----------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Suggestions and defaults from the policy in force (the configured model, its tools, the default
        label); what the person typed stays."""
        if not self.policy.available:
            return
        if self.label.property("touched") is not True:
            self.label.setCurrentText(self.policy.default_label)
        self._on_action(self.action.currentText(), keep=True)

    def set_request(
        self, action: str, target: str, *, requester: str = "local", label: str = "", risk: str = ""
    ) -> None:
        self.action.setCurrentText(action)
        self.target.setCurrentText(target)
        self.requester.setCurrentText(requester)
        if label:
            self.label.setCurrentText(label)
            self.label.setProperty("touched", True)
        self.risk.setCurrentText(risk or OWN_RISK)

    def run_check(self) -> Checked | None:
        """Decide and show; a bad entry (a tool with no name) is said under the form, nothing is raised."""
        self.error.clear_message()
        risk = self.risk.currentText()
        try:
            checked = self.policy.check(
                self.action.currentText(),
                self.target.currentText(),
                self.requester.currentText(),
                self.label.currentText(),
                "" if risk == OWN_RISK else risk,
            )
        except Exception as exc:
            self.verdict.hide()
            self.explanation.clear()
            self.error.show_error(exc)
            return None
        effect = checked.decision.effect
        self.verdict.setText(f"{effect.upper()} — {checked.decision.rule.title}")
        self.verdict.setStyleSheet(f"color: {effect_color(effect)}; font-weight: bold;")
        self.verdict.setToolTip(checked.decision.reason)
        self.verdict.show()
        self.explanation.setPlainText(checked.explanation)
        return checked

    # --- internals -------------------------------------------------------------------------------------

    def _on_action(self, action: str, keep: bool = False) -> None:
        typed = self.target.currentText()
        self.target.clear()
        self.target.addItems(self.policy.targets(action))
        self.target.lineEdit().setPlaceholderText(TARGET_HINT.get(action, ""))
        self.target.setCurrentText(typed if keep and typed else self.policy.default_target(action))
        self.risk.setEnabled(action == "tool")
