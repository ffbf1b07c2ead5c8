"""Train, predict, predict-all, batch-segment and export: the model side of the window.

The controller owns the background workers and holds no panels: it says what happened
through its signals, which ``side.ModelSide`` connects to the Training panel, the loss plot,
the metrics and the models (in the order they are emitted, the order they are shown); the
panels' requests reach it the same way. Every core error becomes a dialog, and the user's
masks are never touched by a failure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.large import LargeEvent, needs_windows
from stoneseg_core.inference.segmenter import Prediction
from stoneseg_core.inference.uncertainty import UncertaintyScore, store_score
from stoneseg_core.io.project import ImageStatus, Project, iter_export_masks
from stoneseg_core.jobs.segment_folder import SegmentEvent, SegmentSummary
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.device import describe_devices
from stoneseg_core.model.info import read_model_info
from stoneseg_core.model.scale import scale_fallback
from stoneseg_core.model.stone_model import installed_stone_model
from stoneseg_core.training.events import (
    BatchProgress,
    EpochSummary,
    TrainingPhotos,
    TrainResult,
)
from stoneseg_core.training.train import iter_project_training

from ..workers import Worker, start_worker
from .compare_dialog import CompareDialog, comparison_job
from .history import Run, list_runs
from .prediction_jobs import (
    predict_all_job,
    predict_image_job,
    predict_large_image_job,
    prediction_zoom,
)

log = logging.getLogger(__name__)


class ModelController(QObject):
    training_started = Signal()
    training_finished = Signal(object)  # TrainResult or None when it failed
    prediction_ready = Signal(object)  # Path of the photo predicted
    prediction_progressed = Signal(float)  # fraction of a big photo's prediction; -1: over
    notice = Signal(str)
    # a photo's uncertainty, measured by its prediction and kept in the project's state
    uncertainty_scored = Signal(object, object)  # Path, UncertaintyScore
    # the training run, as the Training panel shows it
    message = Signal(str)  # what the run is doing, or how it ended
    running_changed = Signal(bool)  # a run started (True) or is over (False)
    run_ended = Signal(str)  # "finished" | "stopped" | "failed"
    labelled_count_changed = Signal(int)  # labelled photos (until a run has more to say)
    next_run_changed = Signal(int, object)  # labelled photos, the model it tunes (name | None)
    batch_done = Signal(object)  # BatchProgress
    epoch_done = Signal(object, object, object)  # EpochSummary, best scores, best per-photo rows
    # the loss plot: this run's curves, and an earlier run's shown beside them
    run_curves_cleared = Signal()
    run_curves_faded = Signal(str)  # the name of the run before, kept faded to compare
    earlier_curves_shown = Signal(str, object)  # the run's name, its history (list[dict])
    earlier_curves_cleared = Signal()
    # the validation metrics and the models
    model_metrics_changed = Signal(object, str)  # a model's recorded metrics (dict), a title
    metrics_cleared = Signal()
    stones_scored = Signal(object)  # the run's stone-level scores (dict | None)
    runs_changed = Signal(object, object)  # list[Run] newest first, the active model (Path | None)

    def __init__(self, session, canvas, dialogs, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.canvas, self.dialogs = session, canvas, dialogs
        self.prediction_scale = "auto"  # InferenceConfig.scale of Predict (Model menu)
        self._scale_note: str | None = None  # why that scale fell back to the long side
        self._scale_told: set[tuple[Path, str]] = set()  # (model, scale) already explained
        self._train_worker: Worker | None = None
        self._train_out: Path | None = None
        self._train_result: TrainResult | None = None
        self._train_notes = ""  # what the run's data left out (stale per-stone labels)
        self._train_from: str | None = None  # the model the run fine-tunes, by name
        self._told_installed = False  # said once that predictions use the installed model
        self._last_run: str | None = None  # the latest run's name while its curves are shown
        self._best_scores = None
        self._best_rows = ()
        self._task: Worker | None = None  # prediction / export / predict-all: one at a time
        self.prediction: Prediction | None = None
        self._prediction_path: Path | None = None
        self._dialogs_open: list = []
        session.project_opened.connect(self._on_session_project_opened)
        session.mask_saved.connect(self._on_session_mask_saved)
        session.image_changed.connect(self._on_session_image_changed)

    @staticmethod
    def devices_text() -> str:
        return describe_devices()

    # ------------------------------------------------------------------ state
    @property
    def project(self) -> Project | None:
        return self.session.project

    @property
    def is_training(self) -> bool:
        return self._train_worker is not None and self._train_worker.is_working

    @property
    def is_busy(self) -> bool:
        return self._task is not None and self._task.is_working

    def active_model(self) -> Path | None:
        return self.project.active_model if self.project else None

    def refresh_history(self) -> list[Run]:
        """Read the project's runs again and announce them (``runs_changed``); returns them."""
        if self.project is None:
            self.runs_changed.emit([], None)
            return []
        runs = list_runs(self.project.models_dir)
        self.runs_changed.emit(runs, self.active_model())
        return runs

    def _show_next_run(self, labelled: int | None = None) -> None:
        """The panel's line on what the next Train does (the photos, the model it tunes);
        ``labelled``: the count when the caller has just made it (it lists the folder)."""
        project, active = self.project, self.active_model()
        if labelled is None:
            labelled = len(project.labelled_pairs()) if project is not None else 0
        self.next_run_changed.emit(labelled, active.name if active is not None else None)

    def _on_session_project_opened(self, project: Project) -> None:
        self._told_installed = False  # each project hears once that the installed model predicts
        self._train_out = None
        self._last_run = None
        labelled = len(project.labelled_pairs())
        self.labelled_count_changed.emit(labelled)
        self._show_next_run(labelled)
        self.run_curves_cleared.emit()
        self.earlier_curves_cleared.emit()
        runs = self.refresh_history()
        active = self.active_model()
        if active is not None:
            runs = [r for r in runs if r.folder.resolve() == active.resolve()]
            if runs:
                self.model_metrics_changed.emit(
                    runs[0].info.metrics, f"Active model {runs[0].label}"
                )
                self.earlier_curves_shown.emit(runs[0].label, runs[0].info.history)
        else:
            self.metrics_cleared.emit()

    def _on_session_mask_saved(self, _path) -> None:
        # keep the count current until a run has something more useful to say
        if self.project is None or self.is_training:
            return
        labelled = len(self.project.labelled_pairs())
        if self._train_out is None:
            self.labelled_count_changed.emit(labelled)
        self._show_next_run(labelled)

    def _on_session_image_changed(self, path) -> None:
        if path != self._prediction_path:
            self.prediction = None
            self._prediction_path = None

    # ------------------------------------------------------------------ training
    def start_training(self, config: TrainConfig, afresh: bool = False) -> bool:
        project = self.project
        if self.is_training:
            return False
        if project is None:
            self.dialogs.error("Cannot train", "Open a folder of photos first.")
            return False
        if self.session.must_save_in_background():  # a big mask: written first, off the window
            self.session.after_saving(lambda: self.start_training(config, afresh), "training")
            return True
        if not self.session.save_current():
            return False  # the session has said why
        # enough labelled photos? (a quick count; which per-stone labels go with them is
        # chosen in the worker: it hashes and decodes the files the app wrote)
        n_pairs = len(project.labelled_pairs())
        if n_pairs < 2:
            self.dialogs.error(
                "Not enough labelled photos",
                f"Training needs at least two photos whose masks you made or reviewed (one to learn "
                f"from, one to check on); this project has {n_pairs}. Paint another mask first.",
            )
            return False
        from_model = None if afresh else self.active_model()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = project.models_dir / f"run-{stamp}"
        n = 2
        while out.exists():
            out = project.models_dir / f"run-{stamp}-{n}"
            n += 1
        self._train_out = out
        self._best_scores, self._best_rows = None, ()
        if self._last_run is not None:  # the run before this one stays, faded, to compare
            self.run_curves_faded.emit(self._last_run)
        else:
            self.run_curves_cleared.emit()
        self._last_run = out.name
        self.running_changed.emit(True)
        self._train_from = from_model.name if from_model else None
        self.message.emit(self._training_words(n_pairs, 0))
        self._train_notes = ""
        self._train_result = None
        # the new run is compared with the active model on the validation photos that the
        # active model never trained on; it replaces it only if it is not worse there
        self._train_worker = start_worker(
            iter_project_training,
            project,
            out,
            config,
            from_model,
            compare_with=self.active_model(),
        )  # the worker gives it should_stop: Stop ends it after the batch, its result kept
        self._train_worker.progressed.connect(self._on_train_worker_progressed)
        self._train_worker.succeeded.connect(self._on_train_worker_succeeded)
        self._train_worker.failed.connect(self._on_train_worker_failed)
        self._train_worker.finished.connect(self._on_train_worker_finished)
        self.training_started.emit()
        return True

    def stop_training(self) -> None:
        if self.is_training:
            self._train_worker.request_stop()
            self.message.emit("Stopping after this batch; the best model so far is kept…")

    def wait_for_training(self, timeout_ms: int = 120_000) -> bool:
        return self._train_worker.wait(timeout_ms) if self._train_worker is not None else True

    def _training_words(self, photos: int, with_labels: int) -> str:
        return (
            f"Training on {photos} labelled photos"
            + (f" ({with_labels} with per-stone labels)" if with_labels else "")
            + (f", fine-tuning {self._train_from}" if self._train_from else ", from scratch")
            + "…"
        )

    def _on_train_worker_progressed(self, event) -> None:
        if isinstance(event, TrainingPhotos):
            self.message.emit(self._training_words(event.photos, event.with_labels))
            self._train_notes = " ".join(event.notes)
            if event.notes:
                self.notice.emit(self._train_notes)
        elif isinstance(event, BatchProgress):
            self.batch_done.emit(event)
        elif isinstance(event, EpochSummary):
            if event.is_best:
                self._best_scores, self._best_rows = event.val, event.per_image
            self.epoch_done.emit(event, self._best_scores, self._best_rows)

    def _on_train_worker_succeeded(self, result: TrainResult) -> None:
        project = self.project
        if (
            result.best is not None
            and project is not None
            and (result.model_dir / "config.json").is_file()
        ):
            words = "Stopped" if result.cancelled else "Finished"
            head = (
                f"{words}: best epoch {result.best_epoch}, validation IoU {100 * result.best.iou:.1f} %, "
                f"F1 {100 * result.best.f1:.1f} %."
            )
            cmp = result.comparison
            if cmp is not None and not cmp.new_is_not_worse:
                # a worse model never replaces the active one by itself
                installed = project.active_model is None  # it was compared with the stone model
                other = (
                    "the stone model installed with StoneSeg, which Predict keeps using (and the "
                    "next Train fine-tunes again: label more photos first)"
                    if installed
                    else f"the active model {cmp.other.name}, which stays active"
                )
                self.message.emit(
                    f"{head} On the same {len(cmp.images)} validation photo(s) ({', '.join(cmp.images)}) "
                    f"it scored IoU {100 * cmp.new.iou:.1f} % against {100 * cmp.other_scores.iou:.1f} % "
                    f"for {other}. Make {result.model_dir.name} active in Models to use it anyway."
                    + (f" {self._train_notes}" if self._train_notes else "")
                )
                self.notice.emit(
                    f"{result.model_dir.name} is worse than "
                    + (
                        "the installed stone model on the same photos: Predict keeps using it."
                        if installed
                        else f"{cmp.other.name} on the same photos: {cmp.other.name} stays active."
                    )
                )
            else:
                project.set_active_model(result.model_dir)
                same = (
                    f" On the same {len(cmp.images)} photo(s) the previous model scored "
                    f"IoU {100 * cmp.other_scores.iou:.1f} %."
                    if cmp is not None
                    else ""
                )
                self.message.emit(
                    f"{head}{same} {result.model_dir.name} is now the active model."
                    + (f" {self._train_notes}" if self._train_notes else "")
                )
                self.notice.emit(
                    f"Model {result.model_dir.name} is ready: press Ctrl+P to predict this photo."
                )
        else:
            self.message.emit("Stopped before a model could be kept.")
        self.stones_scored.emit(result.stones)
        self.refresh_history()
        self._train_result = result

    def _on_train_worker_failed(self, message: str) -> None:
        self.message.emit(f"Training failed: {message}")
        self.refresh_history()
        self.dialogs.error("Training failed", message)
        self._train_result = None

    def _on_train_worker_finished(self) -> None:
        # only now is the worker no longer running: what listens (the Train and Stop
        # actions) sees the run as over
        self.running_changed.emit(False)
        result = self._train_result
        self.run_ended.emit(
            "failed" if result is None else "stopped" if result.cancelled else "finished"
        )
        self._show_next_run()
        self.training_finished.emit(self._train_result)

    def set_active_model(self, folder: Path) -> None:
        if self.project is None:
            return
        try:
            self.project.set_active_model(Path(folder))
        except StonesegError as exc:
            self.dialogs.error("Cannot change the active model", str(exc))
            return
        runs = [r for r in self.refresh_history() if r.folder == Path(folder)]
        if runs:
            self.model_metrics_changed.emit(runs[0].info.metrics, f"Active model {runs[0].label}")
        self.notice.emit(f"{Path(folder).name} is now the active model.")
        self._show_next_run()

    # ------------------------------------------------------------------ one-off tasks
    def _start_task(
        self, fn, *args, on_progress=None, on_success=None, what: str = ""
    ) -> Worker | None:
        if self.is_busy:
            self.notice.emit("Another task is running; wait for it or cancel it.")
            return None
        worker = start_worker(fn, *args)
        if on_progress is not None:
            worker.progressed.connect(on_progress)
        if on_success is not None:
            worker.succeeded.connect(on_success)
        worker.failed.connect(lambda message: self.dialogs.error(f"{what} failed", message))
        self._task = worker
        return worker

    def cancel_task(self) -> None:
        if self._task is not None:
            self._task.request_stop()

    def _scale_fallback(self, model: Path) -> str | None:
        """Why the chosen prediction scale cannot be used with ``model`` (None: it can);
        said in a message the first time for each model and scale, then in the notices."""
        try:
            note = scale_fallback(read_model_info(model).scale_policy, self.prediction_scale)
        except StonesegError:
            return None  # a damaged model says so when the job loads it
        key = (Path(model), self.prediction_scale)
        if note is not None and key not in self._scale_told:
            self._scale_told.add(key)
            self.dialogs.info("Prediction scale", note)
        return note

    def predicting_model(self) -> Path | None:
        """The model predictions use: the project's active model, else the stone model
        installed with StoneSeg (so Predict finds stones on the first start), else None."""
        return self.active_model() or installed_stone_model()

    def _need_model(self) -> Path | None:
        model = self.predicting_model()
        if model is None:
            self.dialogs.error(
                "No model yet", "Train a model first (or choose one in the Models panel)."
            )
        elif self.active_model() is None and not self._told_installed:
            self._told_installed = True
            self.notice.emit(
                "This project has no model of its own yet: predicting with the stone model "
                "installed with StoneSeg (trained on belt and river-gravel tiles). Label a few "
                "photos and Train to fine-tune it on yours."
            )
        return model

    def predict_current(self) -> bool:
        path = self.session.current_image_path()
        model = self._need_model()
        if path is None or model is None:
            return False
        large = needs_windows(path)
        self._scale_note = self._scale_fallback(model)
        self.notice.emit(
            f"Predicting {path.name} window by window… (Esc cancels)"
            if large
            else f"Predicting {path.name}…"
        )
        self._t0 = time.monotonic()
        worker = self._start_task(
            predict_large_image_job if large else predict_image_job,
            model,
            path,
            self.prediction_scale,
            on_progress=lambda event, p=path: self._on_large_prediction_progressed(p, event),
            on_success=self._on_prediction_ready,
            what="Prediction",
        )
        return worker is not None

    def _on_large_prediction_progressed(self, path: Path, event) -> None:
        if isinstance(event, LargeEvent):
            self.prediction_progressed.emit(event.fraction)
            self.notice.emit(
                f"Predicting {path.name}: {100 * event.fraction:.0f} % "
                f"({event.tiles_done} of {event.tiles_total} tiles, {event.seconds:.0f} s; "
                "Esc cancels)"
            )

    def _on_prediction_ready(self, result) -> None:
        if result is None:  # stopped by the user
            self.prediction_progressed.emit(-1.0)
            self.notice.emit("Prediction cancelled: the mask is unchanged.")
            return
        self.prediction_progressed.emit(-1.0)
        path, prediction = result
        if prediction.uncertainty is not None:
            self._record_uncertainty(path, prediction.uncertainty.score)
        if path != self.session.current_image_path():
            return  # the user moved on; nothing to show
        self.prediction, self._prediction_path = prediction, path
        self.canvas.set_prediction(prediction.mask)
        fallback = "by the long side, this model has no stone size; " if self._scale_note else ""
        by = " by the installed stone model" if self.active_model() is None else ""
        self.notice.emit(
            f"Prediction{by} shown in orange (predicted at {prediction_zoom(prediction.scale)} "
            f"zoom, {fallback}Ctrl+Return makes it the mask to correct)."
        )
        self.prediction_ready.emit(path)

    def _record_uncertainty(self, path: Path, score: UncertaintyScore) -> None:
        """Keep how unsure the predicting model was of ``path`` in the project's state (the
        list orders the photos by it without predicting again) and say so."""
        project, model = self.project, self.predicting_model()
        if project is None:
            return
        score = replace(score, model=model.name if model is not None else "")
        try:
            if store_score(project.state, path.stem, score):
                project.save_state()
        except StonesegError as exc:  # the state file cannot be written: the list still knows
            log.warning("Could not record the uncertainty of %s: %s", path.name, exc)
        self.uncertainty_scored.emit(path, score)

    def accept_prediction(self) -> bool:
        if self.prediction is None or self._prediction_path != self.session.current_image_path():
            self.notice.emit("No prediction for this photo: press Ctrl+P first.")
            return False
        if self.session.current_status() == ImageStatus.LABELLED or (
            self.session.is_dirty and self.session.current_document().mask.any()
        ):
            answer = self.dialogs.ask(
                "Replace your mask?",
                "This photo has a mask you made. Replace it with the model's prediction? "
                "(Ctrl+Z brings yours back.)",
                ["Replace", "Keep my mask"],
                default="Keep my mask",
            )
            if answer != "Replace":
                return False
        self.session.accept_prediction(self.prediction.mask)
        self.canvas.set_prediction(None)
        self.prediction = None
        self.notice.emit(
            "Prediction accepted: correct it, then save; it stays 'not reviewed' until you do."
        )
        return True

    def predict_unlabelled(self) -> bool:
        project, model = self.project, self._need_model()
        if project is None or model is None:
            return False
        current = self.session.current_image_path()
        # the photo on screen too, unless the user has started painting on it
        todo = [
            p
            for p in project.image_paths()
            if self.session.image_status(p) == ImageStatus.UNLABELLED
            and not (p == current and self.session.is_dirty)
        ]
        if not todo:
            self.notice.emit("Every readable photo already has a mask.")
            return False
        self._scale_note = self._scale_fallback(model)
        self.notice.emit(f"Predicting {len(todo)} unlabelled photos… (Esc cancels)")
        self._t0 = time.monotonic()
        return (
            self._start_task(
                predict_all_job,
                model,
                todo,
                project.masks_dir,
                self.prediction_scale,
                on_progress=self._on_predict_all_progressed,
                on_success=self._on_predict_all_succeeded,
                what="Predicting all",
            )
            is not None
        )

    def _on_predict_all_progressed(self, event: SegmentEvent) -> None:
        i, total, path = event.index, event.total, event.image
        error = event.message if event.status == "failed" else None
        if error is None and self.project is not None:
            if event.uncertainty is not None:
                self._record_uncertainty(path, event.uncertainty)
            self.project.set_predicted(path.stem, True)
            self.session.status_changed.emit(path, ImageStatus.PREDICTED, "")
            self.notice.emit(f"Predicted {i} of {total}: {path.name}")
            if path == self.session.current_image_path():
                # show it: the editor reads the new mask (unless the user has begun painting)
                self.session.reload_current()
        else:
            self.session.mark_unreadable(path, error or "")

    def _on_predict_all_succeeded(self, summary: SegmentSummary) -> None:
        done = summary.written
        self.notice.emit(
            ("Stopped: predicted" if summary.cancelled else "Predicted")
            + f" {done} photos; they are marked 'predicted, not reviewed'."
            + (f" {self._scale_note}" if self._scale_note else "")
        )

    def export_masks(self, folder: Path, include_predicted: bool) -> bool:
        project = self.project
        if project is not None and self.session.must_save_in_background():
            self.session.after_saving(
                lambda: self.export_masks(folder, include_predicted), "the export"
            )
            return True
        if project is None or not self.session.save_current():
            return False
        return (
            self._start_task(
                iter_export_masks,
                project,
                folder,
                include_predicted,
                on_progress=lambda item: self.notice.emit(
                    f"Exported {item[0]} of {item[1]}: {item[2]}"
                ),
                on_success=lambda n: self.notice.emit(f"Exported {n} masks to {folder}"),
                what="Export",
            )
            is not None
        )

    def compare_validation_image(self, stem: str) -> None:
        project, model = self.project, self.active_model()
        if project is None or model is None:
            return
        matches = [p for p in project.image_paths() if p.stem == Path(stem).stem]
        if not matches or not project.mask_path(matches[0]).is_file():
            return
        if matches[0] == self.session.current_image_path() and not self.session.save_current():
            return
        if project.status(matches[0]) != ImageStatus.LABELLED:
            # an unreviewed prediction is the model's own answer, not ground truth
            self.notice.emit(
                f"{matches[0].name}: its mask is a prediction nobody has reviewed, so there is "
                "no ground truth to compare with. Review it (Ctrl+R) or correct it first."
            )
            return
        self._start_task(
            comparison_job,
            model,
            matches[0],
            project.mask_path(matches[0]),
            on_success=self._on_comparison_ready,
            what="Comparison",
        )

    def _on_comparison_ready(self, result) -> None:
        dialog = CompareDialog(result, self.canvas.window())
        self._dialogs_open.append(dialog)
        dialog.finished.connect(
            lambda *_: self._dialogs_open.remove(dialog) if dialog in self._dialogs_open else None
        )
        dialog.show()

    # ------------------------------------------------------------------ closing
    def shutdown(self, timeout_ms: int = 120_000) -> None:
        """Stop everything cleanly (the best model so far is kept)."""
        was_training = self.is_training
        if self._train_worker is not None:
            self._train_worker.request_stop()
        self.cancel_task()
        self.wait_for_training(timeout_ms)
        if self._task is not None:
            self._task.wait(timeout_ms)
        # The window is closing: the queued "succeeded" may never be delivered. A stopped
        # run becomes active here only where there was no active model to compare it with
        # (the comparison needs the finished run; a better model is never replaced blind).
        out, project = self._train_out, self.project
        if (
            was_training
            and out is not None
            and project is not None
            and project.active_model is None
            and (out / "config.json").is_file()
        ):
            try:
                project.set_active_model(out)
            except StonesegError as exc:
                log.warning("Could not record the active model: %s", exc)
