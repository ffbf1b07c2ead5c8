"""Responsiveness of the desktop app, offscreen, with the real MainWindow and its widgets.

Three figures, all measured in one process on one window:

1. Brush: a 6000x4000 photo (stones-dev/5.jpg upscaled with cv2, or a synthetic one when
   the data is missing) is opened; real ``QMouseEvent``s (press, many moves along a wavy
   path, release) are sent to the canvas's viewport, as a drag would; each move is timed
   together with the repaint it causes (the event loop is run after every move, and the
   viewport's paint events are counted to show the painting happened). Done in the fitted
   view (how a photo opens, brush 40 screen pixels) and at 100 %.
2. Switching photo: the "next/previous photo" actions are triggered, as the arrow keys
   do, back and forth between a 12-megapixel JPEG (4240x2832) and its neighbours (the
   24 MP photo and a small one); the time runs until the window's ``image_changed``
   signal says the photo is on the canvas and the canvas has painted it.
3. Stalls of the event loop while a training runs: a QTimer fires every 5 ms on the main
   thread and the gaps between its ticks are recorded, first with nothing running
   (baseline), then while a real tiny training, started with the Train button, runs on a
   worker thread (the 24 MP photo stays shown), then with nothing running again. A
   stall is how much later than its period a tick came (gap - 5 ms). It is the first
   training of the process, as a user's first Train click is: the time until the first
   batch (photos prepared) is also reported apart from the batches that follow (the
   curves repaint after each batch). As ``stoneseg_gui.app.main()`` does, PyTorch gets
   one core less than the machine has, and the model libraries are imported in the
   background as the window opens (here: waited for before measuring).

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_gui.py [--moves 100]
        [--strokes 3] [--cycles 3] [--probe-seconds 6] [--train-epochs 4]

Settings and user folders go to a temporary folder, never the user's. The last line is
one JSON object with the figures and a "targets" dict.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from _common import (
    DEFAULT_DATA,
    add_common_args,
    emit,
    load_average,
    machine,
    median,
    r3,
    setup,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gui"))
from bench_canvas import mouse, synthetic_photo
from guihelpers import FakeDialogs, write_photo
from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QEventLoop,
    QObject,
    QPointF,
    QSettings,
    Qt,
    QTimer,
)
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from test_gui_training import tiny_settings

log = logging.getLogger("bench_gui")

LARGE = (6000, 4000)  # width, height: the brush photo
MEDIUM = (4240, 2832)  # the 12-megapixel photo to switch to
TRAIN_STEMS = ("12", "13", "15", "i3", "i6", "4")  # small labelled stones-dev photos
PERIOD_MS = 5
TARGETS = {"move_median_ms": 8.0, "move_p95_ms": 16.0, "switch_ms": 300.0, "stall_ms": 50.0}


# ---------------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def spin(ms: int) -> None:
    """Run the event loop for ``ms`` milliseconds (blocking on events, not busy)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        spin(10)


def wait_signal(signal, timeout_s: float, accept: Callable[..., bool] = lambda *a: True) -> bool:
    """Run the event loop until ``signal`` fires with arguments ``accept`` likes."""
    loop = QEventLoop()
    hit: list[bool] = []

    def on(*args) -> None:
        if accept(*args):
            hit.append(True)
            loop.quit()

    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    signal.connect(on)
    timer.start(int(timeout_s * 1000))
    loop.exec()
    timer.stop()
    signal.disconnect(on)
    return bool(hit)


def idle(timeout_s: float = 120.0) -> None:
    """Wait until no background worker (thumbnails, photo loading, recovery copy) runs."""
    from stoneseg_gui.workers import running_workers

    wait_until(lambda: not running_workers(), timeout_s, "background workers")
    spin(50)


