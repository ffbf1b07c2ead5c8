"""Benchmark: painting, panning and zooming a 6000x4000 photo (not collected by pytest).

Run: ``QT_QPA_PLATFORM=offscreen python tests/gui/bench_canvas.py [--size 6000x4000]``.
Prints milliseconds per operation, each including the repaint it causes (the event loop
is run after every step, as it would be for a real mouse). A frame budget of 16 ms means
60 frames per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2
import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_gui.editor.canvas import MaskCanvas
from stoneseg_gui.editor.loading import load_for_editing
from stoneseg_gui.editor.tool_settings import ToolSettings


def synthetic_photo(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(30, 230, size=(height // 16, width // 16, 3), dtype=np.uint8)
    photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(0, 25, size=(height, width, 1), dtype=np.uint8)
    return cv2.add(photo, np.repeat(noise, 3, axis=2))


def mouse(canvas: MaskCanvas, kind, pos: QPointF, button=Qt.MouseButton.LeftButton) -> None:
    buttons = Qt.MouseButton.NoButton if kind == QMouseEvent.Type.MouseButtonRelease else button
    event = QMouseEvent(
        kind,
        pos,
        canvas.viewport().mapToGlobal(pos),
        button,
        buttons,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(canvas.viewport(), event)


def timed(steps, app: QApplication) -> list[float]:
    times = []
    for step in steps:
        start = time.perf_counter()
        step()
        app.processEvents()  # the repaint the step asked for
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(name: str, times: list[float]) -> None:
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(
        f"{name:42s} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms   n={len(times)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="6000x4000")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    app = QApplication.instance() or QApplication([])

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jpg"
        cv2.imwrite(str(path), synthetic_photo(width, height), [cv2.IMWRITE_JPEG_QUALITY, 90])
        start = time.perf_counter()
        loaded = load_for_editing(path, Path(tmp) / "none.png")
        print(
            f"decode + pyramid of a {width}x{height} JPEG (worker thread): {time.perf_counter() - start:.2f} s"
        )

    settings = ToolSettings()
    canvas = MaskCanvas(settings)
    canvas.resize(1400, 900)
    canvas.show()
    doc = MaskDocument(shape=(height, width))
    canvas.show_image(loaded.display, doc)
    app.processEvents()

    for label, zoom in (("fitted", None), ("100 %", 1.0), ("400 %", 4.0)):
        if zoom is None:
            canvas.fit_to_window()
        else:
            canvas.set_zoom(zoom, QPointF(700, 450))
        app.processEvents()
        settings.set_brush_size(max(8, round(40 / canvas.zoom())))
        points = [QPointF(300 + 6 * i, 300 + 3 * i) for i in range(120)]
        steps = [lambda p=points[0]: mouse(canvas, QMouseEvent.Type.MouseButtonPress, p)]
        steps += [lambda p=p: mouse(canvas, QMouseEvent.Type.MouseMove, p) for p in points[1:]]
        steps += [lambda p=points[-1]: mouse(canvas, QMouseEvent.Type.MouseButtonRelease, p)]
        report(f"brush stroke segment, {label} ({settings.brush_size} px)", timed(steps, app))
        settings.set_outline_only(True)
        report("  same, outline view", timed(steps, app))
        settings.set_outline_only(False)

        def pan(dx: int) -> None:
            hbar = canvas.horizontalScrollBar()
            hbar.setValue(hbar.value() + dx)

        if zoom is not None:
            report(f"pan step of 12 px, {label}", timed([lambda: pan(12)] * 60, app))
    anchor = QPointF(700, 450)
    zoom_steps = [
        lambda f=f: canvas.set_zoom(canvas.zoom() * f, anchor) for f in [1.2] * 15 + [1 / 1.2] * 15
    ]
    report("wheel zoom step (1.2x)", timed(zoom_steps, app))
    start = time.perf_counter()
    doc.undo()
    app.processEvents()
    print(
        f"undo of the last stroke: {(time.perf_counter() - start) * 1000:.1f} ms; "
        f"history memory {doc.undo_nbytes / 1e6:.2f} MB for {doc.undo_steps} strokes "
        f"(a full copy would be {doc.mask.nbytes / 1e6:.0f} MB each)"
    )


if __name__ == "__main__":
    main()
