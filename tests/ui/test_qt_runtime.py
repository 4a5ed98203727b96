"""Guards on the Qt runtime itself."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


def test_emitting_signals_does_not_leak_references_to_true() -> None:
    """PySide6 6.12.0 on CPython 3.11 drops a reference to True on every Python-side emit, and the
    interpreter aborts once it reaches zero (pyproject pins PySide6 below 6.12 because of it)."""

    class Probe(QObject):
        ping = Signal(str)

    probe = Probe()
    before = sys.getrefcount(True)
    for _ in range(200):
        probe.ping.emit("x")
    assert sys.getrefcount(True) >= before
