"""Saving the mask of a big photo (an orthomosaic) in the real window: written from a copy on
a worker thread while the event loop runs and the user paints on, atomically; closing the
window during a save waits for it; a failed save names the file and keeps the edits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from guihelpers import drag, read_png, wait_loaded, write_photo
from PySide6.QtCore import Qt, QTimer

from stoneseg_core.display.tiff_tiles import BIG_PHOTO_PIXELS
from stoneseg_core.model.config import TrainConfig
from stoneseg_gui.editor import saving as saving_module
from stoneseg_gui.editor.tiled_photo import TiledPhoto

SIZE = 4096  # just over the pyramid's threshold: a small "orthomosaic" for a quick test


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory) -> Path:
    assert SIZE * SIZE > BIG_PHOTO_PIXELS
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 255 // SIZE, y * 255 // SIZE, ((x // 32 + y // 32) % 2) * 150], -1)
    path = tmp_path_factory.mktemp("big") / "ortho.tif"
    tifffile.imwrite(
        path, rgb.astype(np.uint8), tile=(256, 256), photometric="rgb", compression="zlib"
    )
    return path


@pytest.fixture
def project(tmp_path, big_tiff) -> Path:
    (tmp_path / "proj" / "images").mkdir(parents=True)
    (tmp_path / "proj" / "images" / "ortho.tif").symlink_to(big_tiff)
    write_photo(tmp_path / "proj" / "images" / "small.png", 120, 90)
    return tmp_path / "proj"


def _noise(seed: int = 0) -> np.ndarray:
    """A mask that takes PNG a while to compress (most of a second here)."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((SIZE, SIZE)) > 0.5, 255, 0).astype(np.uint8)


def _open_big(qtbot, window, project: Path):
    window.session.open_folder(project)
    wait_loaded(qtbot, window, project / "images" / "ortho.tif", timeout=30_000)
    assert isinstance(window.canvas.display_image, TiledPhoto)
    return window.session.current_document()


class _Probe:
    """Counts the event loop's turns while a save runs: a blocked GUI thread counts none."""

    def __init__(self, session) -> None:
        self.session, self.during = session, 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        if self.session.is_saving:
            self.during += 1


