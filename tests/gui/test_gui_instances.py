"""The Grains panel's cuts and merges become per-stone labels (instances/<stem>.png) that
the window's Train passes on; labels made stale by a later mask edit are left out and told,
and analysing the photo again writes them afresh."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from guihelpers import drag, make_project, read_png, wait_loaded
from PySide6.QtCore import Qt
from skimage.draw import disk

from stoneseg_core.errors import DataError
from stoneseg_core.io.project import INSTANCES_KEY

SIZE = (160, 100)  # width, height
SEPARATE = {6: (25, 20), 9: (25, 60), 12: (30, 120)}  # radius: (row, col)
TOUCHING = ((70, 40), (70, 58))  # two discs of radius 10 overlapping: one stone at separation 30
TRAIN_TIMEOUT = 120_000


def disc_labels() -> np.ndarray:
    w, h = SIZE
    labels = np.zeros((h, w), np.int32)
    shapes = [(r, c, rad) for rad, (r, c) in SEPARATE.items()]
    shapes += [(r, c, 10) for r, c in TOUCHING]
    for i, (r, c, rad) in enumerate(shapes, start=1):
        rr, cc = disk((r, c), rad, shape=labels.shape)
        labels[rr, cc] = i
    return labels


def disc_mask() -> np.ndarray:
    return np.where(disc_labels() > 0, 255, 0).astype(np.uint8)


def open_and_cut(qtbot, window, tmp_path: Path) -> Path:
    """Two photos with the same mask; photo a analysed with the touching pair as one stone,
    then cut in two by hand (X)."""
    mask = disc_mask()
    root = make_project(
        tmp_path / "proj", names=("a.png", "b.png"), size=SIZE, masks={"a": mask, "b": mask}
    )
    window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    side = window.grain_side
    side.dock.show()
    side.panel.separation.setValue(30)
    analyse(qtbot, window)
    assert len(side.analysis.stones) == 4
    assert not (root / "instances").exists()  # an analysis without edits writes nothing
    qtbot.keyClick(window.canvas, Qt.Key.Key_X)
    cut(qtbot, window)
    assert len(side.analysis.stones) == 5
    return root


def analyse(qtbot, window) -> None:
    side = window.grain_side
    side.analysis = None
    qtbot.keyClick(window.canvas, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: side.analysis is not None and not side.is_analysing, timeout=10_000)


def cut(qtbot, window) -> None:
    (r0, c0), (r1, c1) = TOUCHING
    neck = (c0 + c1) / 2 + 0.5
    drag(qtbot, window.canvas, [(neck, r0 - 15), (neck, r0), (neck, r0 + 15)])


def spy_training(monkeypatch, stop: bool = False) -> list:
    """Record the pairs the window's training job passes to training (then train, or stop).

    They must be chosen in the worker, never on the window's thread (choosing them hashes
    and decodes the per-stone labels the app wrote)."""
    from stoneseg_core.training import train as core_train

    seen: list = []
    real = core_train.iter_training

    def spy(pairs, *args, **kwargs):
        assert threading.current_thread() is not threading.main_thread()
        seen.append(list(pairs))
        if stop:
            raise DataError("stopped by the test after reading the pairs")
        return (yield from real(pairs, *args, **kwargs))

    monkeypatch.setattr(core_train, "iter_training", spy)
    return seen


def tiny_config(window):
    panel = window.model_side.panel
    panel.epochs.setValue(1)
    panel.crop.setValue(64)
    panel.work_size.setValue(128)
    panel.batch_size.setValue(2)
    return panel.config()


def test_a_cut_is_saved_as_instances_and_the_next_training_uses_it(
    qtbot, window, tmp_path, monkeypatch
):
    written = []
    from stoneseg_core.io import project as project_module

    real_write = project_module.atomic_write_bytes
    monkeypatch.setattr(
        project_module,
        "atomic_write_bytes",
        lambda path, data: (written.append(Path(path)), real_write(path, data))[1],
    )
    root = open_and_cut(qtbot, window, tmp_path)
    side = window.grain_side
    inst = root / "instances" / "a.png"
    assert [p for p in written if p.suffix == ".png"] == [inst]  # atomically, as masks are
    assert not [p for p in inst.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    raw = read_png(inst)
    assert raw.dtype == np.uint16
    assert len(np.unique(raw[raw > 0])) == 5 == len(side.analysis.stones)
    assert np.array_equal(raw > 0, disc_mask() > 0)
    (r0, c0), (r1, c1) = TOUCHING
    assert raw[r0, c0] != raw[r1, c1]  # the hand cut is in the file
    state = json.loads((root / "stoneseg.json").read_text())
    assert set(state[INSTANCES_KEY]) == {"a"}
    assert "saved for training" in side.panel.status.text()
    assert not window.dialogs.errors

    # Train: the controller passes photo a with its labels, b without; 1 epoch of the
    # boundary target learns from them
    seen = spy_training(monkeypatch)
    controller = window.model_side.controller
    assert controller.start_training(tiny_config(window).replace(target="mask+boundary"), True)
    qtbot.waitUntil(lambda: not controller.is_training, timeout=TRAIN_TIMEOUT)
    assert not window.dialogs.errors
    assert seen == [
        [
            (root / "images" / "a.png", root / "masks" / "a.png", inst),
            (root / "images" / "b.png", root / "masks" / "b.png"),
        ]
    ]
    model = controller.active_model()
    assert model is not None
    assert json.loads((model / "config.json").read_text())["classes"] == 2

    # undo the cut: no cut is left, so the labels the app wrote go (they showed the cut)
    side.actions.undo_edit.trigger()
    assert not inst.exists()
    assert INSTANCES_KEY not in json.loads((root / "stoneseg.json").read_text())


def test_labels_made_stale_by_a_mask_edit_are_left_out_then_refreshed(
    qtbot, window, tmp_path, monkeypatch
):
    root = open_and_cut(qtbot, window, tmp_path)
    side = window.grain_side
    inst = root / "instances" / "a.png"
    before = inst.read_bytes()
    # the mask changes after the cut: the small disc is erased
    labels = disc_labels()
    small = labels[SEPARATE[6]]
    edited = np.where((labels > 0) & (labels != small), 255, 0).astype(np.uint8)
    window.current_document().replace(edited, "test edit")
    assert window.save_current()

    seen = spy_training(monkeypatch, stop=True)
    controller = window.model_side.controller
    messages = []
    controller.notice.connect(messages.append)
    assert controller.start_training(tiny_config(window), True)
    qtbot.waitUntil(lambda: not controller.is_training, timeout=TRAIN_TIMEOUT)
    # photo a trains from its mask's pieces; the user is told why and what to do
    assert seen[-1][0] == (root / "images" / "a.png", root / "masks" / "a.png")
    assert any("a.png" in m and "left out" in m and "Analyse" in m for m in messages)
    assert inst.read_bytes() == before  # left out, not deleted

    # analysing again replays the cut on the edited mask and writes the labels afresh
    window.dialogs.errors.clear()
    analyse(qtbot, window)
    assert len(side.analysis.stones) == 4  # the small disc gone, the pair still cut
    raw = read_png(inst)
    assert np.array_equal(raw > 0, edited > 0) and len(np.unique(raw[raw > 0])) == 4
    assert controller.start_training(tiny_config(window), True)
    qtbot.waitUntil(lambda: not controller.is_training, timeout=TRAIN_TIMEOUT)
    assert seen[-1][0] == (root / "images" / "a.png", root / "masks" / "a.png", inst)


def test_stones_that_no_longer_lie_on_the_mask_are_not_saved(qtbot, window, tmp_path):
    root = open_and_cut(qtbot, window, tmp_path)
    side = window.grain_side
    inst = root / "instances" / "a.png"
    before = inst.read_bytes()
    # the mask is painted after the analysis (not saved yet): the next edit is kept in the
    # project, but its stones no longer lie on the mask, so the labels are not rewritten
    grown = disc_mask()
    grown[90:95, 5:15] = 255
    window.current_document().replace(grown, "test paint")
    (r0, c0), (r1, c1) = TOUCHING
    side.choose([side.analysis.label_at(c0, r0), side.analysis.label_at(c1, r1)])
    assert side.merge_selected()
    assert inst.read_bytes() == before
    status = side.panel.status.text()
    assert "not saved for training" in status and "Analyse" in status
