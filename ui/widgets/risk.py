"""Risk tiers as people see them: one colour per tier, the same in the tools table and on approval cards."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from core.tools.registry import RiskTier

RISK_COLORS = {RiskTier.READ: "#2e7d32", RiskTier.WRITE: "#b26a00", RiskTier.HIGH: "#c62828"}
RISK_HELP = {
    RiskTier.READ: "read: only looks, never changes anything",
    RiskTier.WRITE: "write: changes files or notes inside the workspace",
    RiskTier.HIGH: "high: runs programs or reaches outside; asks for approval unless policy allows",
}
UNKNOWN_COLOR = "#6b7280"


def tier(risk: RiskTier | str) -> RiskTier | None:
    try:
        return RiskTier(risk)
    except ValueError:
        return None


def risk_color(risk: RiskTier | str) -> str:
    known = tier(risk)
    return UNKNOWN_COLOR if known is None else RISK_COLORS[known]


def risk_help(risk: RiskTier | str) -> str:
    known = tier(risk)
    return "" if known is None else RISK_HELP[known]


def risk_badge(risk: RiskTier | str, parent: QWidget | None = None) -> QLabel:
    """A small coloured chip with white text: readable on both light and dark palettes."""
    badge = QLabel(str(risk).upper(), parent)
    badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
    badge.setToolTip(risk_help(risk))
    badge.setStyleSheet(
        f"QLabel {{ background: {risk_color(risk)}; color: white; border-radius: 3px;"
        " padding: 1px 6px; font-weight: bold; }"
    )
    return badge
