"""The Grains dock: scale and sampling settings, the table of stones, the size distribution.

Widgets only. The panel reads its settings from typed widgets into a ``GrainOptions``
and shows what it is given (stones, a curve, percentiles); ``GrainSide`` does the work.
Its buttons are the side's actions (one source of truth for text, keys and enabled state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QBuffer,
    QByteArray,
    QIODevice,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSignalBlocker,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.grains import DEFAULT_PERCENTILES, GrainOptions, GrainSizeCurve, Stone, psi

MAIN_PERCENTILES = (16.0, 50.0, 84.0)


@dataclass(frozen=True)
class PlotColors:
    background: str
    foreground: str
    grid_alpha: float
    curve: str
    main_mark: str  # D16, D50, D84
    side_mark: str  # D10, D90
    label_fill: tuple[int, int, int, int]


# the window's plots are dark like the theme; an exported PNG is for paper
DARK = PlotColors("#202226", "#d0d0d0", 0.16, "#4da3ff", "#ff6b5e", "#9aa0aa", (32, 34, 38, 215))
LIGHT = PlotColors("#ffffff", "#333333", 0.2, "#1f5fa8", "#c0392b", "#7c7c82", (255, 255, 255, 215))


@dataclass
class GrainActions:
    """The grain side's actions; the panel's buttons show them."""

    analyse: QAction
    pool: QAction
    measure_scale: QAction
    import_scales: QAction
    folder_scale: QAction
    pick: QAction
    split: QAction
    merge: QAction
    undo_edit: QAction
    export_csv: QAction
    export_png: QAction
    cancel: QAction


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

    def __init__(self, parent=None) -> None:  # noqa: ANN001
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

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._stones)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0):  # noqa: ANN201
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

    def _value(self, s: Stone, column: int):  # noqa: ANN202
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

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0):  # noqa: ANN201
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


# ------------------------------------------------------------------------------- the plot


@dataclass(frozen=True)
class CurveView:
    """What the plot shows: a cumulative curve, its percentiles, and where it comes from."""

    curve: GrainSizeCurve
    title: str  # e.g. "a.png" or "Pooled: 12 photos"
    found: int  # stones found, including those left out
    options_text: str  # the options, in words, for exports
    marks: dict[float, float | None] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return self.curve.unit

    @property
    def kept(self) -> int:
        return int(self.curve.n_stones)

    def caption(self) -> str:
        by = "by count" if self.curve.by == "count" else "by area"
        left = self.found - self.kept
        out = f", {left} left out" if left else ""
        return f"{self.title} · {by} · {self.kept} stone{'s' if self.kept != 1 else ''}{out}"


def _tick_label(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def log2_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions in log2 units: whole psi where that gives four or more, else halves or quarters."""
    for step in (1.0, 0.5, 0.25):
        ticks = [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
        if len(ticks) >= 4:
            return ticks
    return ticks


class GrainPlot(QWidget):
    """Cumulative curve on a log2 axis: ticks in mm (or px) below, psi above, percentiles marked.

    Its colours are its own (``DARK`` in the window, ``LIGHT`` for a PNG), whatever the
    global pyqtgraph options say.
    """

    def __init__(self, colors: PlotColors = DARK, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("grain_plot")
        self.colors = c = colors
        self.plot = pg.GraphicsLayoutWidget()
        self.plot.setBackground(c.background)
        self.plot.ci.setContentsMargins(4, 4, 10, 4)
        item = self.plot_item = self.plot.addPlot(row=1, col=0)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showAxis("top")
        for name in ("left", "bottom", "top"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(c.foreground))
            axis.setTextPen(pg.mkPen(c.foreground))
        item.showGrid(x=True, y=True, alpha=c.grid_alpha)
        item.setLabel("left", "finer than (%)", color=c.foreground)
        item.getViewBox().setMouseEnabled(x=False, y=False)
        item.getViewBox().setDefaultPadding(0.0)
        self.curve_item = item.plot([], [], pen=pg.mkPen(c.curve, width=2.2))
        self.points_item = item.plot(
            [], [], pen=None, symbol="o", symbolSize=5, symbolBrush=c.curve, symbolPen=None
        )
        self.empty_text = pg.TextItem("", color=c.side_mark, anchor=(0.5, 0.5))
        item.addItem(self.empty_text)
        self._marks: list[pg.GraphicsObject] = []
        self.view: CurveView | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.show_view(None, "No distribution yet: press Analyse.")

    # ------------------------------------------------------------------ showing
    def show_view(self, view: CurveView | None, empty: str = "") -> None:
        item = self.plot_item
        for mark in self._marks:
            item.removeItem(mark)
        self._marks.clear()
        self.view = view
        if view is None or view.curve.sizes.size == 0:
            self.curve_item.setData([], [])
            self.points_item.setData([], [])
            self._set_axes("mm", 0.0, 4.0)
            self.empty_text.setText(empty or "No stones to plot.")
            self.empty_text.setPos(2.0, 50.0)
            self.empty_text.setVisible(True)
            return
        self.empty_text.setVisible(False)
        x, y = self._polyline(view.curve)
        self.curve_item.setData(x, y)
        px = np.log2(view.curve.sizes)
        py = 100.0 * view.curve.fraction_finer
        self.points_item.setData(px if px.size <= 300 else [], py if px.size <= 300 else [])
        lo, hi = float(px.min()), float(px.max())
        if hi - lo < 1.0:  # one size or a narrow spread: show at least one psi unit
            mid = (lo + hi) / 2
            lo, hi = mid - 0.5, mid + 0.5
        lo, hi = lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)
        self._set_axes(view.unit, lo, hi)
        for p, d in view.marks.items():
            if d is not None and d > 0:
                self._add_mark(p, d)

    def _set_axes(self, unit: str, lo: float, hi: float) -> None:
        item = self.plot_item
        fg = self.colors.foreground
        item.setLabel("bottom", f"b-axis ({unit}), log scale", color=fg)
        item.setLabel("top", "ψ = log₂(mm)" if unit == "mm" else "log₂(px)", color=fg)
        ticks = log2_ticks(lo, hi)
        item.getAxis("bottom").setTicks([[(t, _tick_label(2.0**t)) for t in ticks], []])
        item.getAxis("top").setTicks([[(t, f"{t:g}") for t in ticks], []])
        item.setXRange(lo, hi, padding=0)
        item.setYRange(0, 103, padding=0)

    @staticmethod
    def _polyline(curve: GrainSizeCurve) -> tuple[np.ndarray, np.ndarray]:
        """The curve the percentiles are read from (linear between stones in size), on a log axis."""
        sizes, frac = curve.sizes, curve.fraction_finer
        if sizes.size > 400 or sizes.size < 2:
            return np.log2(sizes), 100.0 * frac
        t = np.linspace(0.0, 1.0, 9)[:-1]
        xs = (sizes[:-1, None] + (sizes[1:] - sizes[:-1])[:, None] * t).ravel()
        ys = (frac[:-1, None] + (frac[1:] - frac[:-1])[:, None] * t).ravel()
        return np.log2(np.r_[xs, sizes[-1]]), 100.0 * np.r_[ys, frac[-1]]

    def _add_mark(self, p: float, d: float) -> None:
        """A drop line and a dot; D16/D50/D84 labelled at the curve, D10/D90 at the axis."""
        item = self.plot_item
        main = p in MAIN_PERCENTILES
        c = self.colors
        color = c.main_mark if main else c.side_mark
        x = math.log2(d)
        drop = item.plot(
            [x, x],
            [0, p],
            pen=pg.mkPen(
                color, width=1.3, style=Qt.PenStyle.DashLine if main else Qt.PenStyle.DotLine
            ),
        )
        dot = item.plot(
            [x],
            [p],
            pen=None,
            symbol="o",
            symbolSize=8 if main else 6,
            symbolBrush=color,
            symbolPen=pg.mkPen(c.background, width=1),
        )
        text = pg.TextItem(
            f"D{p:g}",
            color=color,
            anchor=(-0.08, 0.0) if main else (-0.08, 1.0),
            fill=pg.mkBrush(*c.label_fill),
        )
        font = text.textItem.font()
        font.setBold(main)
        font.setPointSizeF(8.5)
        text.setFont(font)
        text.setPos(x, p if main else 0.0)
        item.addItem(text)
        self._marks += [drop, dot, text]

    # ------------------------------------------------------------------ for tests and export
    def curve_points(self) -> int:
        x, _ = self.curve_item.getData()
        return 0 if x is None else len(x)

    def mark_names(self) -> list[str]:
        return [m.textItem.toPlainText() for m in self._marks if isinstance(m, pg.TextItem)]

    def png_bytes(self, width_px: int = 2000) -> bytes:
        """The shown curve as a PNG ready for a report: title, options and percentiles written on it."""
        return render_plot_png(self.view, width_px)


def percentile_rows(view: CurveView) -> list[tuple[str, str, str]]:
    return [
        (
            f"D{p:g}",
            fmt_size(d),
            fmt_psi(psi(d)) if (d is not None and d > 0 and view.unit == "mm") else "–",
        )
        for p, d in view.marks.items()
    ]


def render_plot_png(view: CurveView | None, width_px: int = 2000) -> bytes:
    """Draw ``view`` on its own off-screen plot (1000 x 640 layout, scaled to ``width_px``)."""
    from pyqtgraph.exporters import ImageExporter

    page = GrainPlot(LIGHT)
    page.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
    page.resize(1000, 640)
    page.show_view(view, "No stones to plot.")
    item = page.plot_item
    if view is not None:
        page.plot.addLabel(
            f"<span style='font-size:12pt;font-weight:bold'>{view.caption()}</span><br>"
            f"<span style='font-size:9pt;color:#555'>{view.options_text}</span>",
            row=0,
            col=0,
            color=LIGHT.foreground,
        )
        unit = view.unit
        rows = "".join(
            f"<tr><td><b>{name}</b>&nbsp;</td><td align='right'>{mm} {unit}</td>"
            + (f"<td align='right'>&nbsp;&nbsp;{ps} ψ</td>" if unit == "mm" else "")
            + "</tr>"
            for name, mm, ps in percentile_rows(view)
        )
        box = pg.LabelItem(
            f"<table style='font-size:10pt;color:#222'>{rows}</table>", justify="left"
        )
        box.setParentItem(item.getViewBox())
        box.anchor(itemPos=(1, 1), parentPos=(1, 1), offset=(-12, -12))
    page.show()
    try:
        exporter = ImageExporter(page.plot.ci)
        exporter.parameters()["width"] = int(width_px)
        image: QImage = exporter.export(toBytes=True)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        return bytes(data.data())
    finally:
        page.close()
        page.deleteLater()


# ------------------------------------------------------------------------------ the panel


def action_button(action: QAction, text: str | None = None, primary: bool = False) -> QPushButton:
    """A push button that mirrors an action: its text (or ``text``), tip, enabled and checked state."""
    button = QPushButton()
    button.setCheckable(action.isCheckable())
    if action.isCheckable():  # a tool that is on must look on
        button.setStyleSheet(
            "QPushButton:checked { background-color: #266ea0; color: white;"
            " border: 1px solid #4a9ad4; border-radius: 3px; padding: 3px 8px; }"
        )

    def sync() -> None:
        button.setText(text if text is not None else action.text().replace("&", ""))
        button.setToolTip(action.toolTip())
        button.setEnabled(action.isEnabled())
        if action.isCheckable():
            button.setChecked(action.isChecked())

    sync()
    action.changed.connect(sync)
    action.toggled.connect(lambda _checked: sync())
    button.clicked.connect(lambda _checked=False: (action.trigger(), sync()))
    if primary:
        button.setDefault(True)
        font = button.font()
        font.setBold(True)
        button.setFont(font)
    return button


class ScaleSpinBox(QDoubleSpinBox):
    """Millimetres per pixel with up to six decimals, written without trailing zeros."""

    def textFromValue(self, value: float) -> str:
        return f"{value:.6f}".rstrip("0").rstrip(".")


class GrainPanel(QWidget):
    """Scale, sampling options and the stones of this photo, with the grain tools."""

    scale_edited = Signal(object)  # float | None: the user typed a scale (None: no scale)
    options_edited = Signal()  # exclusions or the minimum size changed
    weighting_changed = Signal(str)  # "count" | "area"
    stones_chosen = Signal(object)  # tuple[int, ...]: labels chosen in the table

    def __init__(self, actions: GrainActions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("grain_panel")
        self.setWindowTitle("Grains")
        self.actions = actions

        # --- scale and sampling
        self.scale = ScaleSpinBox(decimals=6, minimum=0.0, maximum=10_000.0, singleStep=0.01)
        self.scale.setSpecialValueText("not set")
        self.scale.setSuffix(" mm/px")
        self.scale.setKeyboardTracking(False)
        self.scale.setToolTip(
            "Millimetres per pixel of this photo, saved with the project.\n"
            "Type it, measure a scale bar (K), or import a CSV for the whole folder."
        )
        self.scale.setMinimumWidth(120)
        self.measure_button = self._tool_button(actions.measure_scale, text="Measure")
        self.import_button = self._tool_button(actions.import_scales, text="CSV…")
        self.min_size = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=100_000.0, singleStep=0.5)
        self.min_size.setSpecialValueText("none")
        self.min_size.setKeyboardTracking(False)
        self.min_size.setToolTip("Leave out stones whose b-axis is shorter than this")
        self.min_size_unit = QComboBox()
        self.min_size_unit.addItem("mm", "mm")
        self.min_size_unit.addItem("px", "px")
        self.exclude_edge = QCheckBox("Leave out stones cut by the photo's edge")
        self.exclude_edge.setToolTip(
            "A stone touching the edge is probably cut, so its size is too small"
        )
        self.by_count = QRadioButton("by count")
        self.by_count.setToolTip("Each stone counts once (like a Wolman pebble count)")
        self.by_area = QRadioButton("by area")
        self.by_area.setToolTip("Each stone counts by its area (areal sampling, a photo sieve)")
        self.by_count.setChecked(True)
        self._weighting = QButtonGroup(self)
        self._weighting.addButton(self.by_count)
        self._weighting.addButton(self.by_area)
        self.separation = QSpinBox(minimum=1, maximum=1000)
        self.separation.setValue(GrainOptions().min_separation_px)
        self.separation.setSuffix(" px")
        self.separation.setToolTip(
            "Two stone centres closer than this are taken as one stone.\n"
            "Raise it when stones are cut in pieces, lower it when touching stones stay merged.\n"
            "Takes effect when you press Analyse."
        )

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(5)
        form.addRow("Scale", self._row(self.scale, self.measure_button, self.import_button))
        form.addRow("Min. b-axis", self._row(self.min_size, self.min_size_unit))
        form.addRow("", self.exclude_edge)
        form.addRow("Curve", self._row(self.by_count, self.by_area, stretch=True))
        form.addRow("Separation", self._row(self.separation, stretch=True))

        self.analyse_button = self._push_button(actions.analyse, primary=True)
        self.pool_button = self._push_button(actions.pool)
        run_row = QHBoxLayout()
        run_row.addWidget(self.analyse_button, 1)
        run_row.addWidget(self.pool_button, 1)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = self._tool_button(actions.cancel, text="Cancel")
        self.progress_row = QWidget()
        pr = QHBoxLayout(self.progress_row)
        pr.setContentsMargins(0, 0, 0, 0)
        pr.addWidget(self.progress, 1)
        pr.addWidget(self.cancel_button)
        self.progress_row.setVisible(False)

        tools_row = QHBoxLayout()
        tools_row.setSpacing(4)
        tools_row.addWidget(QLabel("Edit:"))
        for action in (actions.pick, actions.split, actions.merge):
            tools_row.addWidget(self._tool_button(action))
        tools_row.addStretch(1)

        self.status = QLabel("Open a photo, set its scale, then press Analyse (Ctrl+G).")
        self.status.setWordWrap(True)
        self.status.setObjectName("grain_status")

        # --- stones
        self.model = StoneTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        header.setSortIndicatorShown(False)  # its room would push the last columns out of view
        self.table.setStyleSheet(
            "QTableView::item { padding: 0 5px; } QHeaderView::section { padding: 2px 5px; }"
        )
        self.table.setToolTip("Choose stones here or on the photo (Ctrl+click adds one)")
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)

        self.details = QLabel()
        self.details.setObjectName("grain_details")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setFrameShape(QFrame.Shape.StyledPanel)
        self.details.setMargin(6)
        # as tall as a stone's measurements, from the start: choosing a stone must not
        # resize the panels (or, through them, the photo's zoom)
        self.details.setMinimumHeight(128)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.show_details(None)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.progress_row)
        layout.addLayout(tools_row)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        self.setMinimumWidth(340)

        self.scale.valueChanged.connect(self._on_scale_value_changed)
        self.min_size.valueChanged.connect(lambda _v: self.options_edited.emit())
        self.min_size_unit.currentIndexChanged.connect(lambda _i: self.options_edited.emit())
        self.exclude_edge.toggled.connect(lambda _c: self.options_edited.emit())
        self.by_count.toggled.connect(self._on_weighting_toggled)

    # ------------------------------------------------------------------ building
    @staticmethod
    def _row(*widgets: QWidget, stretch: bool = False) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for w in widgets:
            row.addWidget(w, 1 if isinstance(w, (QDoubleSpinBox, QSpinBox)) else 0)
        if stretch:
            row.addStretch(1)
        return box

    @staticmethod
    def _tool_button(action: QAction, text: str | None = None) -> QPushButton:
        """A compact button for an action, with its own (shorter) text."""
        return action_button(action, text=text)

    @staticmethod
    def _push_button(action: QAction, primary: bool = False) -> QPushButton:
        return action_button(action, primary=primary)

    # ------------------------------------------------------------------ settings
    def scale_value(self) -> float | None:
        value = self.scale.value()
        return value if value > 0 else None

    def set_scale(self, value: float | None) -> None:
        """Show a scale without announcing it as the user's edit."""
        with QSignalBlocker(self.scale):
            self.scale.setValue(0.0 if value is None else value)

    def weighting(self) -> str:
        return "count" if self.by_count.isChecked() else "area"

    def options(self) -> GrainOptions:
        minimum = self.min_size.value()
        in_mm = self.min_size_unit.currentData() == "mm"
        return GrainOptions(
            min_separation_px=self.separation.value(),
            exclude_edge=self.exclude_edge.isChecked(),
            min_size_px=0.0 if in_mm else minimum,
            min_size_mm=(minimum if minimum > 0 else None) if in_mm else None,
            weighting=self.weighting(),  # type: ignore[arg-type]
            percentiles=DEFAULT_PERCENTILES,
        )

    def _on_scale_value_changed(self, value: float) -> None:
        self.scale_edited.emit(value if value > 0 else None)

    def _on_weighting_toggled(self, _checked: bool) -> None:
        self.weighting_changed.emit(self.weighting())

    # ------------------------------------------------------------------ showing
    def set_status(self, text: str, warning: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e3a21a; font-weight: bold;" if warning else "")

    def show_stones(self, stones: Sequence[Stone]) -> None:
        with QSignalBlocker(self.table.selectionModel()):
            self.model.set_stones(stones)
        self.table.resizeColumnsToContents()

    def choose_stones(self, labels: Sequence[int]) -> None:
        """Select the rows of ``labels`` (without announcing it) and bring the first into view."""
        selection = QItemSelection()
        for label in labels:
            row = self.model.row_of(label)
            if row is None:
                continue
            left = self.proxy.mapFromSource(self.model.index(row, 0))
            right = self.proxy.mapFromSource(self.model.index(row, self.model.columnCount() - 1))
            selection.select(left, right)
        sm = self.table.selectionModel()
        with QSignalBlocker(sm):
            sm.select(
                selection,
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows,
            )
        self.table.viewport().update()
        if labels and self.model.row_of(labels[-1]) is not None:
            row = self.model.row_of(labels[-1])
            self.table.scrollTo(self.proxy.mapFromSource(self.model.index(row, 0)))

    def chosen_labels(self) -> tuple[int, ...]:
        rows = sorted(
            {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        )
        return tuple(self.model.stone(r).label for r in rows)

    def _on_table_selection_changed(self, *_args) -> None:  # noqa: ANN002
        self.stones_chosen.emit(self.chosen_labels())

    def show_details(self, stone: Stone | None, more: int = 0) -> None:
        if stone is None:
            self.details.setText(
                "<span style='color:#8a8f98'>Choose a stone in the table or on the photo "
                "(pick tool, G) to see its measurements.</span>"
            )
            return
        mm = stone.mm_per_px is not None

        def length(px: float, value_mm: float | None) -> str:
            return f"{fmt_size(value_mm)} mm" if mm else f"{fmt_size(px)} px"

        area = f"{fmt_size(stone.area_mm2)} mm²" if mm else f"{stone.area_px} px"
        b_axis = length(stone.b_axis_px, stone.b_axis_mm)
        if mm:
            b_axis += f" (ψ {fmt_psi(stone.b_axis_psi)})"
        cells = [
            ("b-axis", b_axis, "a-axis", length(stone.a_axis_px, stone.a_axis_mm)),
            ("area", area, "circularity", f"{stone.circularity:.2f}"),
            (
                "eq. diameter",
                length(stone.equivalent_diameter_px, stone.equivalent_diameter_mm),
                "perimeter",
                length(stone.perimeter_px, stone.perimeter_mm),
            ),
            (
                "pixels",
                f"{stone.area_px}",
                "centre",
                f"{stone.centroid_x:.0f}, {stone.centroid_y:.0f} px",
            ),
        ]
        status = "left out: " + stone.exclusion_reason if stone.excluded else "counted"
        if stone.touches_edge and not stone.excluded:
            status += ", touches the edge"
        key = "style='color:#9aa0aa;padding-right:6px'"
        val = "style='padding-right:14px'"
        body = "".join(
            f"<tr><td {key}>{k1}</td><td {val}>{v1}</td><td {key}>{k2}</td><td>{v2}</td></tr>"
            for k1, v1, k2, v2 in cells
        )
        extra = f" <span style='color:#9aa0aa'>(+{more} more chosen)</span>" if more else ""
        self.details.setText(
            f"<b>Stone {stone.label}</b> <span style='color:#9aa0aa'>· {status}</span>{extra}"
            f"<table cellspacing='0'>{body}</table>"
        )

    def show_progress(self, done: int, total: int, text: str) -> None:
        self.progress_row.setVisible(True)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(text)

    def hide_progress(self) -> None:
        self.progress_row.setVisible(False)


class DistributionPanel(QWidget):
    """The grain-size distribution of this photo or of the pooled folder, and its exports."""

    view_changed = Signal(str)  # "photo" | "pooled"

    def __init__(self, actions: GrainActions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("grain_distribution")
        self.setWindowTitle("Grain sizes")
        self.view_choice = QComboBox()
        self.view_choice.addItem("This photo", "photo")
        self.view_choice.setToolTip("The distribution of this photo, or pooled over the folder")
        self.view_choice.setEnabled(False)
        self.view_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setObjectName("grain_caption")
        self.percentiles = QLabel("")
        self.percentiles.setObjectName("grain_percentiles")
        self.percentiles.setTextFormat(Qt.TextFormat.RichText)
        self.percentiles.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = GrainPlot()
        self.plot.setMinimumHeight(150)
        self.export_csv_button = GrainPanel._push_button(actions.export_csv)
        self.export_png_button = GrainPanel._push_button(actions.export_png)

        side = QVBoxLayout()
        side.setSpacing(6)
        head = QHBoxLayout()
        head.addWidget(QLabel("Show"))
        head.addWidget(self.view_choice, 1)
        side.addLayout(head)
        side.addWidget(self.caption)
        side.addWidget(self.percentiles)
        side.addStretch(1)
        side.addWidget(self.export_csv_button)
        side.addWidget(self.export_png_button)
        side_box = QWidget()
        side_box.setLayout(side)
        side_box.setMinimumWidth(170)  # narrow windows: the panel shrinks, the plot stays
        side_box.setMaximumWidth(330)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(side_box)
        layout.addWidget(self.plot, 1)
        self.view_choice.currentIndexChanged.connect(
            lambda _i: self.view_changed.emit(self.view_choice.currentData())
        )

    def show_distribution(self, view: CurveView | None, empty: str = "") -> None:
        self.plot.show_view(view, empty)
        if view is None:
            self.caption.setText(empty)
            self.percentiles.setText("")
            return
        self.caption.setText(view.caption())
        rows = percentile_rows(view)
        cell = "style='padding:1px 7px;text-align:right'"
        head = "".join(f"<th {cell}>{name}</th>" for name, _, _ in rows)
        sizes = "".join(f"<td {cell}>{mm}</td>" for _, mm, _ in rows)
        psis = "".join(f"<td {cell}>{ps}</td>" for _, _, ps in rows)
        unit = view.unit
        table = (
            f"<table cellspacing='0'><tr><th></th>{head}</tr>"
            f"<tr><td style='color:#9aa0aa'>{unit}</td>{sizes}</tr>"
            + (f"<tr><td style='color:#9aa0aa'>ψ</td>{psis}</tr>" if unit == "mm" else "")
            + "</table>"
        )
        self.percentiles.setText(table)

    def percentiles_text(self) -> str:
        """The percentile table as plain text (for tests and the clipboard)."""
        view = self.plot.view
        if view is None:
            return ""
        return "  ".join(
            f"{name} {mm} {view.unit}" + (f" ({ps} ψ)" if view.unit == "mm" else "")
            for name, mm, ps in percentile_rows(view)
        )

    def set_pooled_choice(self, text: str | None) -> None:
        """Offer (or withdraw) the pooled distribution in the view choice."""
        with QSignalBlocker(self.view_choice):
            while self.view_choice.count() > 1:
                self.view_choice.removeItem(1)
            if text is not None:
                self.view_choice.addItem(text, "pooled")
        self.view_choice.setEnabled(self.view_choice.count() > 1)

    def set_view(self, which: str) -> None:
        index = self.view_choice.findData(which)
        if index >= 0 and index != self.view_choice.currentIndex():
            self.view_choice.setCurrentIndex(index)  # announces it

    def view(self) -> str:
        return self.view_choice.currentData()


__all__ = [
    "CurveView",
    "DistributionPanel",
    "GrainActions",
    "GrainPanel",
    "GrainPlot",
    "StoneTableModel",
    "fmt_psi",
    "fmt_size",
    "render_plot_png",
]
