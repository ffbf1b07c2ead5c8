"""Plot labels stay readable in a narrow panel: the b-axis ticks never run into each other,
the percentile labels are not cut at the right edge, the training legend is not cut."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF

from stoneseg_core.grains import grain_size_distribution, percentiles
from stoneseg_core.scoring.pixels import Scores
from stoneseg_core.training.events import BatchProgress, EpochSummary
from stoneseg_gui.grains.plot import TICK_LABEL_PX, CurveView, GrainPlot, log2_ticks
from stoneseg_gui.model.loss_plot import LossPlot


def test_ticks_never_more_than_the_width_holds():
    assert log2_ticks(4.0, 6.2) == [4.0, 4.5, 5.0, 5.5, 6.0]  # a narrow range: halves
    assert log2_ticks(4.0, 6.2, most=3) == [4.0, 5.0, 6.0]  # too many: whole psi
    assert log2_ticks(0.0, 10.0, most=4) == [0.0, 3.0, 6.0, 9.0]  # then every 3rd
    for most in range(2, 12):
        assert len(log2_ticks(-1.3, 9.7, most)) <= most


def _label_rects(plot_item, texts) -> list[QRectF]:
    return [t.mapRectToScene(t.boundingRect()) for t in texts]


def test_a_narrow_grain_plot_keeps_its_labels_whole(qtbot):
    sizes = np.geomspace(14, 70, 200)
    curve = grain_size_distribution(sizes)
    marks = percentiles(sizes, ps=(10, 16, 50, 84, 90))
    view = CurveView(curve, "a.png", len(sizes), "", marks=marks)
    plot = GrainPlot()
    qtbot.addWidget(plot)
    plot.resize(260, 220)
    plot.show()
    qtbot.waitExposed(plot)
    plot.show_view(view)
    qtbot.wait(50)
    width = plot.plot_item.getViewBox().width()
    ticks = plot.plot_item.getAxis("bottom")._tickLevels[0]
    assert len(ticks) <= width // TICK_LABEL_PX
    # every percentile label lies inside the plot: none is cut at the right edge
    box = plot.plot_item.getViewBox().sceneBoundingRect()
    marks = [m for m in plot._marks if hasattr(m, "textItem")]
    assert sorted(t.textItem.toPlainText() for t in marks) == ["D10", "D16", "D50", "D84", "D90"]
    for rect in _label_rects(plot.plot_item, marks):
        assert rect.right() <= box.right() + 1 and rect.left() >= box.left() - 1


def test_a_narrow_loss_plot_shows_its_whole_legend(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 220)
    plot.show()
    qtbot.waitExposed(plot)
    plot.add_batch(BatchProgress(1, 3, 1, 10, 0.9, 1e-3, 1.0, 1.0))
    s = Scores(0.8, 0.6, 0.7, 0.7, 0.7)
    plot.add_epoch(EpochSummary(1, 3, 0.8, 0.85, s, (), 1, 0.6, True, 1.0, 1e-3))
    qtbot.wait(50)
    area = plot.plot.getPlotItem().sceneBoundingRect()
    labels = [label for _, label in plot.legend.items]
    assert [label.text for label in labels] == [
        "train (batch, smoothed)",
        "train (epoch)",
        "validation (epoch)",
    ]
    for label in labels:
        rect = label.mapRectToScene(label.boundingRect())
        assert rect.right() <= area.right() + 1, label.text

    # the next run: the first one's curves stay, faded, under its long name, still whole
    plot.resize(430, 220)
    plot.fade_run("run-20261207-022145")
    plot.add_batch(BatchProgress(1, 3, 1, 10, 0.7, 1e-3, 1.0, 1.0))
    plot.add_epoch(EpochSummary(1, 3, 0.6, 0.65, s, (), 1, 0.6, True, 1.0, 1e-3))
    qtbot.wait(50)
    area = plot.plot.getPlotItem().sceneBoundingRect()
    texts = [label.text for _, label in plot.legend.items]
    assert "run-20261207-022145 val" in texts and len(texts) == 5
    for _, label in plot.legend.items:
        rect = label.mapRectToScene(label.boundingRect())
        assert rect.right() <= area.right() + 1, label.text
