"""Helpers shared by the GUI tests: real photo and mask files, real mouse drags."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPoint, Qt

from stoneseg_core.io.images import write_mask
from stoneseg_gui.widgets.dialogs import Dialogs


def write_photo(path: Path, width: int = 80, height: int = 60, seed: int = 0) -> np.ndarray:
    """A textured RGB photo written with OpenCV (PNG or JPEG by suffix); returns it as RGB."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    rgb = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def make_project(
    root: Path,
    names: Sequence[str] = ("a.png", "b.png", "c.png"),
    size: tuple[int, int] = (80, 60),
    masks: dict[str, np.ndarray] | None = None,
    layout: str = "images",
) -> Path:
    """``layout='images'``: root/images + root/masks; ``'plain'``: photos directly in root."""
    image_dir = root / "images" if layout == "images" else root
    for i, name in enumerate(names):
        write_photo(image_dir / name, *size, seed=i)
    for stem, mask in (masks or {}).items():
        write_mask(root / "masks" / f"{stem}.png", mask)
    return root


def read_png(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr is not None, f"cannot read {path}"
    return arr


def to_view(canvas, x: float, y: float) -> QPoint:
    return canvas.image_to_viewport(x, y).toPoint()


def drag(
    qtbot,
    canvas,
    points: Sequence[tuple[float, float]],
    button=Qt.MouseButton.LeftButton,
    modifier=Qt.KeyboardModifier.NoModifier,
) -> None:
    """Press at the first image point, move through the others, release at the last."""
    viewport = canvas.viewport()
    first = to_view(canvas, *points[0])
    qtbot.mouseMove(viewport, first)
    qtbot.mousePress(viewport, button, modifier, first)
    for x, y in points[1:]:
        qtbot.mouseMove(viewport, to_view(canvas, x, y))
    qtbot.mouseRelease(viewport, button, modifier, to_view(canvas, *points[-1]))


def click(qtbot, canvas, x: float, y: float, button=Qt.MouseButton.LeftButton) -> None:
    qtbot.mouseClick(
        canvas.viewport(), button, Qt.KeyboardModifier.NoModifier, to_view(canvas, x, y)
    )


def wait_loaded(qtbot, window, path: Path | None = None, timeout: int = 10_000) -> None:
    """Wait until the window shows an editable photo (``path`` if given)."""

    def ready() -> bool:
        doc = window.current_document()
        return doc is not None and (path is None or window.current_image_path() == Path(path))

    qtbot.waitUntil(ready, timeout=timeout)


class FakeDialogs(Dialogs):
    """Records what would have been shown and answers questions from ``answers``."""

    def __init__(self) -> None:
        super().__init__(None)
        self.errors: list[tuple[str, str]] = []
        self.infos: list[tuple[str, str]] = []
        self.reports: list[tuple[str, str, str]] = []  # title, summary, details
        self.questions: list[tuple[str, str, tuple[str, ...]]] = []
        self.answers: dict[str, str] = {}
        self.folders_to_choose: list[Path] = []
        self.shown_folders: list[Path] = []
        self.files_to_open: list[Path] = []
        self.files_to_save: list[Path] = []
        self.numbers: list[float | None] = []  # answers to ask_number, in order
        self.number_questions: list[tuple[str, str]] = []

    def error(self, title: str, text: str) -> None:
        self.errors.append((title, text))

    def info(self, title: str, text: str) -> None:
        self.infos.append((title, text))

    def report(self, title: str, summary: str, details: str) -> None:
        self.reports.append((title, summary, details))

    def ask(self, title, text, choices, default):
        self.questions.append((title, text, tuple(choices)))
        return self.answers.get(title, default)

    def choose_folder(self, title, start=None):
        return self.folders_to_choose.pop(0) if self.folders_to_choose else None

    def show_folder(self, folder: Path) -> None:
        self.shown_folders.append(Path(folder))

    def choose_open_file(self, title, start=None, filters=""):
        return self.files_to_open.pop(0) if self.files_to_open else None

    def choose_save_file(self, title, suggested, filters=""):
        return self.files_to_save.pop(0) if self.files_to_save else None

    def ask_number(self, title, text, value, minimum, maximum, decimals=3):
        self.number_questions.append((title, text))
        return self.numbers.pop(0) if self.numbers else None


def pretend_crashed(root: Path) -> None:
    """The window that holds the project at ``root`` "crashed": its process is gone, so its
    project lock is stale (a lock names its process; a dead one is taken silently)."""
    import json
    import subprocess
    import sys

    from stoneseg_core.io.project_lock import LOCK_FILE

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock = root / LOCK_FILE
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), pid=int(ended.stdout))))
