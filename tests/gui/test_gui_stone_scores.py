"""The metrics panel shows a model's stones when its validation photos had per-stone labels."""

from __future__ import annotations

from stoneseg_gui.model.metrics_panel import MetricsPanel, stones_text

SCORES = {"accuracy": 0.9, "iou": 0.7, "f1": 0.8, "precision": 0.75, "recall": 0.85}
STONES = {
    "n_images": 2,
    "n_pred": 120,
    "n_true": 131,
    "precision": 0.61,
    "recall": 0.56,
    "f1": 0.584,
    "f1_50_95": 0.31,
    "d16_psi_error": -0.12,
    "d50_psi_error": 0.05,
    "d84_psi_error": None,
}


def test_stone_scores_are_shown_with_a_model_and_hidden_without(qtbot):
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    panel.resize(300, 500)
    panel.show()
    metrics = {"best_epoch": 3, "validation": SCORES, "per_image": [], "stones": STONES}
    panel.show_model_metrics(metrics, "Active model run-1")
    assert panel.stones.isVisible()
    text = panel.stones.text()
    assert "2 validation photo(s)" in text and "F1 58.40 %" in text and "31.00 %" in text
    assert "120 stones found, 131 true" in text
    assert "D16 -0.12" in text and "D50 +0.05" in text and "D84 –" in text
    # a narrow panel wraps the line instead of scrolling sideways
    assert panel.stones.wordWrap() and panel.stones.width() <= panel.width()
    # a model without per-stone validation: nothing is left from the last one
    panel.show_model_metrics({**metrics, "stones": None}, "Active model run-2")
    assert not panel.stones.isVisible()
    panel.show_stones(STONES)
    panel.clear()
    assert not panel.stones.isVisible()
    assert stones_text(None) == ""


def test_training_settings_remembered_by_an_older_version_take_the_new_default_target():
    from PySide6.QtCore import QSettings

    from stoneseg_core.model.config import TrainConfig
    from stoneseg_gui.model.side import _remembered_config
    from stoneseg_gui.settings import save_train_settings

    settings = QSettings()
    # what the Training panel saved before the boundary target was the default
    save_train_settings(settings, TrainConfig(target="mask", epochs=7).to_dict())
    config = _remembered_config(settings)
    assert config is not None and config.epochs == 7  # the user's own settings stay
    assert config.target == "mask+boundary"  # the panel never showed the target


def test_a_short_panel_keeps_the_stones_line_clear_of_the_table(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

    window = QMainWindow()
    qtbot.addWidget(window)
    window.setCentralWidget(QWidget())
    panel = MetricsPanel()
    dock = QDockWidget("Validation metrics")
    dock.setWidget(panel)
    dock.setFixedWidth(430)  # its share of a 1024 x 600 window
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    metrics = {"best_epoch": 3, "validation": SCORES, "per_image": [], "stones": STONES}
    panel.show_model_metrics(metrics, "Active model run-1")
    window.resize(900, 230)  # a short dock: the line was squeezed onto the table there
    window.show()
    qtbot.wait(50)
    assert panel.stones.height() >= panel.stones.heightForWidth(panel.stones.width())
    assert panel.stones.geometry().top() >= panel.summary.geometry().bottom()
