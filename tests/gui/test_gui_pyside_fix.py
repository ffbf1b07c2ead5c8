"""Calls into Qt must not run down the counts of None/True (PySide6 6.12.0 on Python 3.11)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

import stoneseg_gui  # noqa: F401 - applies the workaround on import
from stoneseg_gui._pyside_fix import TOP_UP, detect_leaks


class Emitter(QObject):
    changed = Signal(object, bool)


def test_many_void_calls_and_emits_cannot_free_none_or_true() -> None:
    emitter = Emitter()
    received = []
    emitter.changed.connect(lambda a, b: received.append(a))
    leaking = any(v > 0 for v in detect_leaks().values())
    before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(20_000):  # far more than None and True have references at start-up
        emitter.changed.emit(i, True)
        emitter.setObjectName("x")
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert len(received) == 20_000
    if leaking:  # the wheel drops references: the workaround must have made them immortal
        assert min(after) > TOP_UP // 2
    else:
        assert abs(after[0] - before[0]) < 100 and abs(after[1] - before[1]) < 100
