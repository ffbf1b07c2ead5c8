"""Live training curves: batch loss (smoothed), epoch train loss, epoch validation loss."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QVBoxLayout, QWidget

from stoneseg_core.training.events import BatchProgress, EpochSummary

pg.setConfigOptions(
    antialias=True, background="#202226", foreground="#d0d0d0"
)  # matches the dark theme

TRAIN_COLOR = "#4da3ff"
VAL_COLOR = "#ff6b5e"
EARLIER_COLORS = ("#9aa7b8", "#c7a6a6", "#a6c7a9", "#c2b59b")
# The grid as opaque lines (about the colour of pyqtgraph's 25 % lines on the dark
# background), two tick levels instead of three, drawn under the curves. Translucent
# lines are Qt's slow raster path: a batch point plus repaint took ~16 ms instead of ~7 ms
# on the GUI thread, once per training batch, so the window stuttered while a training
# ran (tests/benchmarks/bench_gui.py).
GRID_COLOR = "#3c3e43"


LEGEND_COLUMN_PX = 190  # one legend entry ("validation (epoch)" and its sample)
LEGEND_SAMPLE_PX = 60  # an entry's line sample and spacing beside its text


class LossPlot(QWidget):
    """pyqtgraph plot of the current run, with earlier runs shown faintly for comparison."""

    def __init__(self, smoothing: float = 0.9, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loss_plot")
        self.setWindowTitle("Curves")
        self._alpha = 1.0 - smoothing
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "epoch")
        self.plot.setLabel("left", "loss (Dice + BCE)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for name in ("bottom", "left"):
            axis = self.plot.getAxis(name)
            axis.enableAutoSIPrefix(False)  # never "epoch (x0.001)" with ticks 100..500
            axis.setTickPen(pg.mkPen(GRID_COLOR))
            axis.setStyle(tickAlpha=255, maxTickLevel=1)
            axis.setZValue(-200)  # below the ViewBox (-100): the grid under the curves
        # the legend sits above the curves, in one row, and lists only series with points
        self.legend = self.plot.addLegend(offset=(10, 1), colCount=3)
        self.plot.getPlotItem().layout.setRowFixedHeight(0, 24)
        self.batch_curve = self.plot.plot(
            [], [], pen=pg.mkPen(TRAIN_COLOR, width=1, alpha=120), name="train (batch, smoothed)"
        )
        self.train_curve = self.plot.plot(
            [],
            [],
            pen=pg.mkPen(TRAIN_COLOR, width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=TRAIN_COLOR,
            name="train (epoch)",
        )
        self.val_curve = self.plot.plot(
            [],
            [],
            pen=pg.mkPen(VAL_COLOR, width=2),
            symbol="s",
            symbolSize=6,
            symbolBrush=VAL_COLOR,
            name="validation (epoch)",
        )
        self._earlier: list[pg.PlotDataItem] = []
        self._earlier_xy: list[tuple[float, float]] = []  # their points, for the axes
        self._earlier_labels: list[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.clear_run()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_legend():
            self._fit_axes()

    def _fit_legend(self) -> bool:
        """As many legend columns as the width holds for its longest entry ("validation
        (epoch)" was cut to "validat" in one row of three in a narrow panel, an earlier run's
        "run-... val" likewise); rows get their head-room. True when the columns changed."""
        metrics = QFontMetrics(self.font())
        widest = max(
            (metrics.horizontalAdvance(label.text) for _, label in self.legend.items),
            default=0,
        )
        column = max(LEGEND_COLUMN_PX, widest + LEGEND_SAMPLE_PX)
        columns = max(1, min(3, (self.width() - 20) // column))
        if columns == self.legend.columnCount:
            return False
        self.legend.setColumnCount(columns)
        return True

    # ------------------------------------------------------------------ current run
    def clear_run(self) -> None:
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self._ema: float | None = None
        self._epoch_x: list[float] = []
        self._train_y: list[float] = []
        self._val_y: list[float] = []
        self._redraw()

    def fade_run(self, label: str) -> None:
        """Keep the current run's epoch curves, faintly, as an earlier run named ``label``
        (a new run starts beside them), then clear the current run."""
        history = [
            {"epoch": x, "train_loss": t, "val_loss": v}
            for x, t, v in zip(self._epoch_x, self._train_y, self._val_y)
        ]
        self.clear_run()
        self.show_earlier(label, history)

    def add_batch(self, p: BatchProgress) -> None:
        self._ema = (
            p.loss if self._ema is None else self._alpha * p.loss + (1 - self._alpha) * self._ema
        )
        self._batch_x.append(p.epoch - 1 + p.batch / p.batches)
        self._batch_y.append(self._ema)
        self.batch_curve.setData(self._batch_x, self._batch_y)
        self._fit_axes()

    def add_epoch(self, s: EpochSummary) -> None:
        self._epoch_x.append(float(s.epoch))
        self._train_y.append(s.train_loss)
        self._val_y.append(s.val_loss)
        self.train_curve.setData(self._epoch_x, self._train_y)
        self.val_curve.setData(self._epoch_x, self._val_y)
        self._fit_axes()

    def _redraw(self) -> None:
        self.batch_curve.setData(self._batch_x, self._batch_y)
        self.train_curve.setData(self._epoch_x, self._train_y)
        self.val_curve.setData(self._epoch_x, self._val_y)
        self._fit_axes()

    def _fit_axes(self) -> None:
        """Epochs from 0 to at least 1 (one batch must not stretch to -0.3..0.5); the
        legend names only the series that have points."""
        xs = self._batch_x + self._epoch_x + [x for x, _ in self._earlier_xy]
        self.plot.setXRange(0, max(1.0, max(xs, default=1.0)), padding=0.02)
        ys = self._batch_y + self._train_y + self._val_y + [y for _, y in self._earlier_xy]
        ys = [y for y in ys if y == y]  # no NaN
        if ys:
            # head-room at the top, where the legend is: it never covers a curve
            lo, hi = min(ys), max(ys)
            span = max(hi - lo, 1e-3)
            rows = math.ceil(len(self.legend.items) / max(1, self.legend.columnCount))
            self.plot.setYRange(lo - 0.05 * span, hi + 0.35 * max(1, rows) * span, padding=0)
        else:
            self.plot.enableAutoRange(axis="y")
        for curve, name in (
            (self.batch_curve, "train (batch, smoothed)"),
            (self.train_curve, "train (epoch)"),
            (self.val_curve, "validation (epoch)"),
        ):
            has = bool(curve.xData is not None and len(curve.xData))
            listed = any(sample.item is curve for sample, _ in self.legend.items)
            if has and not listed:
                self.legend.addItem(curve, name)
            elif not has and listed:
                self.legend.removeItem(curve)
        if self._fit_legend():  # its entries changed: its rows need other head-room
            self._fit_axes()

    # ------------------------------------------------------------------ earlier runs
    def show_earlier(self, label: str, history: list[dict]) -> None:
        """Draw an earlier run's epoch curves faintly (dashed validation)."""
        if not history:
            return
        color = EARLIER_COLORS[len(self._earlier) // 2 % len(EARLIER_COLORS)]
        x = [float(h["epoch"]) for h in history]
        train = self.plot.plot(
            x,
            [h["train_loss"] for h in history],
            pen=pg.mkPen(color, width=1.5),
            name=f"{label} train",
        )
        val = self.plot.plot(
            x,
            [h["val_loss"] for h in history],
            pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine),
            name=f"{label} val",
        )
        self._earlier += [train, val]
        self._earlier_labels.append(label)
        for h in history:
            for key in ("train_loss", "val_loss"):
                value = h.get(key)
                if isinstance(value, (int, float)):
                    self._earlier_xy.append((float(h["epoch"]), float(value)))
        self._fit_axes()

    def clear_earlier(self) -> None:
        for item in self._earlier:
            self.plot.removeItem(item)
            self.legend.removeItem(item)
        self._earlier.clear()
        self._earlier_xy.clear()
        self._earlier_labels.clear()
        self._fit_axes()

    # ------------------------------------------------------------------ for tests and export
    def earlier_labels(self) -> list[str]:
        """The earlier runs drawn faintly, in the order they were added."""
        return list(self._earlier_labels)

    def point_counts(self) -> dict[str, int]:
        return {"batch": len(self._batch_x), "train": len(self._train_y), "val": len(self._val_y)}
