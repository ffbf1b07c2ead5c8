"""Predict on a photo too big to read whole (an orthomosaic) in the real window: the windowed
path of ``stoneseg segment`` (``large.iter_segment_large``) runs on the worker with progress
and cancel, never reading the photo whole, and its mask is shown, accepted and undone like any
prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from guihelpers import wait_loaded

from stoneseg_core.inference import large
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_gui.editor.tiled_photo import TiledPhoto
from stoneseg_gui.grains.big_stones import stone_borders
from stoneseg_gui.model import prediction_jobs

SIZE = 4096  # over the pyramid's threshold; "huge" is lowered below it for a quick test


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory) -> Path:
    """Bright stones (discs) on a darker blue-grey ground, as the tiny model was trained on
    (tests/synthetic.make_scene)."""
    rng = np.random.default_rng(7)
    rgb = np.empty((SIZE, SIZE, 3), np.uint8)
    rgb[:] = (70, 70, 85)
    y, x = np.ogrid[0:SIZE, 0:SIZE]
    for _ in range(60):
        cy, cx, r = rng.integers(200, SIZE - 200, 2).tolist() + [int(rng.integers(60, 180))]
        rgb[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = (185, 180, 175)
    path = tmp_path_factory.mktemp("huge") / "ortho.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    return path


@pytest.fixture
def huge_project(tmp_path, big_tiff, monkeypatch) -> Path:
    # photos over 10 MP count as too big to read whole (50 MP in the application)
    monkeypatch.setattr(large, "LARGE_PIXELS", 10_000_000)
    assert large.needs_windows(big_tiff)

    def never_whole(path, *args, **kwargs):
        raise AssertionError(f"{Path(path).name} was read whole")

    monkeypatch.setattr(prediction_jobs, "read_image", never_whole)
    (tmp_path / "proj" / "images").mkdir(parents=True)
    (tmp_path / "proj" / "images" / "ortho.tif").symlink_to(big_tiff)
    return tmp_path / "proj"


def _open(qtbot, window, project: Path, model: Path):
    window.session.open_folder(project)
    wait_loaded(qtbot, window, timeout=30_000)
    assert isinstance(window.canvas.display_image, TiledPhoto)
    window.model_side.controller.set_active_model(model)
    return window.model_side


def test_predict_on_a_huge_photo_runs_window_by_window_and_is_undoable(
    qtbot, window, dialogs, huge_project, trained_model, tmp_path
) -> None:
    side = _open(qtbot, window, huge_project, trained_model)
    fractions: list[float] = []
    side.controller.prediction_progressed.connect(fractions.append)
    side.actions.predict.trigger()
    qtbot.waitUntil(lambda: side.controller.prediction is not None, timeout=120_000)
    assert not dialogs.errors
    assert fractions and any(0 < f <= 1 for f in fractions), "progress was reported"
    assert fractions[-1] == -1.0 and "Predicting" not in window.status.busy_text()

    mask = side.controller.prediction.mask
    assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
    assert side.controller.prediction.probability is None  # 4 bytes a pixel: not kept
    # the same mask as `stoneseg segment` writes for this photo
    expected = tmp_path / "cli.tif"
    segmenter = Segmenter.load(trained_model)
    assert (
        large.segment_large_photo(segmenter, huge_project / "images" / "ortho.tif", expected)[0]
        == "written"
    )
    assert np.array_equal(mask, tifffile.imread(expected))
    assert 0.01 < (mask > 0).mean() < 0.9, "the stones are found"
    assert window.canvas.prediction_item.isVisible()

    document = window.current_document()
    before = np.array(document.mask, copy=True)
    side.actions.accept_prediction.trigger()
    assert np.array_equal(document.mask, mask)
    window.session.undo()
    assert np.array_equal(document.mask, before)
    window.canvas.viewport().grab().save(str(tmp_path / "huge_predicted.png"))


def test_predict_on_a_huge_photo_can_be_cancelled(
    qtbot, window, dialogs, huge_project, trained_model
) -> None:
    side = _open(qtbot, window, huge_project, trained_model)
    side.actions.predict.trigger()
    assert side.controller.is_busy
    side.actions.cancel_task.trigger()
    qtbot.waitUntil(lambda: not side.controller.is_busy, timeout=120_000)
    assert side.controller.prediction is None and not dialogs.errors
    assert not window.current_document().dirty
    assert "Predicting" not in window.status.busy_text()


def test_analyse_on_a_huge_mask_measures_it_window_by_window(
    qtbot, window, dialogs, huge_project, trained_model, monkeypatch, tmp_path
) -> None:
    import csv

    from stoneseg_core.grains import tiled

    monkeypatch.setattr(tiled, "TILED_ABOVE_PX", 10_000_000)  # 16 MP counts as big here
    _open(qtbot, window, huge_project, trained_model)
    document = window.current_document()
    centres = [(400 + 700 * i, 500 + 900 * j) for i in range(5) for j in range(4)]
    for x, y in centres:  # 20 separate stones
        document.paint_disc((float(x), float(y)), 60.0)
    document.paint_disc((2048.0, 2048.0), 80.0)  # on the corner of the four 2048-px windows
    painted = np.array(document.mask, copy=True)
    out = tmp_path / "stones"
    dialogs.folders_to_choose.append(out)
    assert window.grain_side.analyse()
    qtbot.waitUntil(lambda: not window.grain_side.is_analysing, timeout=120_000)
    assert not dialogs.errors, dialogs.errors
    title, text = dialogs.infos[-1]
    assert title == "Stones of ortho.tif" and "21 stones measured" in text and "D50" in text
    with open(out / "ortho_stones.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 21, "each stone once, also the one cut by four windows"
    assert (out / "ortho_stones.geojson").is_file() and (out / "ortho_instances.tif").is_file()
    assert np.array_equal(document.mask, painted), "the mask is untouched"
    # the stones are drawn from the instance TIFF, tile by tile, from 1/4 zoom in
    big = window.grain_side.big_stones
    assert big.isVisible() and big.path == out / "ortho_instances.tif"
    canvas = window.canvas
    canvas.set_zoom(1.0)
    canvas.centerOn(1100.0, 1400.0)  # the stone painted at (1100, 1400), radius 60
    canvas.viewport().repaint()
    qtbot.waitUntil(lambda: not big.pending, timeout=30_000)
    canvas.viewport().repaint()
    assert not big.too_far and not big.errors
    shot = canvas.viewport().grab().toImage()
    shot.save(str(tmp_path / "big_stones.png"))

    def amber(x: float, y: float) -> bool:  # within a screen pixel of (x, y)
        p = canvas.image_to_viewport(x, y)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                c = shot.pixelColor(round(p.x()) + dx, round(p.y()) + dy)
                if c.red() > 200 and c.green() > 150 and c.blue() < 90:
                    return True
        return False

    rim = [(1100 + 59.5 * np.cos(a), 1400 + 59.5 * np.sin(a)) for a in np.linspace(0, 6.2, 12)]
    assert sum(amber(x, y) for x, y in rim) >= 9, "the stone's border is outlined"
    assert not amber(1100, 1400) and not amber(1100, 1300), "inside and off the stone: no line"
    # zoomed far out, nothing is drawn (and nothing read)
    canvas.set_zoom(0.05)
    canvas.viewport().repaint()
    assert big.too_far
    # another photo (here: the same folder opened again) clears them
    window.session.open_folder(huge_project)
    wait_loaded(qtbot, window, timeout=30_000)


def test_analysing_a_huge_mask_can_be_cancelled(
    qtbot, window, dialogs, huge_project, trained_model, monkeypatch, tmp_path
) -> None:
    from stoneseg_core.grains import tiled

    monkeypatch.setattr(tiled, "TILED_ABOVE_PX", 10_000_000)
    _open(qtbot, window, huge_project, trained_model)
    window.current_document().paint_disc((2000.0, 2000.0), 100.0)
    out = tmp_path / "stones"
    dialogs.folders_to_choose.append(out)
    assert window.grain_side.analyse()
    assert window.grain_side.actions.cancel.isEnabled()
    window.grain_side.actions.cancel.trigger()
    qtbot.waitUntil(lambda: not window.grain_side.is_analysing, timeout=120_000)
    assert not dialogs.errors and not dialogs.infos
    assert not out.exists() or not list(out.iterdir()), "nothing written"
    assert "cancelled" in window.grain_side.panel.status.text().lower()


def test_stone_borders_mark_each_stones_edge_on_its_own_side():
    labels = np.zeros((8, 10), np.uint32)
    labels[1:5, 1:4] = 7  # a stone
    labels[1:5, 4:8] = 70000  # a touching one (an id over 16 bits)
    edge = stone_borders(labels, 1)
    inner = np.zeros_like(edge)
    inner[2:4, 2:3] = True  # the first stone's inside
    inner[2:4, 5:7] = True
    assert not (edge & inner).any() and not edge[labels == 0].any()
    assert edge[1, 1:8].all() and edge[4, 1:8].all()  # top and bottom rows of both
    assert edge[2:4, 3].all() and edge[2:4, 4].all()  # both sides of the shared border
    # four times smaller: a border anywhere in a 4 x 4 block marks it
    small = stone_borders(labels, 4)
    assert small.shape == (2, 3) and small[:, :2].all() and not small[:, 2].any()
