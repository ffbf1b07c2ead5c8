"""Work around a reference-count defect of PySide6 6.12.0 on Python < 3.12.

With that release on Python 3.11, every call into Qt that returns ``None`` (any void
method: ``painter.setPen``, ``item.update`` ...) and every ``signal.emit()`` (which
returns ``True``) gives back a reference it never took. The wheels behave as if built
for Python >= 3.12, where ``None``, ``True`` and ``False`` are immortal and their reference
counts are not kept. On 3.11 the counts run down with every call, and after some
thousands of calls (seconds of painting) the interpreter aborts with
"Fatal Python error: none_dealloc" (or "bool_dealloc").

``install()`` measures the leak with a throw-away object and, only if it is there, makes
these four singletons immortal the way Python 3.12 does: their reference counts are
raised by 2**50, which no session can use up. They are never freed anyway, so an extra
count changes nothing else. On a healthy PySide6, or on Python >= 3.12, nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

TOP_UP = 1 << 50
SINGLETONS = (None, True, False, NotImplemented)

_installed = False


class _Probe(QObject):
    fired = Signal()


def _leak(call: Callable[[], object], singleton: object, n: int = 32) -> int:
    """References to ``singleton`` lost per ``call()`` (0 when healthy)."""
    before = sys.getrefcount(singleton)
    for _ in range(n):
        call()
    return round((before - sys.getrefcount(singleton)) / n)


def detect_leaks() -> dict[str, int]:
    probe = _Probe()
    return {
        "void call -> None": _leak(lambda: probe.setObjectName("probe"), None),
        "emit -> True": _leak(probe.fired.emit, True),
    }


def _immortalize(obj: object) -> None:
    # CPython keeps the reference count in the first field of every object
    count = ctypes.c_ssize_t.from_address(id(obj))
    count.value += TOP_UP


def install() -> bool:
    """Apply the workaround if this PySide6 needs it; True if it was applied."""
    global _installed
    if _installed or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if hasattr(sys, "getobjects"):  # a Py_TRACE_REFS build: the count is not the first field
        return False
    _installed = True
    leaks = detect_leaks()
    if not any(v > 0 for v in leaks.values()):
        return False
    for obj in SINGLETONS:
        _immortalize(obj)
    log.debug("PySide6 reference leaks %s: None/True/False made immortal", leaks)
    return True