class PaintCounter(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


class TickProbe:
    """A 5 ms QTimer on the main thread; the gaps between its ticks are the loop's latency."""

    def __init__(self, period_ms: int = PERIOD_MS) -> None:
        self.period_ms = period_ms
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = []
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return [(b - a) * 1000 for a, b in zip(self.ticks, self.ticks[1:])]


def gap_figures(gaps: list[float], period_ms: int = PERIOD_MS) -> dict:
    late = [max(0.0, g - period_ms) for g in gaps]
    return {
        "gaps": len(gaps),
        "seconds": r3(sum(gaps) / 1000),
        "gap_median_ms": r3(median(gaps)),
        "gap_p99_ms": r3(percentile(gaps, 99)),
        "gap_max_ms": r3(max(gaps, default=float("nan"))),
        "stall_p99_ms": r3(percentile(late, 99)),
        "stall_max_ms": r3(max(late, default=float("nan"))),
        "stalls_over_50ms": sum(s > 50 for s in late),
    }


# ------------------------------------------------------------------------------- data


def data_root(arg: str | None) -> Path | None:
    path = Path(arg or os.environ.get("STONESEG_BENCH_DATA") or DEFAULT_DATA)
    return path if (path / "images").is_dir() and (path / "masks").is_dir() else None


def fill_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Upscale (cubic) to cover width x height, then crop the centre."""
    scale = max(width / image.shape[1], height / image.shape[0])
    big = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_CUBIC,
    )
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y0 : y0 + height, x0 : x0 + width]


def make_project(root: Path, data: Path | None) -> dict:
    """images/: a_24mp.jpg, b_12mp.jpg (unlabelled), t_*.jpg (small, with masks/)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    source = cv2.imread(str(data / "images" / "5.jpg")) if data else None
    if source is None:
        source = synthetic_photo(*LARGE)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 92]
    large, medium = images / "a_24mp.jpg", images / "b_12mp.jpg"
    assert cv2.imwrite(str(large), fill_to(source, *LARGE), jpeg)
    assert cv2.imwrite(str(medium), fill_to(source, *MEDIUM), jpeg)
    train = []
    for i, stem in enumerate(TRAIN_STEMS):
        photo, mask = images / f"t_{stem}.jpg", masks / f"t_{stem}.png"
        if data and (data / "images" / f"{stem}.jpg").is_file():
            shutil.copyfile(data / "images" / f"{stem}.jpg", photo)
            shutil.copyfile(data / "masks" / f"{stem}.png", mask)
        else:
            rgb = write_photo(photo, 400, 300, seed=i)
            cv2.imwrite(str(mask), np.where(rgb.mean(axis=2) > 128, 255, 0).astype(np.uint8))
        train.append(photo)
    return {"large": large, "medium": medium, "train": train}


# --------------------------------------------------------------------------- 1. brush


def wavy_path(canvas, n: int, stroke: int, step_px: float = 5.0) -> list[QPointF]:
    """``n + 1`` viewport points ``step_px`` apart, a sine across the visible photo."""
    vp = canvas.viewport().rect()
    d = canvas.display_image
    tl = canvas.image_to_viewport(0, 0)
    br = canvas.image_to_viewport(d.width, d.height)
    left, right = max(tl.x(), vp.left()) + 20, min(br.x(), vp.right()) - 20
    top, bottom = max(tl.y(), vp.top()) + 20, min(br.y(), vp.bottom()) - 20
    y_mid = top + (bottom - top) * (0.3 + 0.2 * stroke) % (bottom - top)
    amp = min(40.0, (bottom - top) / 8)
    points, x, direction = [], left, 1.0
    for _ in range(n + 1):
        points.append(QPointF(x, y_mid + amp * math.sin(x / 25.0)))
        x += direction * step_px
        if not left <= x <= right:
            direction = -direction
            x += 2 * direction * step_px
    return points


def brush_moves(app: QApplication, window, moves: int, strokes: int, label: str) -> dict:
    canvas, settings = window.canvas, window.tool_settings
    settings.set_brush_size(max(8, round(40 / canvas.zoom())))
    app.processEvents()
    viewport = canvas.viewport()
    counter = PaintCounter()
    viewport.installEventFilter(counter)
    times, releases, paints = [], [], 0
    try:
        for s in range(strokes):
            path = wavy_path(canvas, moves, s)
            mouse(canvas, QMouseEvent.Type.MouseMove, path[0], Qt.MouseButton.NoButton)
            mouse(canvas, QMouseEvent.Type.MouseButtonPress, path[0])
            app.processEvents()
            counter.paints = 0
            for p in path[1:]:
                t = time.perf_counter()
                mouse(canvas, QMouseEvent.Type.MouseMove, p)
                app.processEvents()  # the repaint the move asked for
                times.append((time.perf_counter() - t) * 1000)
            paints += counter.paints
            t = time.perf_counter()
            mouse(canvas, QMouseEvent.Type.MouseButtonRelease, path[-1])
            app.processEvents()
            releases.append((time.perf_counter() - t) * 1000)
    finally:
        viewport.removeEventFilter(counter)
    out = {
        "view": label,
        "zoom": r3(canvas.zoom()),
        "brush_px": settings.brush_size,
        "viewport": [viewport.width(), viewport.height()],
        "moves": len(times),
        "paints_per_move": r3(paints / max(1, len(times))),
        "median_ms": r3(median(times)),
        "p95_ms": r3(percentile(times, 95)),
        "max_ms": r3(max(times)),
        "release_median_ms": r3(median(releases)),
    }
    log.info("brush %s: %s", label, out)
    return out


