"""The image list: thumbnails made in the background (``thumbnails``), the state of each
photo, counts.

States come from the session (labelled, unlabelled, predicted and not reviewed,
unreadable with the reason); thumbnails from a worker generator, which also finds
unreadable photos before anyone opens them. Each row is drawn by ``image_delegate``.
The model side gives each predicted photo's uncertainty (``set_uncertainty``): the list then
shows the photos not labelled yet with the most useful to label first, and says why. Most
useful: the model unsure of it, spread over the kinds of photo in the folder (each
thumbnail's look, ``inference.label_order``), so that a young model unsure of every photo of
one kind does not send the user to label that kind only.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListView,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.inference.label_order import useful_order
from stoneseg_core.inference.uncertainty import UncertaintyScore
from stoneseg_core.io.project import ImageStatus

from ..widgets.theme import STATUS_COLORS, STATUS_TEXT
from ..workers import Worker
from .image_delegate import (
    DirtyRole,
    ImageDelegate,
    PathRole,
    ReasonRole,
    StatusRole,
    ThumbRole,
    UncertaintyRole,
    UsefulRankRole,
)
from .image_filter import MOST_USEFUL, NOT_LABELLED, StatusFilterModel
from .thumbnails import Thumbnail, iter_thumbnails, pixmap_from_rgb


# ----------------------------------------------------------------------------- model
@dataclass
class _Row:
    path: Path
    status: ImageStatus
    reason: str = ""
    dirty: bool = False
    thumb: QPixmap | None = None


class ImageListModel(QAbstractListModel):
    counts_changed = Signal()
    # the order to label in may have changed (a score, a look or a state did): the dock
    # re-sorts once, a moment later (many thumbnails come in at a time)
    order_stale = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[_Row] = []
        self._index: dict[Path, int] = {}
        # each photo's uncertainty, by path: kept when the rows are made again (a rescan)
        self._scores: dict[Path, UncertaintyScore] = {}
        self._looks: dict[Path, np.ndarray] = {}  # each photo's look, from its thumbnail
        # the order to label in and each photo's place in it; None: stale, made when asked
        self._order: tuple[list[Path], dict[Path, int]] | None = None

    def set_images(self, statuses: Sequence[tuple[Path, ImageStatus]]) -> None:
        self.beginResetModel()
        self._rows = [_Row(Path(p), s) for p, s in statuses]
        self._index = {row.path: i for i, row in enumerate(self._rows)}
        self._looks = {p: v for p, v in self._looks.items() if p in self._index}
        self.endResetModel()
        self._order_changed()
        self.counts_changed.emit()

    def paths(self) -> list[Path]:
        return [row.path for row in self._rows]

    def row_of(self, path: Path) -> int:
        return self._index.get(Path(path), -1)

    def status_of(self, path: Path) -> ImageStatus | None:
        i = self.row_of(path)
        return self._rows[i].status if i >= 0 else None

    def reason_of(self, path: Path) -> str:
        i = self.row_of(path)
        return self._rows[i].reason if i >= 0 else ""

    def is_dirty(self, path: Path) -> bool:
        i = self.row_of(path)
        return self._rows[i].dirty if i >= 0 else False

    def has_thumbnail(self, path: Path) -> bool:
        i = self.row_of(path)
        return i >= 0 and self._rows[i].thumb is not None

    def counts(self) -> dict[ImageStatus, int]:
        counts = dict.fromkeys(ImageStatus, 0)
        for row in self._rows:
            counts[row.status] += 1
        return counts

    def set_status(self, path: Path, status: ImageStatus, reason: str = "") -> None:
        i = self.row_of(path)
        if i < 0:
            return
        row = self._rows[i]
        if row.status == status and row.reason == reason:
            return
        labelled_before = row.status not in NOT_LABELLED
        row.status, row.reason = status, reason
        if labelled_before != (status not in NOT_LABELLED):
            self._order_changed()
        self._changed(i)
        self.counts_changed.emit()

    def set_dirty(self, path: Path, dirty: bool) -> None:
        i = self.row_of(path)
        if i >= 0 and self._rows[i].dirty != dirty:
            self._rows[i].dirty = dirty
            self._changed(i)

    def set_thumbnail(self, path: Path, pixmap: QPixmap) -> None:
        i = self.row_of(path)
        if i >= 0:
            self._rows[i].thumb = pixmap
            self._changed(i)

    def set_look(self, path: Path, look: np.ndarray) -> None:
        """The photo's look (``label_order.appearance`` of its thumbnail)."""
        self._looks[Path(path)] = np.asarray(look, np.float32)
        self._order_changed()

    def look_of(self, path: Path) -> np.ndarray | None:
        """The photo's look (None until its thumbnail is made)."""
        return self._looks.get(Path(path))

    def set_uncertainties(self, scores: dict[Path, UncertaintyScore]) -> None:
        """Every photo's uncertainty at once (a project opened): those not given have none."""
        self._scores = {Path(p): s for p, s in scores.items()}
        self._order_changed()
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, 0))

    def set_uncertainty(self, path: Path, score: UncertaintyScore | None) -> None:
        path = Path(path)
        if score is None:
            self._scores.pop(path, None)
        else:
            self._scores[path] = score
        self._order_changed()
        i = self.row_of(path)
        if i >= 0:
            self._changed(i)

    def uncertainty_of(self, path: Path) -> UncertaintyScore | None:
        """The photo's uncertainty while it is not labelled (a labelled photo's is no news)."""
        i = self.row_of(path)
        if i < 0 or self._rows[i].status not in NOT_LABELLED:
            return None
        return self._scores.get(Path(path))

    def useful_order(self) -> list[Path]:
        """The photos not labelled yet that have a score, the most useful to label first:
        ``label_order.useful_order`` of their scores and looks, against the looks of the
        photos labelled. Until every such photo has its look (the thumbnails are being
        made), by score alone. Made again only after a score, a look or a state changed."""
        if self._order is None:
            order = self._make_useful_order()
            self._order = (order, {p: i for i, p in enumerate(order)})
        return list(self._order[0])

    def useful_rank(self, path: Path) -> int | None:
        """The photo's place in ``useful_order`` (0: label it first), None when it is not in
        it."""
        if self._order is None:
            self.useful_order()
        return self._order[1].get(Path(path))

    def _make_useful_order(self) -> list[Path]:
        rows = [r for r in self._rows if r.status in NOT_LABELLED and r.path in self._scores]
        if any(r.path not in self._looks for r in rows):  # stable: ties in the folder's order
            return [r.path for r in sorted(rows, key=lambda r: -self._scores[r.path].score)]
        labelled = [
            self._looks[r.path]
            for r in self._rows
            if r.status is ImageStatus.LABELLED and r.path in self._looks
        ]
        candidates = [(r.path, self._scores[r.path].score, self._looks[r.path]) for r in rows]
        return list(useful_order(candidates, labelled))

    def refresh_order(self) -> None:
        """Tell the views every row's place in the order may have moved (one re-sort)."""
        if self._rows:
            top, bottom = self.index(0, 0), self.index(len(self._rows) - 1, 0)
            self.dataChanged.emit(top, bottom)  # all roles: the sorting proxy sorts again

    def _order_changed(self) -> None:
        self._order = None
        self.order_stale.emit()

    def _changed(self, i: int) -> None:
        index = self.index(i, 0)
        self.dataChanged.emit(index, index)

    # Qt model interface
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.path.name + (" *" if row.dirty else "")
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [
                str(row.path),
                STATUS_TEXT[row.status] + (" (unsaved edits)" if row.dirty else ""),
            ]
            if row.reason:
                lines.append(row.reason)
            score = self.uncertainty_of(row.path)
            if score is not None:
                lines.append(score.in_words())
            return "\n".join(lines)
        if role == PathRole:
            return row.path
        if role == StatusRole:
            return row.status
        if role == ReasonRole:
            return row.reason
        if role == DirtyRole:
            return row.dirty
        if role == ThumbRole:
            return row.thumb
        if role == UncertaintyRole:
            return self.uncertainty_of(row.path)
        if role == UsefulRankRole:
            return self.useful_rank(row.path)
        return None


