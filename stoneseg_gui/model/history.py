"""Every training run of a project, with its date, photos, settings and metrics.

The user picks the active model (the one that predicts) and can roll back to an earlier one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.errors import ModelFileError
from stoneseg_core.model.network import ModelInfo, read_model_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    folder: Path
    info: ModelInfo

    @property
    def label(self) -> str:
        return self.folder.name

    @property
    def val_iou(self) -> float | None:
        v = (self.info.metrics or {}).get("validation")
        return v.get("iou") if v else None


def list_runs(models_dir: Path) -> list[Run]:
    """All readable model folders, newest first; damaged ones are skipped with a log line."""
    runs = []
    if not models_dir.is_dir():
        return runs
    for folder in models_dir.iterdir():
        if not folder.is_dir():
            continue
        try:
            runs.append(Run(folder, read_model_info(folder)))
        except ModelFileError as exc:
            log.warning("Skipping model folder %s: %s", folder, exc)
    runs.sort(key=lambda r: (r.info.created, r.folder.name), reverse=True)
    return runs


# the figures first: a narrow panel shows the run and its validation IoU without scrolling;
# what does not fit a narrow column (the date is in the run's name, the encoder and the
# photos' names) is in each row's tooltip
COLUMNS = ("Run", "Val IoU", "Val F1", "Photos", "Epochs")
HEADER_TIPS = (
    "The model folder (its name is the time it was trained)",
    "Intersection over union on the validation photos, pixel by pixel",
    "F1 score (Dice) on the validation photos, pixel by pixel",
    "Photos it was trained on / photos it was checked on",
    "The best epoch (the one kept) of the epochs run",
)


class ModelHistory(QWidget):
    activate_requested = Signal(object)  # Path of the model folder
    compare_requested = Signal(object)  # Run whose curves to show beside the current ones

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("model_history")
        self.setWindowTitle("Models")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the run's name takes what is left, shortened in the middle when the column is narrow
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for c, tip in enumerate(HEADER_TIPS):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.doubleClicked.connect(self._on_activate_clicked)
        self.activate_button = QPushButton("Make active")
        self.activate_button.setToolTip(
            "Use this model for predictions (roll back to an earlier run)"
        )
        self.compare_button = QPushButton("Show curves")
        self.compare_button.setToolTip("Draw this run's loss curves beside the current run")
        self.activate_button.clicked.connect(self._on_activate_clicked)
        self.compare_button.clicked.connect(self._on_compare_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.activate_button)
        buttons.addWidget(self.compare_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self._runs: list[Run] = []
        self._active: Path | None = None

    def set_runs(self, runs: list[Run], active: Path | None) -> None:
        self._runs, self._active = runs, active
        self.table.setRowCount(len(runs))
        for r, run in enumerate(runs):
            info, metrics = run.info, run.info.metrics or {}
            val = metrics.get("validation") or {}
            is_active = active is not None and run.folder.resolve() == Path(active).resolve()
            cells = (
                ("● " if is_active else "") + run.label,
                f"{100 * val['iou']:.1f} %" if "iou" in val else "–",
                f"{100 * val['f1']:.1f} %" if "f1" in val else "–",
                f"{len(info.train_images)}/{len(info.val_images)}",
                f"{metrics.get('best_epoch', '?')}/{len(info.history)}"
                + (" stopped" if metrics.get("cancelled") else ""),
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if is_active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setToolTip(
                    f"{run.folder}\nTrained {info.created.replace('T', ' ')[:16]}, "
                    f"encoder {info.encoder}\nTrained on: {', '.join(info.train_images)}\n"
                    f"Validated on: {', '.join(info.val_images)}"
                )
                if c in (1, 2, 4):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)

    def runs(self) -> list[Run]:
        return list(self._runs)

    def select(self, folder: Path) -> None:
        for r, run in enumerate(self._runs):
            if run.folder == folder:
                self.table.selectRow(r)

    def _selected(self) -> Run | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return self._runs[rows.pop()] if len(rows) == 1 else None

    def _on_activate_clicked(self, *_args) -> None:
        run = self._selected()
        if run is not None:
            self.activate_requested.emit(run.folder)

    def _on_compare_clicked(self) -> None:
        run = self._selected()
        if run is not None:
            self.compare_requested.emit(run)
