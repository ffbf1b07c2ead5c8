"""Which photos the image list shows, in which order: all, those in one state, or those not
labelled yet with the most useful to label first (the model least sure of them)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from stoneseg_core.io.project import ImageStatus

from .image_delegate import StatusRole, UncertaintyRole

# the photos a person has not labelled yet: unlabelled, or predicted and not reviewed
NOT_LABELLED = (ImageStatus.UNLABELLED, ImageStatus.PREDICTED)
MOST_USEFUL = "most-useful"  # the list's filter: not labelled yet, most useful to label first


class StatusFilterModel(QSortFilterProxyModel):
    """Shows all photos or only those in one state; or (``MOST_USEFUL``) the photos not
    labelled yet, the one the model is least sure of first, those without a score last."""

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
        a, b = left.data(UncertaintyRole), right.data(UncertaintyRole)
        a_score = a.score if a is not None else -1.0
        b_score = b.score if b is not None else -1.0
        if a_score != b_score:
            return a_score < b_score
        return left.row() > right.row()  # ties in the folder's order (the order is descending)
