"""The layout: the photo dominates at 1366 x 768, everything still fits at 800 x 600, the
user's layout is remembered, and View > Reset layout brings the default back."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea


def _docks(window):
    upper, lower = window._docks_in_order()
    return [*upper, *lower]


def _at(qtbot, window, width: int, height: int) -> None:
    for _ in range(3):  # the offscreen platform settles a shrinking dock layout in steps
        window.resize(width, height)
        qtbot.wait(100)
        if window.size().toTuple() == (width, height):
            break
    assert window.size().toTuple() == (width, height), window.size().toTuple()


def _canvas_rect(window) -> QRect:
    return QRect(window.canvas.mapTo(window, window.canvas.rect().topLeft()), window.canvas.size())


def test_the_photo_dominates_on_a_field_laptop_and_everything_fits_at_800_by_600(qtbot, window):
    _at(qtbot, window, 1366, 768)
    window.reset_layout()
    for dock in _docks(window):
        assert window.dockWidgetArea(dock) == RIGHT and not dock.isFloating()
    canvas = window.canvas.size()
    assert canvas.width() >= 0.6 * 1366 and canvas.height() >= 0.8 * 768

    _at(qtbot, window, 800, 600)  # the window can be this small: nothing forces it larger
    assert window.minimumSizeHint().width() <= 800 and window.minimumSizeHint().height() <= 600
    canvas = _canvas_rect(window)
    assert canvas.width() >= 300 and canvas.height() >= 400
    for dock in _docks(window):
        if dock.isVisible() and not dock.visibleRegion().isEmpty():
            area = QRect(dock.mapTo(window, dock.rect().topLeft()), dock.size())
            assert not area.intersects(canvas), dock.windowTitle()


def test_reset_layout_and_a_remembered_layout(qtbot, make_window):
    window = make_window()
    m = window.model_side
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, m.plot_dock)
    m.history_dock.setFloating(True)
    window.close()

    again = make_window()  # the user's layout comes back
    assert again.dockWidgetArea(again.model_side.plot_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    again.reset_layout_action.trigger()
    for dock in _docks(again):
        assert again.dockWidgetArea(dock) == RIGHT and not dock.isFloating()
    assert "Reset layout" in [a.text().replace("&", "") for a in again.view_menu.actions()]


def test_reopening_remembers_the_photo_and_training_settings_and_rescan_finds_new_photos(
    qtbot, make_window, tmp_path
):
    import numpy as np
    from guihelpers import make_project, wait_loaded, write_photo

    from stoneseg_core.io.images import write_mask

    root = make_project(tmp_path / "proj", names=("a.png", "b.png", "c.png"))
    for stem in "ab":
        write_mask(root / "masks" / f"{stem}.png", np.zeros((60, 80), np.uint8))
    window = make_window()
    window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    window.open_image(root / "images" / "c.png")
    wait_loaded(qtbot, window, root / "images" / "c.png")
    panel = window.model_side.panel
    panel.epochs.setValue(1)
    panel.crop.setValue(64)
    panel.work_size.setValue(128)
    panel.lr.setValue(0.0007)
    panel.again_epochs.setValue(2)
    panel.afresh.setChecked(True)
    qtbot.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.model_side.controller.is_training, timeout=120_000)

    # a photo copied into the folder appears on F5 (and when the window is activated)
    write_photo(root / "images" / "d.png", seed=3)
    qtbot.keyClick(window, Qt.Key.Key_F5)
    names = [p.name for p in window.session.images()]
    assert "d.png" in names and len(window.image_list.model.paths()) == 4
    window.close()

    again = make_window()
    again.open_folder(root)  # as `stoneseg gui` does with the last project
    wait_loaded(qtbot, again, root / "images" / "c.png")  # the photo left on screen
    p2 = again.model_side.panel
    assert p2.epochs.value() == 1 and p2.crop.value() == 64 and p2.work_size.value() == 128
    assert abs(p2.lr.value() - 0.0007) < 1e-9 and p2.again_epochs.value() == 2


def test_the_default_brush_fits_the_photo_until_the_user_picks_a_size(qtbot, window, tmp_path):
    from guihelpers import make_project, wait_loaded, write_photo

    root = make_project(tmp_path / "proj", names=("small.png",))
    write_photo(root / "images" / "big.png", width=2000, height=1500, seed=1)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    window.open_image(root / "images" / "big.png")
    wait_loaded(qtbot, window, root / "images" / "big.png")
    assert window.tool_settings.brush_size == 40  # 1/50 of the long side
    window.tool_settings.choose_brush_size(12)
    window.open_image(root / "images" / "small.png")
    wait_loaded(qtbot, window, root / "images" / "small.png")
    assert window.tool_settings.brush_size == 12  # the user's size stays


def test_loss_plot_axis_and_legend_follow_the_run(qtbot):
    from stoneseg_core.scoring.pixels import Scores
    from stoneseg_core.training.events import BatchProgress, EpochSummary
    from stoneseg_gui.model.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    names = lambda: [label.text for _, label in plot.legend.items]  # noqa: E731
    assert names() == []  # nothing drawn, nothing listed
    plot.add_batch(BatchProgress(1, 3, 1, 10, 0.9, 1e-3, 1.0, 1.0))
    x0, x1 = plot.plot.getViewBox().viewRange()[0]
    assert -0.05 <= x0 <= 0.0 and x1 >= 1.0  # not -0.3..0.5 around one point
    assert names() == ["train (batch, smoothed)"]
    s = Scores(0.8, 0.6, 0.7, 0.7, 0.7)
    plot.add_epoch(EpochSummary(1, 3, 0.8, 0.85, s, (), 1, 0.6, True, 1.0, 1e-3))
    assert names() == ["train (batch, smoothed)", "train (epoch)", "validation (epoch)"]


def test_the_models_table_shows_validation_iou_beside_the_run():
    from stoneseg_gui.model.history import COLUMNS

    assert COLUMNS[:2] == ("Run", "Val IoU")


def test_choosing_a_stone_keeps_the_panels_and_the_zoom(qtbot, window, tmp_path):
    import numpy as np
    from guihelpers import make_project, wait_loaded
    from skimage.draw import disk

    mask = np.zeros((100, 160), np.uint8)
    for r, c in ((30, 30), (60, 100)):
        rr, cc = disk((r, c), 15, shape=mask.shape)
        mask[rr, cc] = 255
    root = make_project(tmp_path / "proj", names=("a.png",), size=(160, 100), masks={"a": mask})
    _at(qtbot, window, 1366, 768)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    side = window.grain_side
    side.dock.raise_()
    side.analyse()
    qtbot.waitUntil(lambda: side.analysis is not None, timeout=10_000)
    qtbot.wait(200)
    zoom, canvas = window.canvas.zoom(), window.canvas.size()
    docks = [d.size() for d in _docks(window)]
    side.choose([side.analysis.stones[0].label])
    qtbot.wait(200)
    assert window.canvas.zoom() == zoom and window.canvas.size() == canvas
    assert [d.size() for d in _docks(window)] == docks


def _sideways(window) -> list[str]:
    """Every visible scroll area (panel, table, list) in any dock that scrolls sideways, each
    dock brought to the front in turn."""
    from PySide6.QtWidgets import QAbstractScrollArea, QApplication

    found = []
    for dock in _docks(window):
        dock.raise_()
        QApplication.processEvents()
        for area in dock.findChildren(QAbstractScrollArea):
            bar = area.horizontalScrollBar()
            if area.isVisible() and bar.maximum() > 0:
                found.append(f"{dock.windowTitle()}: {type(area).__name__} {area.objectName()}")
    return found


def test_no_panel_scrolls_sideways_on_a_laptop_or_a_netbook(qtbot, window, tmp_path, trained_model):
    """Texts wrap, tables shorten their names: at 1366 x 768 and 1024 x 600 nothing needs a
    sideways scroll bar (the Training panel did, labels and Stop cut off), with a trained
    model in the Models table and its validation photos listed."""
    import shutil

    from guihelpers import make_project, wait_loaded

    root = make_project(tmp_path / "proj", names=("a_rather_long_photo_name_0001.png", "b.png"))
    shutil.copytree(trained_model, root / "models" / "run-20261207-011500")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    window.model_side.controller.set_active_model(root / "models" / "run-20261207-011500")
    window.model_side.metrics.show_rows(
        [
            {
                "image": "a_rather_long_photo_name_0001",
                **dict.fromkeys(("accuracy", "iou", "f1", "precision", "recall"), 0.987),
            }
        ]
    )
    for size in ((1366, 768), (1024, 600)):
        _at(qtbot, window, *size)
        window.reset_layout()
        qtbot.wait(100)
        assert _sideways(window) == [], size


def test_the_tabs_read_whole_on_a_netbook(qtbot, window):
    """At 1024 x 600 the lower tab group's titles fit their tabs ('Training c...', 'M...'
    before they were shortened)."""
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QTabBar

    _at(qtbot, window, 1024, 600)
    window.reset_layout()
    qtbot.wait(100)
    bars = [b for b in window.findChildren(QTabBar) if b.isVisible() and b.count()]
    assert bars
    for bar in bars:
        metrics = QFontMetrics(bar.font())
        for i in range(bar.count()):
            text = bar.tabText(i)
            assert bar.tabRect(i).width() >= metrics.horizontalAdvance(text), text
