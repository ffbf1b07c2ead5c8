"""Segment a whole folder with a model, without blocking the window."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.jobs.segment_folder import SegmentEvent, SegmentSummary, iter_segment_folder
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.network import read_model_info

from ..workers import Worker, start_worker
from .prediction_jobs import PREDICTION_SCALES
from .train_panel import format_seconds


def segment_folder_job(model_dir, config, input_dir, output_dir, overwrite, should_stop):
    """The worker's generator: load the model, then segment photo by photo."""
    segmenter = Segmenter.load(model_dir, config)
    return (
        yield from iter_segment_folder(segmenter, input_dir, output_dir, overwrite, should_stop)
    )


class _PathRow(QWidget):
    def __init__(self, placeholder: str, title: str, parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QToolButton(text="…")
        browse.clicked.connect(lambda: self._browse(title))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(browse)

    def _browse(self, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, self.edit.text())
        if folder:
            self.edit.setText(folder)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None


class BatchDialog(QDialog):
    """Modeless: the window stays usable while it runs."""

    finished_batch = Signal(object)  # SegmentSummary

    def __init__(
        self,
        models: list[tuple[str, Path]],
        active: Path | None,
        input_dir: Path | None,
        parent=None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Segment a folder")
        self.setModal(False)
        self.setMinimumWidth(560)
        self.input_row = _PathRow("folder of photos", "Photos to segment")
        self.output_row = _PathRow(
            "where the 0/255 masks go (PNG; a georeferenced GeoTIFF's as a GeoTIFF)",
            "Output folder",
        )
        if input_dir is not None:
            self.input_row.edit.setText(str(input_dir))
            self.output_row.edit.setText(str(input_dir.parent / f"{input_dir.name}-masks"))
        self.model = QComboBox()
        for label, folder in models:
            self.model.addItem(label, str(folder))
            if active is not None and Path(folder) == Path(active):
                self.model.setCurrentIndex(self.model.count() - 1)
        self.threshold = QDoubleSpinBox(
            decimals=2, minimum=0.01, maximum=0.99, singleStep=0.05, value=0.5
        )
        self.threshold.setToolTip(
            "Stone where the model's probability is at least this; each model brings the "
            "threshold chosen on its validation photos"
        )
        self.model.currentIndexChanged.connect(self._on_model_current_index_changed)
        self._on_model_current_index_changed()
        self.scale = QComboBox()
        for value, label in PREDICTION_SCALES:
            self.scale.addItem(label, value)
        self.scale.setToolTip("How each photo is brought to the size the model works at")
        self.tta = QCheckBox("Test-time augmentation (flips; 4x slower, smoother)")
        self.overwrite = QCheckBox("Replace masks already in the output folder")
        form = QFormLayout()
        form.addRow("Photos", self.input_row)
        form.addRow("Output", self.output_row)
        form.addRow("Model", self.model)
        form.addRow("Threshold", self.threshold)
        form.addRow("Scale", self.scale)
        form.addRow("", self.tta)
        form.addRow("", self.overwrite)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(5000)
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log, 1)
        layout.addLayout(buttons)
        self.worker: Worker | None = None
        self._t0 = 0.0
        self.summary: SegmentSummary | None = None

    def _on_model_current_index_changed(self, *_args) -> None:
        # the model's own threshold (chosen on its validation photos) as the starting value
        folder = self.model.currentData()
        if not folder:
            return
        try:
            self.threshold.setValue(read_model_info(folder).threshold)
        except StonesegError:
            pass  # a damaged model says so when the batch starts

    def start(self) -> None:
        src, dst = self.input_row.path(), self.output_row.path()
        model = self.model.currentData()
        if src is None or not src.is_dir():
            self.status.setText("Choose a folder of photos that exists.")
            return
        if dst is None:
            self.status.setText("Choose an output folder.")
            return
        if not model:
            self.status.setText("There is no model yet: train one first.")
            return
        try:
            cfg = InferenceConfig(
                threshold=self.threshold.value(),
                tta=self.tta.isChecked(),
                scale=self.scale.currentData(),
            )
        except StonesegError as exc:
            self.status.setText(str(exc))
            return
        self.summary = None
        self.log.clear()
        self.progress.setValue(0)
        self.status.setText("Loading the model…")
        self._t0 = time.monotonic()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = start_worker(
            segment_folder_job,
            Path(model),
            cfg,
            src,
            dst,
            self.overwrite.isChecked(),
        )  # the worker gives the job its should_stop
        self.worker.progressed.connect(self._on_worker_progressed)
        self.worker.succeeded.connect(self._on_worker_succeeded)
        self.worker.failed.connect(self._on_worker_failed)
        self.worker.finished.connect(self._on_worker_finished)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()
        self.status.setText("Cancelling after the current photo…")

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def _on_worker_progressed(self, e: SegmentEvent) -> None:
        self.progress.setMaximum(e.total)
        self.progress.setValue(e.index)
        elapsed = time.monotonic() - self._t0
        left = elapsed / max(e.index, 1) * (e.total - e.index)
        self.status.setText(
            f"{e.index} of {e.total}: {e.image.name} — about {format_seconds(left)} left"
        )
        if e.status == "failed":
            self.log.appendPlainText(f"FAILED  {e.image.name}: {e.message}")
        elif e.status == "skipped":
            self.log.appendPlainText(f"skipped {e.image.name} (output exists)")
        else:
            self.log.appendPlainText(f"written {e.output.name}  ({e.seconds:.1f} s)")

    def _on_worker_succeeded(self, summary: SegmentSummary) -> None:
        self.summary = summary
        words = "Cancelled" if summary.cancelled else "Done"
        text = f"{words}: {summary.written} written, {summary.skipped} skipped, {len(summary.failed)} failed."
        if summary.failed:
            text += " Failed: " + ", ".join(p.name for p, _ in summary.failed)
        self.status.setText(text)
        self.log.appendPlainText(text)
        self.finished_batch.emit(summary)

    def _on_worker_failed(self, message: str) -> None:
        self.status.setText(f"Stopped: {message}")
        self.log.appendPlainText(f"ERROR: {message}")

    def _on_worker_finished(self) -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def closeEvent(self, event) -> None:
        if self.is_running():
            self.cancel()
            self.worker.wait(30_000)
        super().closeEvent(event)