def bench_brush(app: QApplication, window, large: Path, moves: int, strokes: int) -> dict:
    window.open_image(large)
    wait_until(lambda: window.canvas.document is not None, 60, "the 24 MP photo")
    idle()
    canvas = window.canvas
    result = {"photo": list(LARGE)}
    result["fitted"] = brush_moves(app, window, moves, strokes, "fitted")
    centre = QPointF(canvas.viewport().width() / 2, canvas.viewport().height() / 2)
    canvas.set_zoom(1.0, centre)
    app.processEvents()
    result["actual_size"] = brush_moves(app, window, moves, strokes, "100 %")
    # leave the photo as it was on disk (no 24 MP mask to save, not labelled for training)
    doc = window.current_document()
    while doc.can_undo:
        window.session.undo()
    assert not doc.dirty
    canvas.fit_to_window()
    idle()
    return result


# ------------------------------------------------------------------------ 2. switching


def bench_switch(app: QApplication, window, photos: dict, cycles: int) -> dict:
    """Cycle a_24mp -> b_12mp -> t_first -> b_12mp -> a_24mp with the next/previous actions."""
    actions = window.ui_actions
    large, medium = photos["large"], photos["medium"]
    order = window.session.images()
    assert order[:2] == [large, medium], order
    first = order[2]  # the photo after the 12 MP one in the list
    canvas = window.canvas
    window.open_image(large)
    wait_until(lambda: canvas.document is not None, 60, "the 24 MP photo")
    idle()
    into_medium: list[float] = []
    other: dict[str, list[float]] = {"to_24mp": [], "to_small": []}
    plan = [
        (actions.next_image, medium),
        (actions.next_image, first),
        (actions.previous_image, medium),
        (actions.previous_image, large),
    ]
    for _ in range(cycles):
        for action, target in plan:
            t = time.perf_counter()
            action.trigger()  # what the arrow key / toolbar button does
            ok = wait_signal(window.image_changed, 30, lambda p, target=target: p == target)
            if not ok or canvas.display_image is None:
                raise RuntimeError(f"{target.name} was not shown")
            canvas.viewport().repaint()  # the first paint of the new photo
            ms = (time.perf_counter() - t) * 1000
            if target == medium:
                into_medium.append(ms)
            else:
                other["to_24mp" if target == large else "to_small"].append(ms)
            log.info("switch to %s: %.0f ms", target.name, ms)
            idle()  # a real user looks at the photo a moment; nothing else runs meanwhile
    return {
        "photo": list(MEDIUM),
        "switches": len(into_medium),
        "median_ms": r3(median(into_medium)),
        "max_ms": r3(max(into_medium)),
        "all_ms": [r3(x) for x in into_medium],
        "to_24mp_median_ms": r3(median(other["to_24mp"])),
        "to_small_median_ms": r3(median(other["to_small"])),
    }


# ------------------------------------------------------------------------ 3. stalls


def probe_for(seconds: float) -> list[float]:
    probe = TickProbe()
    probe.start()
    spin(int(seconds * 1000))
    return probe.stop()


def bench_training_stalls(window, large: Path, args) -> dict:
    side = window.model_side
    controller = side.controller
    window.open_image(large)
    wait_until(lambda: window.canvas.document is not None, 60, "the 24 MP photo")
    idle()
    tiny_settings(window, epochs=args.train_epochs)
    panel = side.panel
    panel.device.setCurrentIndex(max(0, panel.device.findData(args.device)))

    first_batch: list[float] = []  # when the progress bar first moved
    panel.progress.valueChanged.connect(
        lambda v: first_batch.append(time.perf_counter()) if v > 0 and not first_batch else None
    )
    before = probe_for(args.probe_seconds)
    probe = TickProbe()
    probe.start()
    t = time.perf_counter()
    panel.train_button.click()  # the Train button, as the user clicks it
    if not controller.is_training:
        probe.stop()
        raise RuntimeError(f"training did not start: {window.dialogs.errors}")
    finished = wait_signal(controller.training_finished, args.train_timeout)
    wait_until(lambda: not controller.is_training, 60, "the training thread")
    train_s = time.perf_counter() - t
    during = probe.stop()
    ends = probe.ticks[1:]
    split = first_batch[0] if first_batch else float("inf")
    preparing = [g for e, g in zip(ends, during) if e <= split]
    batches = [g for e, g in zip(ends, during) if e > split]
    after = probe_for(args.probe_seconds)
    if not finished:
        controller.stop_training()
        controller.wait_for_training(60_000)
    counts = side.plot.point_counts()
    base = gap_figures(before + after)
    train = gap_figures(during)
    return {
        "config": {
            "epochs": panel.epochs.value(),
            "crop": panel.crop.value(),
            "work_size": panel.work_size.value(),
            "batch_size": panel.batch_size.value(),
            "device": panel.device.currentData(),
            "encoder": panel.encoder.currentText(),
        },
        "training_s": r3(train_s),
        "finished": finished,
        "batches": counts.get("batch"),
        "errors": [e[0] for e in window.dialogs.errors],
        "period_ms": PERIOD_MS,
        "baseline": base,
        "baseline_before": gap_figures(before),
        "baseline_after": gap_figures(after),
        "training": train,
        "training_until_first_batch": gap_figures(preparing),
        "training_from_first_batch": gap_figures(batches),
        "first_batch_after_s": r3(split - t) if first_batch else None,
        "ratio_training_vs_baseline": {
            "gap_p99": r3(train["gap_p99_ms"] / base["gap_p99_ms"]),
            "gap_max": r3(train["gap_max_ms"] / base["gap_max_ms"]),
        },
    }


