"""StoneSeg desktop application (PySide6)."""

from ._pyside_fix import install as _install_pyside_fix

_install_pyside_fix()  # before any signal is emitted; a no-op where PySide6 is healthy
