"""Per-user places and QSettings: recent folders and where a read-only project's masks go.

QSettings holds window state and recent folders only; everything about a project lives in
the project folder (see ``stoneseg_core.io.project``).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

MAX_RECENT = 10
RECENT_KEY = "recent_folders"


DATA_DIR_ENV = "STONESEG_DATA_DIR"


def app_data_dir() -> Path:
    """The user's writable StoneSeg folder (e.g. ~/.local/share/StoneSeg/StoneSeg on Linux).

    ``STONESEG_DATA_DIR`` overrides it (a portable install, or tests).
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / ".stoneseg"


def fallback_data_dir(root: Path) -> Path:
    """Where masks of a read-only folder go: one visible folder per project.

    The name keeps the folder's name (so the user recognises it) plus a short hash of the
    full path (so two folders called ``photos`` do not share masks).
    """
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode("utf-8")).hexdigest()[:8]
    name = re.sub(r"[^\w.-]+", "_", root.name or "root").strip("_") or "project"
    return app_data_dir() / "projects" / f"{name}-{digest}"


def recent_folders(settings: QSettings) -> list[Path]:
    value = settings.value(RECENT_KEY, [])
    if isinstance(value, str):  # QSettings returns a bare string for a one-element list
        value = [value]
    return [Path(v) for v in (value or []) if v]


def add_recent_folder(settings: QSettings, folder: Path) -> list[Path]:
    folder = Path(folder).expanduser().resolve()
    items = [folder] + [p for p in recent_folders(settings) if p != folder]
    items = items[:MAX_RECENT]
    settings.setValue(RECENT_KEY, [str(p) for p in items])
    settings.sync()
    return items


def clear_recent_folders(settings: QSettings) -> None:
    settings.remove(RECENT_KEY)
    settings.sync()


def _project_key(root: Path) -> str:
    return hashlib.sha1(str(Path(root).expanduser().resolve()).encode("utf-8")).hexdigest()[:16]


def remember_last_image(settings: QSettings, root: Path, image: Path) -> None:
    """The photo last shown in a project, to reopen it there next time."""
    settings.setValue(f"last_image/{_project_key(root)}", Path(image).name)


def last_image(settings: QSettings, root: Path) -> str | None:
    value = settings.value(f"last_image/{_project_key(root)}")
    return str(value) if value else None


TRAIN_SETTINGS_KEY = "training/settings"
AGAIN_EPOCHS_KEY = "training/again_epochs"  # the Training panel's "Epochs, training again"


def save_train_settings(settings: QSettings, values: dict) -> None:
    """The Training panel's values (a TrainConfig's dict), for the next start."""
    import json

    settings.setValue(TRAIN_SETTINGS_KEY, json.dumps(values, default=str))


def load_train_settings(settings: QSettings) -> dict | None:
    import json

    raw = settings.value(TRAIN_SETTINGS_KEY)
    if not raw:
        return None
    try:
        value = json.loads(str(raw))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