# ----------------------------------------------------------------------------- dock
FILTERS: list[tuple[str, ImageStatus | str | None]] = [
    ("All photos", None),
    ("Unlabelled", ImageStatus.UNLABELLED),
    ("Labelled", ImageStatus.LABELLED),
    ("Predicted, not reviewed", ImageStatus.PREDICTED),
    ("Unreadable", ImageStatus.UNREADABLE),
    ("Most useful to label first", MOST_USEFUL),
]


class ImageListDock(QDockWidget):
    """A dock listing the project's photos. Emits ``image_activated`` when the user picks one."""

    image_activated = Signal(object)  # Path
    image_unreadable = Signal(object, str)  # Path, reason (found while making thumbnails)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Images", parent)
        self.setObjectName("image_list_dock")
        self.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.model = ImageListModel(self)
        self.proxy = StatusFilterModel(self)
        self.proxy.setSourceModel(self.model)

        self.view = QListView()
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(ImageDelegate(self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformItemSizes(True)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setMouseTracking(True)

        self.counts_label = QLabel()
        self.counts_label.setTextFormat(Qt.TextFormat.RichText)
        self.counts_label.setWordWrap(True)
        self.filter_combo = QComboBox()
        for text, _status in FILTERS:
            self.filter_combo.addItem(text)
        self.filter_combo.setToolTip(
            "Show only the photos in one state; 'Most useful to label first': the photos not "
            "labelled yet in the order to label them, those the model is unsure of (when "
            "predicted) spread over the kinds of photo"
        )
        self.filter_combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

        header = QHBoxLayout()
        header.setContentsMargins(6, 4, 6, 0)
        header.addWidget(QLabel("Show:"))
        header.addWidget(self.filter_combo, 1)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.view, 1)
        self.counts_label.setContentsMargins(8, 0, 8, 2)
        self.setWidget(box)
        self.setMinimumWidth(230)

        self._selecting = False
        self._open: Path | None = None  # the photo open in the window (highlighted when shown)
        self._thumb_worker: Worker | None = None
        # the order to label in, re-sorted once after a burst of changes (thumbnails' looks)
        self._order_timer = QTimer(self)
        self._order_timer.setSingleShot(True)
        self._order_timer.setInterval(250)
        self._order_timer.timeout.connect(self._on_order_timer_timeout)
        self.model.order_stale.connect(self._order_timer.start)
        self.view.selectionModel().currentChanged.connect(self._on_view_current_changed)
        self.filter_combo.currentIndexChanged.connect(self._on_filter_combo_changed)
        self.model.counts_changed.connect(self._update_counts)
        self._update_counts()

    # ------------------------------------------------------------------ public API
    def set_images(self, statuses: Sequence[tuple[Path, ImageStatus]]) -> None:
        """Show a new project's photos and start making their thumbnails."""
        self.stop_thumbnails()
        self.model.set_images(statuses)
        paths = [p for p, _ in statuses]
        if paths:
            worker = Worker(iter_thumbnails, paths)
            worker.progressed.connect(self._on_thumbnail_worker_progressed)
            self._thumb_worker = worker
            worker.start()

    def stop_thumbnails(self, wait: bool = False) -> None:
        """Stop making thumbnails (at the next photo); ``wait`` blocks until it has."""
        worker, self._thumb_worker = self._thumb_worker, None
        if worker is not None:
            worker.request_stop()
            if wait:
                worker.wait(10_000)

    @property
    def thumbnail_worker(self) -> Worker | None:
        return self._thumb_worker

    def set_status(self, path: Path, status: ImageStatus, reason: str = "") -> None:
        with self._refiltering():
            self.model.set_status(path, status, reason)

    def set_dirty(self, path: Path, dirty: bool) -> None:
        with self._refiltering():
            self.model.set_dirty(path, dirty)

    def select_path(self, path: Path | None) -> None:
        """Highlight ``path`` without emitting ``image_activated``."""
        self._open = path
        self._selecting = True
        try:
            if path is None:
                self.view.clearSelection()
                self.view.selectionModel().clearCurrentIndex()
                return
            row = self.model.row_of(path)
            if row < 0:
                return
            proxy_index = self.proxy.mapFromSource(self.model.index(row, 0))
            if not proxy_index.isValid():  # hidden by the filter
                self.view.clearSelection()
                self.view.selectionModel().clearCurrentIndex()
                return
            self.view.setCurrentIndex(proxy_index)
            self.view.scrollTo(proxy_index)
        finally:
            self._selecting = False

    def set_uncertainties(self, scores: dict[Path, UncertaintyScore]) -> None:
        """Each photo's uncertainty (by path), from the project's state; replaces the last."""
        with self._refiltering():
            self.model.set_uncertainties(scores)

    def set_uncertainty(self, path: Path, score: UncertaintyScore | None) -> None:
        """A photo just predicted: how unsure the model was of it (None: no longer known)."""
        with self._refiltering():
            self.model.set_uncertainty(path, score)

    def set_filter(self, status: ImageStatus | str | None) -> None:
        for i, (_text, s) in enumerate(FILTERS):
            if s == status:
                self.filter_combo.setCurrentIndex(i)

    def visible_paths(self) -> list[Path]:
        return [self.proxy.index(r, 0).data(PathRole) for r in range(self.proxy.rowCount())]

    # ------------------------------------------------------------------ internals
    def _on_thumbnail_worker_progressed(self, thumb: Thumbnail) -> None:
        if thumb.rgb is not None:
            self.model.set_thumbnail(thumb.path, pixmap_from_rgb(thumb.rgb))
            self.model.set_look(thumb.path, thumb.look)
        else:
            self.image_unreadable.emit(thumb.path, thumb.error or "Unreadable")

    def _on_view_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._selecting or not current.isValid():
            return
        self._open = current.data(PathRole)
        self.image_activated.emit(self._open)

    def _on_order_timer_timeout(self) -> None:
        if self.proxy.status() == MOST_USEFUL:
            with self._refiltering():
                self.model.refresh_order()

    def _on_filter_combo_changed(self, i: int) -> None:
        with self._refiltering():
            self.proxy.set_status(FILTERS[i][1])

    @contextmanager
    def _refiltering(self):
        """Rows shown, hidden or moved by the filter or the sort move the view's current row
        too; that is not the user picking a photo: the open one stays open, highlighted
        where it is shown."""
        selecting, self._selecting = self._selecting, True
        try:
            yield
        finally:
            self._selecting = selecting
        current = self.view.currentIndex()
        if not selecting and (current.data(PathRole) if current.isValid() else None) != self._open:
            self.select_path(self._open)  # only when moved: the list never jumps needlessly

    def _update_counts(self) -> None:
        counts = self.model.counts()
        total = sum(counts.values())
        parts = [f"<b>{total}</b> photo{'s' if total != 1 else ''}"]
        for status in (
            ImageStatus.LABELLED,
            ImageStatus.UNLABELLED,
            ImageStatus.PREDICTED,
            ImageStatus.UNREADABLE,
        ):
            n = counts[status]
            if n or status in (ImageStatus.LABELLED, ImageStatus.UNLABELLED):
                color = STATUS_COLORS[status].name()
                parts.append(
                    f"<span style='color:{color}'>●</span>&nbsp;{n}&nbsp;{STATUS_TEXT[status].split(',')[0].lower()}"
                )
        self.counts_label.setText(" &nbsp; ".join(parts))
        self.counts_label.setToolTip(
            "\n".join(f"{STATUS_TEXT[s]}: {counts[s]}" for s in ImageStatus)
        )
