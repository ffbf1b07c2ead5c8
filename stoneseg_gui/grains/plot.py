"""The grain-size distribution as a plot: a cumulative curve on a log2 axis with its percentiles
marked (D16, D50 and D84 with their bootstrap confidence intervals as horizontal bars), in
the window (dark) or rendered to a PNG for a report (light).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    Qt,
)
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.grains import DEFAULT_BOOTSTRAP, Bootstrap, GrainSizeCurve, psi

from .table import fmt_psi, fmt_size

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


# ------------------------------------------------------------------------------- the plot


@dataclass(frozen=True)
class CurveView:
    """What the plot shows: a cumulative curve, its percentiles (with their confidence
    intervals, ``intervals``, found by ``bootstrap``), and where it comes from."""

    curve: GrainSizeCurve
    title: str  # e.g. "a.png" or "Pooled: 12 photos"
    found: int  # stones found, including those left out
    options_text: str  # the options, in words, for exports
    marks: dict[float, float | None] = field(default_factory=dict)
    intervals: dict[float, tuple[float, float] | None] = field(default_factory=dict)
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP

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

    def interval_note(self) -> str:
        """How the intervals were found, in words ("" when there are none)."""
        if not any(self.intervals.values()):
            return ""
        b = self.bootstrap
        return (
            f"In brackets: the {100 * b.level:g} % confidence interval "
            f"(bootstrap over the stones, {b.resamples} resamples)."
        )


def _tick_label(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


TICK_LABEL_PX = 44  # room one tick label of the b-axis needs ("22.6", "1024"), in pixels


def log2_ticks(lo: float, hi: float, most: int = 12) -> list[float]:
    """Tick positions in log2 units: whole psi where that gives four or more, else halves or
    quarters; never more than ``most`` (what the axis' width holds without the labels running
    into each other, "1622.6325.3 64" in a narrow panel): then every 2nd, 3rd ... whole psi."""
    most = max(2, most)
    for step in (1.0, 0.5, 0.25):
        ticks = [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
        if len(ticks) >= 4:
            break
    while len(ticks) > most:
        step = 1.0 if step < 1 else step + 1.0
        ticks = [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
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

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if getattr(self, "_axes", None) is not None:
            self._set_axes(*self._axes)  # as many tick labels as the new width holds

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
                self._add_mark(p, d, view.intervals.get(p))

    def _set_axes(self, unit: str, lo: float, hi: float) -> None:
        item = self.plot_item
        fg = self.colors.foreground
        item.setLabel("bottom", f"b-axis ({unit}), log scale", color=fg)
        item.setLabel("top", "ψ = log₂(mm)" if unit == "mm" else "log₂(px)", color=fg)
        self._axes = (unit, lo, hi)
        width = item.getViewBox().width() or self.width()
        ticks = log2_ticks(lo, hi, int(width // TICK_LABEL_PX))
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

    def _add_mark(self, p: float, d: float, interval: tuple[float, float] | None = None) -> None:
        """A drop line and a dot; D16/D50/D84 labelled at the curve, with their confidence
        interval as a horizontal bar through the dot; D10/D90 labelled at the axis."""
        item = self.plot_item
        main = p in MAIN_PERCENTILES
        c = self.colors
        color = c.main_mark if main else c.side_mark
        x = math.log2(d)
        if main and interval is not None and interval[0] > 0 and interval[1] > 0:
            lo, hi = math.log2(interval[0]), math.log2(interval[1])
            bar = pg.ErrorBarItem(
                x=np.array([x]),
                y=np.array([p]),
                left=np.array([max(x - lo, 0.0)]),
                right=np.array([max(hi - x, 0.0)]),
                beam=4.0,  # the caps, in % finer
                pen=pg.mkPen(color, width=2.2),
            )
            item.addItem(bar)
            self._marks.append(bar)
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
        # right of the dot, or left of it near the right edge (where "D84" was cut to "D8")
        _unit, lo, hi = self._axes
        right_edge = x > lo + 0.8 * (hi - lo)
        ax = 1.08 if right_edge else -0.08
        text = pg.TextItem(
            f"D{p:g}",
            color=color,
            anchor=(ax, 0.0) if main else (ax, 1.0),
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

    def interval_bars(self) -> dict[str, tuple[float, float]]:
        """{"D50": (low, high)} of the interval bars drawn, in the plot's units (for tests)."""
        out = {}
        for m in self._marks:
            if isinstance(m, pg.ErrorBarItem):
                x, y = float(m.opts["x"][0]), float(m.opts["y"][0])
                out[f"D{y:g}"] = (
                    2.0 ** (x - float(m.opts["left"][0])),
                    2.0 ** (x + float(m.opts["right"][0])),
                )
        return out


class PercentileRow(NamedTuple):
    """One D_p as people read it: its name, size and psi, and its interval in both ("" when
    there is none, "–" for a missing value)."""

    name: str  # "D50"
    size: str  # "12.3"
    psi: str  # "3.62" ("–" without a scale)
    interval: str  # "11.8–12.9"
    interval_psi: str  # "3.56–3.69" ("" without a scale)


def percentile_rows(view: CurveView) -> list[PercentileRow]:
    rows = []
    mm = view.unit == "mm"
    for p, d in view.marks.items():
        ci = view.intervals.get(p)
        has = d is not None and d > 0
        rows.append(
            PercentileRow(
                f"D{p:g}",
                fmt_size(d),
                fmt_psi(psi(d)) if has and mm else "–",
                "" if ci is None else f"{fmt_size(ci[0])}–{fmt_size(ci[1])}",
                ""
                if ci is None or not mm or min(ci) <= 0
                else f"{fmt_psi(psi(ci[0]))}–{fmt_psi(psi(ci[1]))}",
            )
        )
    return rows


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
            f"<span style='font-size:9pt;color:#555'>{view.options_text}</span>"
            + (
                f"<br><span style='font-size:9pt;color:#555'>{view.interval_note()}</span>"
                if view.interval_note()
                else ""
            ),
            row=0,
            col=0,
            color=LIGHT.foreground,
        )
        unit = view.unit
        rows = "".join(
            f"<tr><td><b>{r.name}</b>&nbsp;</td><td align='right'>{r.size} {unit}</td>"
            + (
                f"<td align='right' style='color:#555'>&nbsp;({r.interval})</td>"
                if r.interval
                else "<td></td>"
            )
            + (f"<td align='right'>&nbsp;&nbsp;{r.psi} ψ</td>" if unit == "mm" else "")
            + "</tr>"
            for r in percentile_rows(view)
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
