"""Grain-size curves as a picture file (PNG, SVG or PDF): ``stoneseg evaluate --plot``.

Cumulative % finer against the b-axis on a log axis, one panel per weighting, each curve's
D16, D50 and D84 marked. matplotlib is imported only here and only when a picture is drawn,
through its object API and the Agg canvas: no pyplot, no global backend, never Qt.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.distribution import GrainSizeCurve
from stoneseg_core.io.images import atomic_write_bytes

PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
PLOT_PERCENTILES = (16.0, 50.0, 84.0)

# (colour, line style, marker) per curve, in order: truth first, in black
_STYLES = (("#222222", "-", "o"), ("#d95f02", "--", "^"), ("#1b9e77", "-.", "s"))


def check_plot_path(path: str | Path) -> Path:
    """The picture's path if its extension is one we draw (.png, .svg, .pdf), else a StonesegError."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise StonesegError(
            f"Cannot draw {path.name}: the plot's file must end in .png, .svg or .pdf."
        )
    return path


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _draw_curves(
    ax, curves: Sequence[tuple[str, GrainSizeCurve]], percentiles: Sequence[float], unit: str
) -> tuple[float, float]:
    """Each curve as % finer against size, its percentiles marked and given in the legend's
    label; returns the smallest and largest size drawn (inf, 0 when none)."""
    lo, hi = np.inf, 0.0
    for k, (label, curve) in enumerate(curves):
        colour, ls, marker = _STYLES[k % len(_STYLES)]
        ds = [curve.percentile(p) for p in percentiles]
        if curve.sizes.size == 0:
            continue
        values = ", ".join(f"D{p:g} {_fmt(d)}" for p, d in zip(percentiles, ds))
        xs = np.concatenate([curve.sizes[:1], curve.sizes])  # from 0 % at the smallest
        ys = np.concatenate([[0.0], 100.0 * curve.fraction_finer])
        lo, hi = min(lo, float(xs[0])), max(hi, float(xs[-1]))
        ax.plot(
            xs,
            ys,
            color=colour,
            ls=ls,
            lw=1.8,
            label=f"{label} ({curve.n_stones} stones): {values} {unit}",
        )
        ax.plot(ds, percentiles, ls="none", marker=marker, ms=7, mfc="white", mec=colour, mew=1.6)
    return lo, hi


def _draw_percentile_lines(ax, percentiles: Sequence[float]) -> None:
    """A dotted line across the panel at each percentile, named right of the frame."""
    for p in percentiles:
        ax.axhline(p, color="#999999", lw=0.7, ls=":", zorder=0)
        ax.annotate(  # outside the frame, right of it: clear of curves and boxes
            f"D{p:g}",
            xy=(1.0, p),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=8,
            color="#666666",
            annotation_clip=False,
        )


def _log_size_axis(ax, lo: float, hi: float) -> None:
    """The size axis on a log scale from ``lo`` to ``hi``, ticked at 1, 2 and 5 a decade."""
    # loaded with matplotlib.figure already (plot_grain_size_curves checks it is installed)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.set_xlim(lo / 1.25, hi * 1.25)  # a little room; a decade at least
    if hi / lo < 10:
        mid = (lo * hi) ** 0.5
        ax.set_xlim(mid / 10**0.5, mid * 10**0.5)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _draw_panel(
    ax, heading: str, curves: Sequence[tuple[str, GrainSizeCurve]], percentiles: Sequence[float]
) -> None:
    """One panel: its curves, the percentile lines, the axes, or "no stones"."""
    unit = next((c.unit for _, c in curves if c.sizes.size), "px")
    lo, hi = _draw_curves(ax, curves, percentiles, unit)
    _draw_percentile_lines(ax, percentiles)
    if hi > 0:
        _log_size_axis(ax, lo, hi)
        # cumulative curves leave the upper left empty; "best" moves it if they do not
        ax.legend(loc="best", fontsize=7.5, framealpha=0.9, edgecolor="#cccccc")
    else:
        ax.text(0.5, 0.5, "no stones", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 101)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel(f"b-axis ({unit}, log scale)")
    ax.set_title(heading, fontsize=10)
    ax.grid(True, which="major", axis="x", color="#dddddd", lw=0.6)


def plot_grain_size_curves(
    path: str | Path,
    panels: Sequence[tuple[str, Sequence[tuple[str, GrainSizeCurve]]]],
    title: str,
    percentiles: Sequence[float] = PLOT_PERCENTILES,
) -> Path:
    """Draw ``panels`` side by side into ``path`` (format from its extension) and return it.

    Each panel is (heading, [(label, curve), ...]): the curves (all in one unit) as % finer
    against size on a log axis, each curve's D16/D50/D84 marked on it and given in the
    legend. The first curve of a panel is the reference (drawn in black).
    """
    path = check_plot_path(path)
    try:  # 0.3 s and an optional-looking dependency: only when a plot is asked for
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise StonesegError(
            "Drawing the grain-size curves needs matplotlib: pip install matplotlib"
        ) from exc
    if not panels:
        raise StonesegError("Nothing to draw: no grain-size curve.")

    fig = Figure(figsize=(5.2 * len(panels), 4.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (heading, curves) in zip(axes, panels):
        _draw_panel(ax, heading, curves, percentiles)
    axes[0].set_ylabel("% finer")
    fig.suptitle(title, fontsize=10.5)
    buf = io.BytesIO()
    fig.savefig(buf, format=PLOT_FORMATS[path.suffix.lower()])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())  # never half a picture under the name
    return path


__all__ = ["PLOT_FORMATS", "check_plot_path", "plot_grain_size_curves"]