def _ctrl_s(qtbot, window) -> float:
    t0 = time.perf_counter()
    qtbot.keyClick(window.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    return time.perf_counter() - t0


def test_saving_a_big_mask_runs_in_the_background_and_writes_its_snapshot(
    qtbot, window, dialogs, project
) -> None:
    document = _open_big(qtbot, window, project)
    snapshot = _noise()
    document.replace(snapshot, "Accept prediction")
    mask_path = project / "masks" / "ortho.png"
    probe = _Probe(window.session)

    seconds = _ctrl_s(qtbot, window)
    assert window.session.is_saving, "Ctrl+S on a big mask starts a background save"
    assert seconds < 0.5, f"Ctrl+S held the window for {seconds:.2f} s"
    assert "ortho.png" in window.status.busy_text()
    # the user paints on while the copy is written
    before = np.array(document.mask, copy=True)
    drag(qtbot, window.canvas, [(2000, 2000), (2040, 2010), (2080, 2020)])
    assert not np.array_equal(document.mask, before), "the stroke during the save is applied"
    qtbot.waitUntil(lambda: not window.session.is_saving, timeout=60_000)
    assert probe.during >= 5, f"the event loop ran only {probe.during} times during the save"
    assert "Saving" not in window.status.busy_text()

    assert np.array_equal(read_png(mask_path), snapshot), "the file is the copy taken at Ctrl+S"
    assert document.dirty, "the stroke made during the save is not on disk yet"
    assert not list((project / "masks").glob("*.tmp*")), "no temporary file left"

    _ctrl_s(qtbot, window)
    qtbot.waitUntil(lambda: not window.session.is_saving, timeout=60_000)
    assert np.array_equal(read_png(mask_path), document.mask), "the stroke is saved next time"
    assert not document.dirty
    assert dialogs.errors == []


def test_switching_photo_saves_in_the_background_and_the_edits_come_back(
    qtbot, window, project
) -> None:
    document = _open_big(qtbot, window, project)
    mask = _noise(1)
    document.replace(mask, "Paint")
    t0 = time.perf_counter()
    assert window.session.open_image(project / "images" / "small.png")
    assert time.perf_counter() - t0 < 0.5
    assert window.session.is_saving
    # back to the big photo before its file is written: the edits, not the old file
    wait_loaded(qtbot, window, project / "images" / "small.png")
    window.session.open_image(project / "images" / "ortho.tif")
    wait_loaded(qtbot, window, project / "images" / "ortho.tif", timeout=30_000)
    assert window.session.current_document() is document
    assert np.array_equal(document.mask, mask)
    qtbot.waitUntil(lambda: not window.session.is_saving, timeout=60_000)
    assert np.array_equal(read_png(project / "masks" / "ortho.png"), mask)
    assert not document.dirty


def test_closing_the_window_during_a_save_waits_and_leaves_a_complete_file(
    qtbot, window, project
) -> None:
    document = _open_big(qtbot, window, project)
    mask = _noise(2)
    document.replace(mask, "Paint")
    window.close()  # a big mask with edits: saved first, the window closes once written
    assert window.isVisible() and window.session.is_saving
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert np.array_equal(read_png(project / "masks" / "ortho.png"), mask)
    assert not list((project / "masks").glob("*.tmp*"))


def test_quitting_during_a_save_waits_for_it(qtbot, window, project) -> None:
    """The application quitting without closing the window first (the session's shutdown)."""
    document = _open_big(qtbot, window, project)
    first, second = _noise(3), _noise(4)
    document.replace(first, "Paint")
    _ctrl_s(qtbot, window)
    document.replace(second, "Paint")  # edited again while the first save runs
    assert window.session.is_saving
    assert window.session.shutdown()
    assert not window.session.is_saving
    assert np.array_equal(read_png(project / "masks" / "ortho.png"), second)
    assert not document.dirty


def test_a_failed_background_save_names_the_file_and_keeps_the_edits(
    qtbot, make_window, dialogs, project, monkeypatch
) -> None:
    window = make_window()
    document = _open_big(qtbot, window, project)
    blocker = project / "masks" / "ortho.png"
    blocker.mkdir(parents=True)  # the mask's name is taken by a folder: the write fails
    mask = _noise(5)
    document.replace(mask, "Paint")
    _ctrl_s(qtbot, window)
    qtbot.waitUntil(lambda: not window.session.is_saving, timeout=60_000)
    assert len(dialogs.errors) == 1
    title, text = dialogs.errors[0]
    assert title == "Cannot save the mask" and "ortho.png" in text
    assert document.dirty and np.array_equal(document.mask, mask), "the edits stay open"
    qtbot.waitUntil(lambda: any((project / ".recovery").glob("ortho*")), timeout=30_000)
    # closing now would lose them: the window stays (after saying so again)
    window.close()
    qtbot.waitUntil(lambda: len(dialogs.errors) == 2, timeout=60_000)
    assert window.isVisible()
    # the folder cleared, saving again works
    blocker.rmdir()
    _ctrl_s(qtbot, window)
    qtbot.waitUntil(lambda: not window.session.is_saving, timeout=60_000)
    assert np.array_equal(read_png(blocker), mask) and not document.dirty
    assert saving_module.BACKGROUND_SAVE_PIXELS < SIZE * SIZE


def test_training_and_export_wait_for_a_big_save_without_holding_the_window(
    qtbot, window, dialogs, project, tmp_path
) -> None:
    """What needs the mask on disk (training, export) starts once the background save of a
    big mask is written, instead of writing it on the window's thread."""
    document = _open_big(qtbot, window, project)
    mask = _noise(6)
    document.replace(mask, "Paint")
    controller = window.model_side.controller

    t0 = time.perf_counter()
    assert controller.start_training(TrainConfig(epochs=1))
    assert time.perf_counter() - t0 < 0.5, "starting training held the window for the save"
    assert window.session.is_saving
    # one labelled photo only: training refuses, but only after the save wrote it
    qtbot.waitUntil(lambda: bool(dialogs.errors), timeout=60_000)
    assert dialogs.errors[0][0] == "Not enough labelled photos"
    assert np.array_equal(read_png(project / "masks" / "ortho.png"), mask)
    assert not controller.is_training

    edited = mask.copy()
    edited[:100] = 255
    document.replace(edited, "Paint")
    out = tmp_path / "exported"
    t0 = time.perf_counter()
    assert controller.export_masks(out, include_predicted=True)
    assert time.perf_counter() - t0 < 0.5, "the export held the window for the save"
    qtbot.waitUntil(
        lambda: (out / "ortho.png").is_file() and not controller.is_busy, timeout=60_000
    )
    assert np.array_equal(read_png(out / "ortho.png"), edited)
    assert not document.dirty
