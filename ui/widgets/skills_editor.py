"""The skills this agent offers the group: one row per skill (name, what it does, remove), and Add skill.

Each skill is a work queue peers send tasks to, so its name is part of a topic name; the row keeps its own
inline message so a bad name is pointed out on the row it is on, not somewhere under the list.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ui.widgets.inline_message import InlineMessage


class SkillRow(QWidget):
    removeRequested = Signal(object)  # this row

    def __init__(self, name: str = "", description: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QLineEdit(name)
        self.name.setPlaceholderText("skill name, e.g. coder")
        self.name.setMaximumWidth(200)
        self.description = QLineEdit(description)
        self.description.setPlaceholderText("what peers can ask for, e.g. writes and reviews Python")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Stop offering this skill")
        self.remove_button.clicked.connect(lambda: self.removeRequested.emit(self))
        self.error = InlineMessage()
        self.name.textEdited.connect(lambda _text: self.error.clear_message())
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.name)
        line.addWidget(self.description, 1)
        line.addWidget(self.remove_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addLayout(line)
        column.addWidget(self.error)

    def value(self) -> dict[str, str]:
        return {"name": self.name.text().strip(), "description": self.description.text().strip()}


class SkillsEditor(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[SkillRow] = []
        self._rows_box = QVBoxLayout()
        self._rows_box.setContentsMargins(0, 0, 0, 0)
        self._rows_box.setSpacing(4)
        self.add_button = QPushButton("Add skill")
        self.add_button.clicked.connect(lambda: self.add_row().name.setFocus())
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._rows_box, 0, 0, 1, 2)
        layout.addWidget(self.add_button, 1, 0)
        layout.setColumnStretch(1, 1)

    def add_row(self, name: str = "", description: str = "") -> SkillRow:
        row = SkillRow(name, description, self)
        row.removeRequested.connect(self._remove)
        self.rows.append(row)
        self._rows_box.addWidget(row)
        self.changed.emit()
        return row

    def _remove(self, row: SkillRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self._rows_box.removeWidget(row)
            row.deleteLater()
            self.changed.emit()

    def set_skills(self, skills: list[Any]) -> None:
        for row in list(self.rows):
            self._remove(row)
        for skill in skills:
            get = skill.get if isinstance(skill, dict) else lambda key, s=skill: getattr(s, key)
            self.add_row(get("name"), get("description"))

    def value(self) -> list[dict[str, str]]:
        """Every row in order (empty ones too, so a message for row n lands on row n)."""
        return [row.value() for row in self.rows]

    def show_problems(self, problems: dict[int, str]) -> None:
        for index, row in enumerate(self.rows):
            if index in problems:
                row.error.show_error(problems[index])
            else:
                row.error.clear_message()
