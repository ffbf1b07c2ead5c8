"""The table of one photo's stones, and how their sizes are written for people."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

from stoneseg_core.grains import Stone


def fmt_size(value: float | None) -> str:
    """A size for people: three significant figures, never in exponent notation."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_psi(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def short_reason(stone: Stone) -> str:
    """'edge', '< 2 mm' ... for a table cell; the full reason is its tooltip."""
    parts = []
    for reason in filter(None, stone.exclusion_reason.split("; ")):
        if reason.startswith("cut by"):
            parts.append("edge")
        elif reason.startswith("b-axis below "):
            parts.append("< " + reason.removeprefix("b-axis below "))
        else:
            parts.append(reason)
    return ", ".join(parts)


# ------------------------------------------------------------------------------ the table


class StoneTableModel(QAbstractTableModel):
    """One row per stone. ``Qt.UserRole`` gives the raw number, so sorting is numeric."""

    HEADERS = ("#", "b-axis", "a-axis", "area", "circ.", "edge", "left out")
    _UNIT_COLUMNS = {1: "", 2: "", 3: "²"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._stones: list[Stone] = []
        self._unit = "px"
        self._rows: dict[int, int] = {}

    def set_stones(self, stones: Sequence[Stone]) -> None:
        self.beginResetModel()
        self._stones = list(stones)
        scaled = bool(self._stones) and self._stones[0].mm_per_px is not None
        self._unit = "mm" if scaled else "px"
        self._rows = {s.label: i for i, s in enumerate(self._stones)}
        self.endResetModel()

    def stone(self, row: int) -> Stone:
        return self._stones[row]

    def row_of(self, label: int) -> int | None:
        return self._rows.get(label)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._stones)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            name = self.HEADERS[section]
            if section in self._UNIT_COLUMNS:
                return f"{name}\n({self._unit}{self._UNIT_COLUMNS[section]})"
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return (
                "Stone number (as on the photo)",
                "b-axis: the grain size, minor axis of the ellipse with the same second moments",
                "a-axis: major axis of that ellipse",
                "Area of the stone",
                "Circularity: 4π·area / perimeter² (1 for a disc)",
                "The stone touches the photo's edge, so it is probably cut",
                "Why the stone is left out of the distribution",
            )[section]
        return None

    def _value(self, s: Stone, column: int):
        mm = self._unit == "mm"
        return (
            s.label,
            s.b_axis_mm if mm else s.b_axis_px,
            s.a_axis_mm if mm else s.a_axis_px,
            s.area_mm2 if mm else float(s.area_px),
            s.circularity,
            s.touches_edge,
            short_reason(s),
        )[column]

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0):
        if not index.isValid():
            return None
        s = self._stones[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            value = self._value(s, column)
            if column == 0:
                return str(value)
            if column == 4:
                return f"{value:.2f}"
            if column == 5:
                return "yes" if value else ""
            if column == 6:
                return value
            return fmt_size(value)
        if role == Qt.ItemDataRole.ToolTipRole and column == 6 and s.excluded:
            return str(self._value(s, column))  # the whole reason, when the column is narrow
        if role == Qt.ItemDataRole.UserRole:
            value = self._value(s, column)
            return float(value) if isinstance(value, (int, float)) else str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if column in (5, 6):
                return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and s.excluded:
            return QColor(135, 139, 147)
        if role == Qt.ItemDataRole.ToolTipRole and s.excluded:
            return f"Left out: {s.exclusion_reason}"
        return None
