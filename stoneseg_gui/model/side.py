"""Adds the model side to the main window: docks, the Model menu, its actions, close guard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QCheckBox, QFileDialog, QMessageBox

from stoneseg_core.errors import StonesegError
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.device import cuda_available

from ..actions import make_action
from ..host import WindowHost
from ..settings import AGAIN_EPOCHS_KEY, load_train_settings, save_train_settings
from .batch_dialog import BatchDialog
from .controller import ModelController
from .history import ModelHistory, Run, list_runs
from .label_next import LabelNext
from .loss_plot import LossPlot
from .metrics_panel import MetricsPanel
from .prediction_jobs import PREDICTION_SCALES
from .train_panel import TrainPanel

SCALE_KEY = "prediction_scale"  # QSettings: Model > Prediction scale


@dataclass
class ModelActions:
    train: QAction
    stop_training: QAction
    predict: QAction
    accept_prediction: QAction
    predict_unlabelled: QAction
    segment_folder: QAction
    export_masks: QAction
    cancel_task: QAction


class ModelSide:
    """Owns the model panels and actions of one MainWindow."""

    def __init__(self, window: WindowHost) -> None:
        self.window = window
        self._build_panels(window)
        self._add_docks(window)
        # where the docks go is the window's one layout (MainWindow.arrange_docks)
        self.actions = self._make_actions(window, self.controller)
        self._build_menu(window)
        window.addActions(list(vars(self.actions).values()))
        for dock in (self.train_dock, self.plot_dock, self.metrics_dock, self.history_dock):
            window.view_menu.addAction(dock.toggleViewAction())
        self._connect_controller(self.controller)
        # what to label next: the uncertainty overlay (U), Next most useful photo (N)
        self.label_next = LabelNext(window, self.controller)
        self._refresh_actions()

    # ------------------------------------------------------------------ building
    def _build_panels(self, window: WindowHost) -> None:
        """The Training panel, the loss plot, the metrics, the models, and their controller."""
        self.panel = TrainPanel(
            ModelController.devices_text(),
            cuda_available(),
            _remembered_config(window.settings),
        )
        again = window.settings.value(AGAIN_EPOCHS_KEY)
        if again is not None:
            try:
                self.panel.again_epochs.setValue(int(again))
            except (TypeError, ValueError):
                pass  # a value another version wrote: the default stays
        self.plot = LossPlot()
        self.metrics = MetricsPanel()
        self.history = ModelHistory()
        self.controller = ModelController(window.session, window.canvas, window.dialogs, window)
        self.batch_dialog: BatchDialog | None = None

    def _add_docks(self, window: WindowHost) -> None:
        """One dock per panel."""
        self.train_dock = window.add_dock(
            self.panel, Qt.DockWidgetArea.RightDockWidgetArea, "Training", scroll=True
        )
        self.plot_dock = window.add_dock(
            self.plot, Qt.DockWidgetArea.BottomDockWidgetArea, "Curves"
        )
        self.metrics_dock = window.add_dock(
            self.metrics, Qt.DockWidgetArea.BottomDockWidgetArea, "Metrics"
        )
        self.history_dock = window.add_dock(
            self.history, Qt.DockWidgetArea.BottomDockWidgetArea, "Models"
        )

    def _make_actions(self, window: WindowHost, c: ModelController) -> ModelActions:
        """The Model menu's actions, their slots on this side and on ``c``."""
        return ModelActions(
            train=make_action(
                window,
                "&Train",
                self._on_train_triggered,
                ("Ctrl+T",),
                "Train (or fine-tune the active model) on every labelled photo",
                None,
            ),
            stop_training=make_action(
                window,
                "S&top training",
                c.stop_training,
                ("Ctrl+Shift+T",),
                "Stop after the current batch; the best model so far is kept",
            ),
            predict=make_action(
                window,
                "&Predict this photo",
                c.predict_current,
                ("Ctrl+P",),
                "Let the active model segment the photo shown (in its own colour)",
            ),
            accept_prediction=make_action(
                window,
                "&Accept prediction",
                c.accept_prediction,
                ("Ctrl+Return",),
                "Turn the shown prediction into the editable mask",
            ),
            predict_unlabelled=make_action(
                window,
                "Predict all &unlabelled",
                c.predict_unlabelled,
                ("Ctrl+Shift+P",),
                "Segment every photo without a mask",
            ),
            segment_folder=make_action(
                window,
                "&Segment a folder…",
                self.open_batch_dialog,
                ("Ctrl+Shift+B",),
                "Write masks for a whole folder of photos",
            ),
            export_masks=make_action(
                window,
                "&Export masks…",
                self.export_masks,
                ("Ctrl+E",),
                "Copy the masks as 0/255 PNG files to a folder",
            ),
            cancel_task=make_action(
                window,
                "&Cancel background task",
                c.cancel_task,
                ("Ctrl+.",),
                "Cancel predicting or exporting",
            ),
        )

    def _build_menu(self, window: WindowHost) -> None:
        """The Model menu, with Prediction scale after Predict all unlabelled."""
        menu = window.add_action_menu("&Model")
        for name in (
            "train",
            "stop_training",
            None,
            "predict",
            "accept_prediction",
            "predict_unlabelled",
            None,
            "segment_folder",
            "export_masks",
            "cancel_task",
        ):
            if name is None:
                menu.addSeparator()
            else:
                menu.addAction(getattr(self.actions, name))
            if name == "predict_unlabelled":
                self.scale_actions = self._add_scale_menu(menu)

    def _connect_controller(self, c: ModelController) -> None:
        """The panels' requests to the controller, and its news: to the panels, the actions'
        state, remembered settings, the status bar."""
        self.panel.train_requested.connect(self._on_panel_train_requested)
        self.panel.stop_requested.connect(c.stop_training)
        self.history.activate_requested.connect(c.set_active_model)
        self.history.compare_requested.connect(self._on_history_compare_requested)
        self.metrics.image_comparison_requested.connect(c.compare_validation_image)
        self._connect_panels(c)
        c.training_started.connect(self._refresh_actions)
        c.training_started.connect(self._remember_training_settings)
        c.training_finished.connect(self._refresh_actions)
        c.notice.connect(self._on_controller_notice)
        c.prediction_progressed.connect(self._on_controller_prediction_progressed)

    def _connect_panels(self, c: ModelController) -> None:
        """What the controller says happened, shown by the panel that shows it."""
        c.message.connect(self.panel.show_message)
        c.running_changed.connect(self.panel.set_running)
        c.run_ended.connect(self.panel.show_outcome)
        c.labelled_count_changed.connect(self.panel.show_labelled_count)
        c.next_run_changed.connect(self.panel.set_next_run_context)
        c.batch_done.connect(self._on_controller_batch_done)
        c.epoch_done.connect(self._on_controller_epoch_done)
        c.run_curves_cleared.connect(self.plot.clear_run)
        c.run_curves_faded.connect(self.plot.fade_run)
        c.earlier_curves_shown.connect(self.plot.show_earlier)
        c.earlier_curves_cleared.connect(self.plot.clear_earlier)
        c.model_metrics_changed.connect(self.metrics.show_model_metrics)
        c.metrics_cleared.connect(self.metrics.clear)
        c.stones_scored.connect(self.metrics.show_stones)
        c.runs_changed.connect(self.history.set_runs)

    def _add_scale_menu(self, menu) -> dict[str, QAction]:
        """Model > Prediction scale: how Predict brings a photo to the model's scale (the
        batch dialog has its own choice); remembered."""
        sub = menu.addMenu("Prediction &scale")
        sub.setToolTipsVisible(True)
        group = QActionGroup(sub)
        group.setExclusive(True)
        remembered = str(self.window.settings.value(SCALE_KEY, "auto"))
        if remembered not in dict(PREDICTION_SCALES):
            remembered = "auto"
        actions = {}
        for value, label in PREDICTION_SCALES:
            action = QAction(label, sub, checkable=True)
            action.setData(value)
            action.setChecked(value == remembered)
            action.triggered.connect(lambda _checked=False, v=value: self.set_prediction_scale(v))
            group.addAction(action)
            sub.addAction(action)
            actions[value] = action
        self.controller.prediction_scale = remembered
        return actions

    def set_prediction_scale(self, value: str) -> None:
        self.controller.prediction_scale = value
        self.scale_actions[value].setChecked(True)
        self.window.settings.setValue(SCALE_KEY, value)
        self.window.statusBar().showMessage(
            f"Predictions: {dict(PREDICTION_SCALES)[value].lower()}.", 5000
        )

    # ------------------------------------------------------------------ slots
    def _remember_training_settings(self) -> None:
        save_train_settings(self.window.settings, self.panel.config().to_dict())
        self.window.settings.setValue(AGAIN_EPOCHS_KEY, self.panel.again_epochs.value())

    def _on_panel_train_requested(self, config: TrainConfig, afresh: bool) -> None:
        self.controller.start_training(config, afresh)

    def _on_history_compare_requested(self, run: Run) -> None:
        self.plot.show_earlier(run.label, run.info.history)

    def _on_controller_batch_done(self, event) -> None:
        self.plot.add_batch(event)
        self.panel.show_batch(event)

    def _on_controller_epoch_done(self, event, best_scores, best_rows) -> None:
        self.plot.add_epoch(event)
        self.metrics.show_epoch(event, best_scores, best_rows)
        self.panel.show_epoch(event)

    def _on_train_triggered(self) -> None:
        self.controller.start_training(self.panel.run_config(), self.panel.afresh.isChecked())

    def _on_controller_notice(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 8000)

    def _on_controller_prediction_progressed(self, fraction: float) -> None:
        # the window's status bar has a progress bar for work on the photo (the editor's)
        show_busy = getattr(self.window.statusBar(), "show_busy", None)
        if show_busy is not None:
            show_busy(None if fraction < 0 else "Predicting", fraction, job="predict")

    def _refresh_actions(self, *_args) -> None:
        training = self.controller.is_training
        self.actions.train.setEnabled(not training)
        self.actions.stop_training.setEnabled(training)

    def open_batch_dialog(self) -> BatchDialog:
        project = self.window.project
        runs = list_runs(project.models_dir) if project is not None else []
        models = [(r.label, r.folder) for r in runs]
        active = project.active_model if project is not None else None
        if self.batch_dialog is None or not self.batch_dialog.is_running():
            self.batch_dialog = BatchDialog(
                models, active, project.images_dir if project else None, self.window
            )
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        return self.batch_dialog

    def export_masks(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export masks to")
        if not folder:
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Export masks",
            "Export the masks of labelled photos.",
            QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel,
            self.window,
        )
        also = QCheckBox("Also export predicted masks that nobody has reviewed")
        box.setCheckBox(also)
        if box.exec() == QMessageBox.StandardButton.Ok:
            self.controller.export_masks(Path(folder), also.isChecked())

    # ------------------------------------------------------------------ closing
    def may_close(self) -> bool:
        """Called by the window before it closes: asks when training runs, then stops it cleanly."""
        if self.controller.is_training:
            answer = self.window.dialogs.ask(
                "Training is running",
                "Stop training and quit? The best model so far is kept.",
                ["Stop and quit", "Keep training"],
                default="Keep training",
            )
            if answer != "Stop and quit":
                return False
        if self.batch_dialog is not None and self.batch_dialog.is_running():
            self.batch_dialog.cancel()
            self.batch_dialog.worker.wait(60_000)
        self.controller.shutdown()
        return True


def _remembered_config(settings: QSettings) -> TrainConfig | None:
    """The Training panel's values from the last run the user started, if any still valid."""
    values = load_train_settings(settings)
    if not values:
        return None
    # the panel shows no target: one remembered is the default of the version that saved
    # it, not the user's choice, so a newer default (the boundary target) reaches them too
    values.pop("target", None)
    values.pop("boundary_px", None)
    try:
        return TrainConfig.from_dict(values)
    except (StonesegError, TypeError, ValueError):
        return None
