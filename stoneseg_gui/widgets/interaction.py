"""The contract of a canvas mode: what ``MaskCanvas.set_interaction`` calls; plain Python.

It lives here, among the shared pieces, so a side lends itself the canvas's left button
(the grain tools: draw a scale-bar line, pick or cut stones) without importing the
editor's canvas: ``editor/``, ``model/`` and ``grains/`` never import each other.
"""

from __future__ import annotations


class CanvasInteraction:
    """A mode that takes the left button instead of the painting tool; plain Python.

    The canvas calls it with image coordinates (x = column, y = row, in pixels); panning
    (middle button, Space + drag) and zooming keep working while it is set. ``cancel`` is
    Escape; ``reset`` is called when the interaction is replaced.
    """

    def press(self, x: float, y: float, ctrl: bool) -> None:
        """The left button went down (a double-click counts as a press)."""

    def move(self, x: float, y: float, dragging: bool) -> None:
        """The pointer moved; ``dragging`` while the left button is held."""

    def release(self, x: float, y: float) -> None:
        """The left button came up."""

    def cancel(self) -> None:
        """Escape: drop what is in progress (or leave the mode when nothing is)."""

    def reset(self) -> None:
        """The canvas no longer uses this interaction: drop what is in progress, quietly."""
