"""The Grains dock: scale and sampling settings, the table of stones.

Widgets only. The panel reads its settings from typed widgets into a ``GrainOptions``
and shows what it is given (stones, a stone's measurements); ``GrainSide`` does the work.
Its buttons are the side's actions (one source of truth for text, keys and enabled state).
The size distribution is ``distribution_panel.DistributionPanel``'s dock.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QSignalBlocker,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction
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

from stoneseg_core.grains import DEFAULT_PERCENTILES, GrainOptions, Stone

from .actions import GrainActions
from .table import StoneTableModel, fmt_psi, fmt_size

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
        self._build_scale_controls(actions)
        self._build_sampling_controls()
        form = self._settings_form()
        run_row = self._run_row(actions)
        self._build_progress_row(actions)
        tools_row = self._tools_row(actions)
        self.status = QLabel("Open a photo, set its scale, then press Analyse (Ctrl+G).")
        self.status.setWordWrap(True)
        self.status.setObjectName("grain_status")
        self._build_table()
        self._build_details()
        self._lay_out(form, run_row, tools_row)
        self._connect_settings()

    # ------------------------------------------------------------------ building
    def _build_scale_controls(self, actions: GrainActions) -> None:
        """The scale (mm/px), where it comes from, and its Measure and CSV buttons."""
        self.scale = ScaleSpinBox(decimals=6, minimum=0.0, maximum=10_000.0, singleStep=0.01)
        self.scale.setSpecialValueText("not set")
        self.scale.setSuffix(" mm/px")
        self.scale.setKeyboardTracking(False)
        self.scale.setToolTip(
            "Millimetres per pixel of this photo, saved with the project.\n"
            "Type it, measure a scale bar (K), or import a CSV for the whole folder."
        )
        self.scale.setMinimumWidth(120)
        self.scale_source = QLabel()  # "from the georeference (EPSG:...)", or why there is none
        self.scale_source.setObjectName("scale_source")
        self.scale_source.setWordWrap(True)
        self.scale_source.setVisible(False)
        self.measure_button = self._tool_button(actions.measure_scale, text="Measure")
        self.import_button = self._tool_button(actions.import_scales, text="CSV…")

    def _build_sampling_controls(self) -> None:
        """Which stones count and how: minimum size, edge stones, weighting, separation."""
        self.min_size = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=100_000.0, singleStep=0.5)
        self.min_size.setSpecialValueText("none")
        self.min_size.setKeyboardTracking(False)
        self.min_size.setToolTip("Leave out stones whose b-axis is shorter than this")
        self.min_size_unit = QComboBox()
        self.min_size_unit.addItem("mm", "mm")
        self.min_size_unit.addItem("px", "px")
        self.exclude_edge = QCheckBox("Leave out edge stones")
        self.exclude_edge.setToolTip(
            "Leave out the stones cut by the photo's edge: a stone touching the edge is "
            "probably cut, so its size is too small"
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

    def _settings_form(self) -> QFormLayout:
        """The scale and sampling controls, one labelled row each."""
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # a narrow column puts each label above its field rather than scrolling sideways
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(5)
        form.addRow("Scale", self._row(self.scale, self.measure_button, self.import_button))
        form.addRow("", self.scale_source)
        form.addRow("Min. b-axis", self._row(self.min_size, self.min_size_unit))
        form.addRow("", self.exclude_edge)
        form.addRow("Curve", self._row(self.by_count, self.by_area, stretch=True))
        form.addRow("Separation", self._row(self.separation, stretch=True))
        return form

    def _run_row(self, actions: GrainActions) -> QHBoxLayout:
        """Analyse this photo, pool the folder."""
        self.analyse_button = self._push_button(actions.analyse, primary=True)
        self.pool_button = self._push_button(actions.pool)
        run_row = QHBoxLayout()
        run_row.addWidget(self.analyse_button, 1)
        run_row.addWidget(self.pool_button, 1)
        return run_row

    def _build_progress_row(self, actions: GrainActions) -> None:
        """Pooling's progress bar and Cancel, hidden until pooling runs."""
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = self._tool_button(actions.cancel, text="Cancel")
        self.progress_row = QWidget()
        pr = QHBoxLayout(self.progress_row)
        pr.setContentsMargins(0, 0, 0, 0)
        pr.addWidget(self.progress, 1)
        pr.addWidget(self.cancel_button)
        self.progress_row.setVisible(False)

    def _tools_row(self, actions: GrainActions) -> QHBoxLayout:
        """The stone tools: pick, split, merge."""
        tools_row = QHBoxLayout()
        tools_row.setSpacing(4)
        tools_row.addWidget(QLabel("Edit:"))
        for action in (actions.pick, actions.split, actions.merge):
            tools_row.addWidget(self._tool_button(action))
        tools_row.addStretch(1)
        return tools_row

    def _build_table(self) -> None:
        """The table of stones, sortable, its selection reported as ``stones_chosen``."""
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
        # "left out" takes what is left, its reason shortened (whole in the tooltip): the
        # table never scrolls sideways in the panel's column
        header.setSectionResizeMode(
            StoneTableModel.HEADERS.index("left out"), QHeaderView.ResizeMode.Stretch
        )
        header.setMinimumSectionSize(24)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header.setHighlightSections(False)
        header.setSortIndicatorShown(False)  # its room would push the last columns out of view
        self.table.setStyleSheet(
            "QTableView::item { padding: 0 5px; } QHeaderView::section { padding: 2px 5px; }"
        )
        self.table.setToolTip("Choose stones here or on the photo (Ctrl+click adds one)")
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)

    def _build_details(self) -> None:
        """The chosen stone's measurements, in a box as tall as they need from the start."""
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

    def _lay_out(self, form: QFormLayout, run_row: QHBoxLayout, tools_row: QHBoxLayout) -> None:
        """Everything in one column, the table taking the spare height."""
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

    def _connect_settings(self) -> None:
        """The settings' edits, announced as the panel's signals."""
        self.scale.valueChanged.connect(self._on_scale_value_changed)
        self.min_size.valueChanged.connect(lambda _v: self.options_edited.emit())
        self.min_size_unit.currentIndexChanged.connect(lambda _i: self.options_edited.emit())
        self.exclude_edge.toggled.connect(lambda _c: self.options_edited.emit())
        self.by_count.toggled.connect(self._on_weighting_toggled)

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

    def set_scale(self, value: float | None, source: str = "") -> None:
        """Show a scale without announcing it as the user's edit; ``source`` says where it
        comes from when the user did not set it (the georeference)."""
        with QSignalBlocker(self.scale):
            self.scale.setValue(0.0 if value is None else value)
        self.scale_source.setText(source)
        self.scale_source.setVisible(bool(source))

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
        self.scale_source.setVisible(False)
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

    def _on_table_selection_changed(self, *_args) -> None:
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


__all__ = ["GrainPanel"]