# ------------------------------------------------------------------------------- main


def isolate_user_folders(tmp: Path) -> None:
    """Like tests/gui/conftest.py: QSettings and the user's data folder in ``tmp``."""
    os.environ["STONESEG_DATA_DIR"] = str(tmp / "user-data")
    os.environ["XDG_DATA_HOME"] = str(tmp / "xdg-data")
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    QCoreApplication.setOrganizationName("StoneSeg")
    QCoreApplication.setApplicationName("StoneSeg")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--moves", type=int, default=100, help="mouse moves per stroke")
    ap.add_argument("--strokes", type=int, default=3, help="strokes per view (fitted, 100 %%)")
    ap.add_argument("--cycles", type=int, default=3, help="switch cycles (2 into 12 MP each)")
    ap.add_argument("--probe-seconds", type=float, default=6.0, help="each baseline window")
    ap.add_argument("--train-epochs", type=int, default=4)
    ap.add_argument("--train-timeout", type=float, default=300.0)
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    setup(args)
    load_before = load_average()
    data = data_root(args.data)

    from stoneseg_gui.main_window import MainWindow
    from stoneseg_gui.workers import stop_all_workers

    tmp = Path(tempfile.mkdtemp(prefix="stoneseg-bench-gui-"))
    try:
        isolate_user_folders(tmp)
        app = QApplication.instance() or QApplication(sys.argv[:1])
        photos = make_project(tmp / "proj", data)
        log.info("project in %s (%s data)", tmp / "proj", "stones-dev" if data else "synthetic")
        from stoneseg_gui.app import preload_model_libraries, share_cores_with_window

        threads = share_cores_with_window()  # as stoneseg_gui.app.main() does
        window = MainWindow(dialogs=FakeDialogs())
        window.resize(1360, 860)
        window.show()
        app.processEvents()
        preload_model_libraries().join()  # main() starts it as the window opens
        window.open_folder(tmp / "proj")
        idle()  # thumbnails and the first photo
        result: dict = {
            "benchmark": "gui",
            "data": "stones-dev" if data else "synthetic",
            "qpa": QApplication.platformName(),
            "machine": machine(),
            "torch_threads_while_the_window_runs": threads,
        }
        result["brush"] = bench_brush(app, window, photos["large"], args.moves, args.strokes)
        result["switch"] = bench_switch(app, window, photos, args.cycles)
        if not args.skip_training:
            result["training_stalls"] = bench_training_stalls(window, photos["large"], args)
        window.close()
        stop_all_workers(60_000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    b, s = result["brush"], result["switch"]
    targets = {}
    for view in ("fitted", "actual_size"):
        targets[f"brush_{view}_median_le_8ms"] = b[view]["median_ms"] <= TARGETS["move_median_ms"]
        targets[f"brush_{view}_p95_le_16ms"] = b[view]["p95_ms"] <= TARGETS["move_p95_ms"]
    targets["switch_12mp_median_le_300ms"] = s["median_ms"] <= TARGETS["switch_ms"]
    if "training_stalls" in result:
        t = result["training_stalls"]
        targets["training_finished"] = t["finished"] and not t["errors"]
        targets["stall_during_training_le_50ms"] = (
            t["training"]["stall_max_ms"] <= TARGETS["stall_ms"]
        )
    result["targets"] = targets
    result["load_average_before_after"] = [load_before, load_average()]
    emit(result)


if __name__ == "__main__":
    main()
