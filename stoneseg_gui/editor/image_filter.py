"""Which photos the image list shows, in which order: all, those in one state, or those not
labelled yet with the most useful to label first (the model unsure of them, spread over the
kinds of photo: ``inference.label_order``)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from stoneseg_core.io.project import ImageStatus

from .image_delegate import StatusRole, UsefulRankRole

# the photos a person has not labelled yet: unlabelled, or predicted and not reviewed
NOT_LABELLED = (ImageStatus.UNLABELLED, ImageStatus.PREDICTED)
MOST_USEFUL = "most-useful"  # the list's filter: not labelled yet, most useful to label first


class StatusFilterModel(QSortFilterProxyModel):
    """Shows all photos or only those in one state; or (``MOST_USEFUL``) the photos not
    labelled yet, the most useful to label first (``ImageListModel.useful_order``), those
    without a score last."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._status: ImageStatus | str | None = None

    def set_status(self, status: ImageStatus | str | None) -> None:
        if hasattr(self, "endFilterChange"):  # Qt >= 6.10
            self.beginFilterChange()
            self._status = status
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._status = status
            self.invalidateFilter()
        if status == MOST_USEFUL:
            self.sort(0, Qt.SortOrder.DescendingOrder)
        else:
            self.sort(-1)  # the folder's order

    def status(self) -> ImageStatus | str | None:
        """The state shown (None: all photos; ``MOST_USEFUL``: not labelled, ordered)."""
        return self._status

    def filterAcceptsRow(
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        if self._status is None:
            return True
        index = self.sourceModel().index(source_row, 0, source_parent)
        if self._status == MOST_USEFUL:
            return index.data(StatusRole) in NOT_LABELLED
        return index.data(StatusRole) == self._status

    def lessThan(
        self,
        left: QModelIndex | QPersistentModelIndex,
        right: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        # the order is descending: "less" is later in the order to label in
        a, b = left.data(UsefulRankRole), right.data(UsefulRankRole)
        a_rank = a if a is not None else float("inf")
        b_rank = b if b is not None else float("inf")
        if a_rank != b_rank:
            return a_rank > b_rank
        return left.row() > right.row()  # the photos without a score in the folder's order
