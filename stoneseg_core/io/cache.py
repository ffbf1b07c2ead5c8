"""The user's cache folder for StoneSeg: exported networks (``onnx/``) and the display
pyramid's coarse levels (``pyramid/``). ``STONESEG_CACHE_DIR`` wins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_DIR_ENV = "STONESEG_CACHE_DIR"


def user_cache_root() -> Path:
    """The platform's user cache folder for StoneSeg (``STONESEG_CACHE_DIR`` when set)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "StoneSeg" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "StoneSeg"
    base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "stoneseg"
