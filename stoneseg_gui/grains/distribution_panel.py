"""The Grain sizes dock: the distribution of this photo or of the pooled folder (curve,
caption, percentiles with their intervals) and its exports. Widgets only; ``GrainSide``
gives it what to show."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .actions import GrainActions
from .panel import action_button
from .plot import MAIN_PERCENTILES, CurveView, GrainPlot, percentile_rows


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
        self.export_csv_button = action_button(actions.export_csv)
        self.export_png_button = action_button(actions.export_png)

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
            self.percentiles.setToolTip("")
            return
        self.caption.setText(view.caption())
        self.percentiles.setText(percentiles_html(view))
        self.percentiles.setToolTip(view.interval_note())

    def percentiles_text(self) -> str:
        """The percentiles with their intervals as plain text (for tests and the clipboard):
        "D50 12.3 mm (11.8–12.9), ψ 3.62 (3.56–3.69)  D84 ..."."""
        view = self.plot.view
        if view is None:
            return ""
        return "  ".join(
            f"{r.name} {r.size} {view.unit}"
            + (f" ({r.interval})" if r.interval else "")
            + (f", ψ {r.psi}" if view.unit == "mm" else "")
            + (f" ({r.interval_psi})" if r.interval_psi else "")
            for r in percentile_rows(view)
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


def percentiles_html(view: CurveView) -> str:
    """A narrow table, one row per D_p: its size, the interval beside it in grey ("D50 12.3
    (11.8–12.9) 3.62" under the heads "mm", "95 % CI", "ψ"), D16/D50/D84 in bold. Four short
    columns, so it fits the dock's narrowest side (the dock has no sideways scroll bar)."""
    grey = "color:#9aa0aa"
    cell = "style='padding:1px 6px 1px 0;text-align:right'"
    main = {f"D{p:g}" for p in MAIN_PERCENTILES}
    mm = view.unit == "mm"
    level = f"{100 * view.bootstrap.level:g}&nbsp;%&nbsp;CI"
    has_ci = any(r.interval for r in percentile_rows(view))
    head = (
        f"<tr><th></th><th {cell}><span style='{grey}'>{view.unit}</span></th>"
        + (f"<th {cell}><span style='{grey}'>{level}</span></th>" if has_ci else "")
        + (f"<th {cell}><span style='{grey}'>ψ</span></th>" if mm else "")
        + "</tr>"
    )
    rows = []
    for r in percentile_rows(view):
        bold = r.name in main
        name = f"<b>{r.name}</b>" if bold else r.name
        size = f"<b>{r.size}</b>" if r.name == "D50" else r.size
        ci = r.interval.replace("–", "\u2060–\u2060")  # never broken at the dash
        rows.append(
            f"<tr><td {cell}>{name}</td><td {cell}>{size}</td>"
            + (f"<td {cell}><span style='{grey}'>{ci}</span></td>" if has_ci else "")
            + (f"<td {cell}>{r.psi}</td>" if mm else "")
            + "</tr>"
        )
    return f"<table cellspacing='0'>{head}{''.join(rows)}</table>"


__all__ = ["DistributionPanel"]
