"""Validation metrics: pooled scores of the best and the latest epoch, and one row per photo."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.scoring.pixels import Scores
from stoneseg_core.training.events import EpochSummary, ImageScore

NAMES = ("accuracy", "iou", "f1", "precision", "recall")
HEADERS = ("Accuracy", "IoU", "F1", "Precision", "Recall")
SHORT_HEADERS = ("Acc.", "IoU", "F1", "Prec.", "Rec.")  # the per-photo table: room for names


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _psi(value) -> str:
    return "–" if value is None else f"{value:+.2f}"


def stones_text(stones: dict | None) -> str:
    """The stone-level validation record (``stone_scores.score_stones``) in words."""
    if not stones:
        return ""
    n = stones.get("n_images", 0)
    return (
        f"Stones on {n} validation photo(s) with per-stone labels: F1 {pct(stones['f1'])} "
        f"at IoU 0.5 ({pct(stones.get('f1_50_95') or 0.0)} averaged over IoU 0.5-0.95), precision "
        f"{pct(stones['precision'])}, recall {pct(stones['recall'])}; {stones['n_pred']} "
        f"stones found, {stones['n_true']} true. Grain sizes off by D16 "
        f"{_psi(stones.get('d16_psi_error'))}, D50 {_psi(stones.get('d50_psi_error'))}, "
        f"D84 {_psi(stones.get('d84_psi_error'))} psi (by count; + is too coarse)."
    )


class MetricsPanel(QWidget):
    """Shows numbers only; choosing a row asks (by signal) to compare that photo."""

    image_comparison_requested = Signal(str)  # the photo's stem

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("metrics_panel")
        self.setWindowTitle("Metrics")
        self.caption = QLabel(
            "No model trained yet. Validation uses photos the model never learned from."
        )
        self.caption.setWordWrap(True)
        self.summary = QTableWidget(2, len(NAMES))
        self.summary.setHorizontalHeaderLabels(HEADERS)
        self.summary.setVerticalHeaderLabels(["Best epoch", "Latest epoch"])
        self.summary.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.summary.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.summary.horizontalHeader().setMinimumSectionSize(24)
        self.summary.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for c, text in enumerate(SHORT_HEADERS):  # five figures beside the rows' names
            self.summary.horizontalHeaderItem(c).setText(text)
            self.summary.horizontalHeaderItem(c).setToolTip(HEADERS[c])
        # both rows always shown, whatever else the panel holds (the stones line below)
        self.summary.resizeRowsToContents()
        rows = self.summary.verticalHeader().length()
        frame = 2 * self.summary.frameWidth()
        self.summary.setFixedHeight(
            self.summary.horizontalHeader().sizeHint().height() + rows + frame
        )
        self.per_image = QTableWidget(0, len(NAMES) + 1)
        self.per_image.setHorizontalHeaderLabels(("Photo",) + HEADERS)
        self.per_image.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_image.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.per_image.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # the scores as wide as their figures; the photo's name takes the rest, shortened
        # in the middle (its start and its number stay) when the column is narrow
        header = self.per_image.horizontalHeader()
        header.setMinimumSectionSize(24)
        self.per_image.verticalHeader().setVisible(False)  # row numbers say nothing here
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.per_image.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.per_image.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for c, text in enumerate(SHORT_HEADERS, start=1):
            self.per_image.horizontalHeaderItem(c).setText(text)
            self.per_image.horizontalHeaderItem(c).setToolTip(HEADERS[c - 1])
        self.per_image.setMinimumHeight(60)  # gives way first in a short dock
        self.per_image.setToolTip(
            "Choose a photo to see it beside its ground truth and the prediction"
        )
        self.per_image.cellDoubleClicked.connect(self._on_per_image_activated)
        self.per_image.itemSelectionChanged.connect(self._on_per_image_selection_changed)
        # the best model's stones, when validation photos have per-stone labels (instances/)
        self.stones = QLabel()
        self.stones.setObjectName("stone_scores")
        self.stones.setWordWrap(True)
        # never squeezed below its wrapped lines (a short dock takes room from the table)
        self.stones.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.stones.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.summary)
        layout.addWidget(self.stones)
        layout.addWidget(QLabel("Per validation photo (best epoch):"))
        layout.addWidget(self.per_image, 1)

    def _set_row(self, row: int, scores: Scores | None) -> None:
        for col, name in enumerate(NAMES):
            text = pct(getattr(scores, name)) if scores is not None else "–"
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.summary.setItem(row, col, item)

    def clear(self) -> None:
        self._set_row(0, None)
        self._set_row(1, None)
        self.per_image.setRowCount(0)
        self.show_stones(None)

    def show_stones(self, stones: dict | None) -> None:
        """The stone-level record of a model (hidden when it has none)."""
        self.stones.setText(stones_text(stones))
        self.stones.setVisible(bool(stones))

    def show_epoch(
        self, s: EpochSummary, best_scores: Scores | None, best_rows: tuple[ImageScore, ...]
    ) -> None:
        if s.epoch == 1:  # a new run: the stones of the last one no longer apply
            self.show_stones(None)
        self.caption.setText(
            f"Epoch {s.epoch} of {s.epochs}; best so far: epoch {s.best_epoch}. "
            f"Scored on {len(s.per_image)} validation photo(s) the model never trained on."
        )
        self._set_row(0, best_scores)
        self._set_row(1, s.val)
        self.show_rows(best_rows)

    def show_rows(self, rows) -> None:
        """``rows``: ImageScore objects or dicts with 'image' and the five scores."""
        self.per_image.setRowCount(len(rows))
        for r, row in enumerate(rows):
            if isinstance(row, ImageScore):
                name, values = row.image, row.scores.to_dict()
            else:
                name, values = row["image"], row
            photo = QTableWidgetItem(name)
            photo.setToolTip(f"{name}: choose it to see it beside its ground truth")
            self.per_image.setItem(r, 0, photo)
            for c, key in enumerate(NAMES, start=1):
                item = QTableWidgetItem(pct(values[key]))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.per_image.setItem(r, c, item)

    def show_model_metrics(self, metrics: dict, label: str) -> None:
        """The record kept in a model's config.json (for the active model)."""
        val = metrics.get("validation") if metrics else None
        if not val:
            self.clear()
            self.caption.setText(f"{label}: no validation figures recorded.")
            return
        self.caption.setText(
            f"{label}: best epoch {metrics.get('best_epoch')}, on photos it never trained on."
        )
        self._set_row(0, Scores(**{k: val[k] for k in NAMES}))
        self._set_row(1, None)
        self.show_rows(metrics.get("per_image", []))
        self.show_stones(metrics.get("stones"))

    def _on_per_image_activated(self, row: int, _col: int) -> None:
        item = self.per_image.item(row, 0)
        if item is not None:
            self.image_comparison_requested.emit(item.text())

    def _on_per_image_selection_changed(self) -> None:
        rows = {i.row() for i in self.per_image.selectedItems()}
        if len(rows) == 1:
            self._on_per_image_activated(rows.pop(), 0)

    def summary_text(self, row: int, name: str) -> str:
        item = self.summary.item(row, NAMES.index(name))
        return item.text() if item else ""
