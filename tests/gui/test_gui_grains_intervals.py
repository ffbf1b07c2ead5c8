"""The D16/D50/D84 confidence intervals in the window: the Grain sizes dock's table and the
plot's bars after Analyse, by count and by area.

The mask holds 48 separate discs of six radii, so the stones are split exactly and their
intervals are those of ``intervals_of`` on the stones the window measured.
"""

from __future__ import annotations

import numpy as np
import pytest
from guihelpers import make_project, wait_loaded
from PySide6.QtCore import Qt
from skimage.draw import disk

from stoneseg_core.grains import intervals_of
from stoneseg_gui.grains.table import fmt_size

SIZE = (400, 240)  # width, height
RADII = (3, 4, 5, 7, 9, 12)


def disc_mask() -> np.ndarray:
    """6 rows x 8 columns of discs, each row's radii running through RADII."""
    w, h = SIZE
    mask = np.zeros((h, w), np.uint8)
    for i in range(6):
        for j in range(8):
            rr, cc = disk((20 + 40 * i, 25 + 50 * j), RADII[(i + j) % 6], shape=mask.shape)
            mask[rr, cc] = 255
    return mask


def test_panel_and_plot_show_the_intervals_after_analyse(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj", names=("a.png",), size=SIZE, masks={"a": disc_mask()})
    window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    side = window.grain_side
    side.panel.scale.setValue(0.5)
    side.analysis = None
    qtbot.keyClick(window.canvas, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: side.analysis is not None, timeout=10_000)
    assert len(side.analysis.stones) == 48

    dist = side.distribution
    for by in ("count", "area"):
        (side.panel.by_count if by == "count" else side.panel.by_area).setChecked(True)
        view = side.curve_view()
        expected = intervals_of(side.analysis.stones, by, view.marks)
        assert view.intervals == expected
        text = dist.percentiles_text()
        html = dist.percentiles.text()
        assert "95&nbsp;%&nbsp;CI" in html
        assert "bootstrap over the stones" in dist.percentiles.toolTip()
        bars = dist.plot.interval_bars()
        assert set(bars) == {"D16", "D50", "D84"}
        for p in (16, 50, 84):
            low, high = expected[p]
            assert low <= view.marks[p] <= high and low < high
            # "D50 7.86 mm (7.20–8.75), ψ 2.97 (2.85–3.13)"
            assert f"D{p} {fmt_size(view.marks[p])} mm ({fmt_size(low)}–{fmt_size(high)})" in text
            assert f"{fmt_size(low)}\u2060–\u2060{fmt_size(high)}" in html  # not broken at the dash
            assert bars[f"D{p}"] == pytest.approx((low, high))
        if by == "count":
            by_count = expected
    assert by_count[50] != expected[50]  # by area: the big discs weigh more

    # the table fits the side of the dock: nothing is cut off, nothing to scroll to
    label = dist.percentiles
    assert label.width() >= label.sizeHint().width()
    assert label.sizeHint().width() <= label.parentWidget().maximumWidth()
    assert not window.dialogs.errors
