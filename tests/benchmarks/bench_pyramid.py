"""A 20000 x 20000 orthomosaic in the window: open, first screen, pan, zoom, paint, peak memory.

The orthomosaic is a tiled (256 px), deflate-compressed GeoTIFF made of the real photos of
``shared/data/conveyor-sample/images`` (250 px each, laid on a grid), written once to
``/tmp/stoneseg-bench-pyramid`` (never into the repository), in two versions: without
overview levels (the pyramid is decimated from windows of the full image) and with
overviews in SubIFDs (1/2 .. 1/32, as GDAL's ``gdaladdo`` would add). Each case runs in a
fresh subprocess so that its peak memory (VmHWM) is its own:

- ``tiled``: StoneSeg's window (MainWindow, offscreen) opens the project: time until the
  mask is ready (the header read), until the quick preview is shown (files without
  overviews), until the coarse levels are built or loaded from the cache (files without
  overviews: run twice, with the cache in ``/tmp/stoneseg-bench-pyramid/pyramid-cache``
  empty -- the first opening -- then filled -- the second), the longest the event loop
  waited meanwhile, until every tile of the first screen is drawn,
  frame times (one synchronous repaint) while zooming from the fitted view to 100 % in
  12 wheel steps and while panning 80 steps of 60 px at 100 %, the time until the screen is
  complete after each, one brush stroke's mouse moves (with their repaint) at 100 % and at
  the fitted view, saving the painted mask (a full-size PNG) in the background as Ctrl+S
  does (the time the window's thread is held, the time until the file is written, the
  longest event-loop wait meanwhile) and, as the baseline, on the window's thread as
  before (``save_current()``), and VmHWM;
- ``whole`` (the baseline: how the window showed every photo before): ``read_image`` of the
  whole file + the halved-copies pyramid, then the same first screen; time and VmHWM;
- ``predict`` (``--predict MODEL_DIR``, or ``--predict tiny``: a tiny U-Net trained here on
  synthetic scenes): Ctrl+P on the photo without overviews (over 50 MP: window by window
  on the worker), the time until the prediction is shown, the longest event-loop wait
  meanwhile, the time the window's thread is held by accepting it, undoing that, redoing and undoing again,
  and VmHWM.

    python tests/benchmarks/bench_pyramid.py [--size 20000] [--skip-whole] [--predict tiny]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "gui"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
SAMPLES = REPO.parent / "shared" / "data" / "conveyor-sample" / "images"
WORK = Path("/tmp/stoneseg-bench-pyramid")
SHEET = 2048  # the mosaic repeats a 2048-px sheet of photos (divisible by every overview step)
OVERVIEWS = 5  # 1/2 .. 1/32


def _sheet() -> np.ndarray:
    photos = sorted(SAMPLES.glob("*.png")) + sorted(SAMPLES.glob("*.jpg"))
    if not photos:
        sys.exit(f"No photos in {SAMPLES}")
    rgbs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in photos]
    rng = np.random.default_rng(0)
    cell = rgbs[0].shape[0]
    n = -(-SHEET // cell)
    rows = []
    for _ in range(n):
        row = []
        for _ in range(n):
            img = cv2.resize(rgbs[int(rng.integers(len(rgbs)))], (cell, cell))
            row.append(np.rot90(img, int(rng.integers(4))))
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:SHEET, :SHEET])


def _tiles(sheet: np.ndarray, width: int, height: int):
    for r in range(0, height, 256):
        for c in range(0, width, 256):
            block = np.zeros((256, 256, 3), np.uint8)
            part = np.take(
                np.take(sheet, np.arange(r, min(height, r + 256)) % sheet.shape[0], axis=0),
                np.arange(c, min(width, c + 256)) % sheet.shape[1],
                axis=1,
            )
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def make_orthomosaic(size: int, overviews: bool) -> Path:
    import tifffile

    from stoneseg_core.io import geo

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"ortho{size}{'_ovr' if overviews else ''}.tif"
    if path.is_file():
        return path
    sheet = _sheet()
    georef = geo.make_georeference((0.003, 0, 500000, 0, -0.003, 5500000), 32633)
    extratags = [
        (code, "H" if code == geo.GEO_KEY_DIRECTORY else "d", len(v), tuple(v), True)
        for code, v in georef.tags
    ]
    common = dict(
        tile=(256, 256), photometric="rgb", compression="zlib", compressionargs={"level": 1}
    )
    t = time.perf_counter()
    tmp = path.with_suffix(".part")
    with tifffile.TiffWriter(tmp, bigtiff=True) as w:
        w.write(
            _tiles(sheet, size, size),
            shape=(size, size, 3),
            dtype=np.uint8,
            extratags=extratags,
            metadata=None,
            subifds=OVERVIEWS if overviews else 0,
            **common,
        )
        for k in range(1, OVERVIEWS + 1 if overviews else 1):
            f = 1 << k
            small = cv2.resize(sheet, (SHEET // f, SHEET // f), interpolation=cv2.INTER_AREA)
            s = -(-size // f)
            w.write(_tiles(small, s, s), shape=(s, s, 3), dtype=np.uint8, subfiletype=1, **common)
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
    return path


# ------------------------------------------------------------------------ measuring
def _project(photo: Path, name: str) -> Path:
    root = WORK / f"project-{name}"
    images = root / "images"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    images.mkdir(parents=True)
    (images / photo.name).symlink_to(photo)
    return root


def _pct(values, q):
    return round(float(np.percentile(values, q)), 2) if values else None


def measure_tiled(photo: Path) -> dict:
    from _common import peak_rss_mb
    from bench_canvas import mouse
    from guihelpers import FakeDialogs
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from stoneseg_core.display import coarse
    from stoneseg_gui.main_window import MainWindow

    coarse.COARSE_CACHE_DIR = WORK / "pyramid-cache"  # main() empties it for a first opening
    window = MainWindow(dialogs=FakeDialogs())
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    canvas = window.canvas
    rss_before = peak_rss_mb()[1]
    gaps = EventLoopGaps()

    def settle(timeout: float = 300.0) -> float:
        """Run the event loop until every tile on screen is drawn (the canvas's own timer
        collects them); a last synchronous repaint checks that none is missing."""
        t = time.perf_counter()
        while True:
            app.processEvents()
            photo_now = canvas.display_image
            loader = photo_now.loader
            if loader is not None and not loader.pending and not photo_now.coarse_pending:
                canvas.viewport().repaint()  # asks for any tile still missing
                if not loader.pending:
                    return time.perf_counter() - t
            if time.perf_counter() - t > timeout:
                raise TimeoutError("tiles never came")
            time.sleep(0.01)

    t0 = time.perf_counter()
    window.session.open_folder(_project(photo, photo.stem))
    while window.current_document() is None:
        app.processEvents()
        time.sleep(0.002)
    t_open = time.perf_counter() - t0
    photo_obj = canvas.display_image
    t_preview = t_coarse = None
    gaps.start()
    while photo_obj.preview_pending:  # files without overviews: a quick likeness first
        app.processEvents()
        time.sleep(0.005)
    if photo_obj.preview is not None:
        t_preview = time.perf_counter() - t0
    while photo_obj.coarse_pending:  # ...then the coarse levels, built once
        app.processEvents()
        time.sleep(0.005)
    if photo_obj.coarse_ready.is_set():
        t_coarse = time.perf_counter() - t0
    settle()
    t_first = time.perf_counter() - t0
    out = {
        "photo": photo.name,
        "overviews": photo_obj.source.overview_count,
        "coarse_levels": (
            "from the cache"
            if photo_obj.coarse_from_cache
            else "built"
            if photo_obj.coarse_ready.is_set()
            else "none"
        ),
        "viewport": [canvas.viewport().width(), canvas.viewport().height()],
        "open_s": round(t_open, 2),
        "preview_s": None if t_preview is None else round(t_preview, 2),
        "coarse_ready_s": None if t_coarse is None else round(t_coarse, 2),
        "first_screen_s": round(t_first, 2),
        "max_event_gap_ms_opening": gaps.stop(),
        "fit_level": photo_obj.grid.level_for_scale(canvas.zoom()),
        "decoded_mp_first_screen": round(photo_obj.source.pixels_read / 1e6, 1),
    }
    window.grab().save(str(WORK / f"shot_{photo.stem}_fit.png"))

    def frame() -> float:
        t = time.perf_counter()
        canvas.viewport().repaint()
        return (time.perf_counter() - t) * 1000

    # zoom in from the fitted view to 100 % around the centre, as fast as a wheel spins
    zoom_frames = []
    centre = QPointF(canvas.viewport().width() / 2, canvas.viewport().height() / 2)
    start = canvas.zoom()
    for i in range(1, 13):
        canvas.set_zoom(start * (1.0 / start) ** (i / 12), centre)
        zoom_frames.append(frame())
        app.processEvents()
    out["zoom_frame_ms"] = {"median": _pct(zoom_frames, 50), "max": _pct(zoom_frames, 100)}
    out["zoom_settle_s"] = round(settle(), 2)

    pan_frames = []
    hbar = canvas.horizontalScrollBar()
    for _ in range(80):
        hbar.setValue(hbar.value() + 60)
        pan_frames.append(frame())
        app.processEvents()
    out["pan_frame_ms"] = {
        "median": _pct(pan_frames, 50),
        "p95": _pct(pan_frames, 95),
        "max": _pct(pan_frames, 100),
    }
    out["pan_settle_s"] = round(settle(), 2)
    window.grab().save(str(WORK / f"shot_{photo.stem}_100.png"))

    def stroke(n: int) -> dict:
        vp = canvas.viewport().rect()
        y = vp.height() / 2
        points = [
            QPointF(vp.width() * (0.2 + 0.6 * i / n), y + 30 * np.sin(i / 5)) for i in range(n + 1)
        ]
        mouse(canvas, QMouseEvent.Type.MouseMove, points[0], Qt.MouseButton.NoButton)
        mouse(canvas, QMouseEvent.Type.MouseButtonPress, points[0])
        app.processEvents()
        times = []
        for p in points[1:]:
            t = time.perf_counter()
            mouse(canvas, QMouseEvent.Type.MouseMove, p)
            app.processEvents()
            times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        mouse(canvas, QMouseEvent.Type.MouseButtonRelease, points[-1])
        app.processEvents()
        release = (time.perf_counter() - t) * 1000
        return {
            "moves": n,
            "median_ms": _pct(times, 50),
            "p95_ms": _pct(times, 95),
            "release_ms": round(release, 1),
        }

    window.tool_settings.choose_brush_size(40)
    out["brush_100pct"] = stroke(150)
    t = time.perf_counter()
    window.session.undo()
    app.processEvents()
    out["undo_ms"] = round((time.perf_counter() - t) * 1000, 1)
    canvas.fit_to_window()
    settle()
    window.tool_settings.choose_brush_size(400)
    out["brush_fit"] = stroke(100)
    out["undo_bytes"] = window.current_document().undo_nbytes
    window.grab().save(str(WORK / f"shot_{photo.stem}_painted.png"))
    hwm, rss = peak_rss_mb()
    out["rss_before_open_mb"] = round(rss_before)
    out["peak_rss_mb"] = round(hwm)
    out["peak_rss_added_mb"] = round(hwm - rss_before)
    # Ctrl+S: the mask is written from a copy on a worker; the window's thread goes on
    gaps.start()
    t = time.perf_counter()
    assert window.session.save_current(background=True)
    out["save_background_block_ms"] = round((time.perf_counter() - t) * 1000, 1)
    while window.session.is_saving:
        app.processEvents()
        time.sleep(0.002)
    out["save_background_written_s"] = round(time.perf_counter() - t, 2)
    out["max_event_gap_ms_saving"] = gaps.stop()
    # the baseline: the same save on the window's thread (what Ctrl+S did before)
    window.current_document().paint_disc((100.0, 100.0), 20.0)
    t = time.perf_counter()
    assert window.session.save_current()
    out["save_blocking_s"] = round(time.perf_counter() - t, 2)
    out["save_ratio_blocking_over_background_block"] = round(
        out["save_blocking_s"] * 1000 / max(out["save_background_block_ms"], 0.1), 1
    )
    out["photo_cache_mb"] = round(photo_obj.cache.nbytes / 2**20)
    out["mask_tile_cache_mb"] = round(canvas.mask_item.tile_cache.nbytes / 2**20)
    return out


class EventLoopGaps:
    """The longest wait between two turns of the event loop (a 5 ms timer's ticks)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.last = self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last, self.longest = time.perf_counter(), 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        self._tick()
        return round(self.longest * 1000, 1)


def tiny_model() -> Path:
    """A small U-Net trained for a few epochs on synthetic scenes (kept in WORK)."""
    out = WORK / "tiny-model"
    if (out / "config.json").is_file():
        return out
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import make_dataset

    from stoneseg_core.io.project import Project
    from stoneseg_core.model.config import TrainConfig
    from stoneseg_core.training.train import run_training

    data = make_dataset(WORK / "tiny-model-data", n=5, size=(128, 160), seed=1)
    cfg = TrainConfig(
        epochs=4, crop=128, work_size=160, batch_size=4, samples_per_image=4, lr=5e-3, seed=0
    )
    run_training(Project.open(data).labelled_pairs(), out, cfg)
    return out


def measure_predict(photo: Path, model: Path) -> dict:
    """Ctrl+P on the big photo in the window, then accept and undo (see the docstring)."""
    from _common import peak_rss_mb
    from guihelpers import FakeDialogs
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from stoneseg_core.display import coarse
    from stoneseg_gui.main_window import MainWindow

    coarse.COARSE_CACHE_DIR = WORK / "pyramid-cache"
    dialogs = FakeDialogs()
    window = MainWindow(dialogs=dialogs)
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    window.session.open_folder(_project(photo, photo.stem + "-predict"))
    while window.current_document() is None:
        app.processEvents()
        time.sleep(0.002)
    side = window.model_side
    side.controller.set_active_model(model)
    rss_before = peak_rss_mb()[1]
    gaps = EventLoopGaps()
    gaps.start()
    t0 = time.perf_counter()
    side.actions.predict.trigger()
    while side.controller.prediction is None and side.controller.is_busy:
        app.processEvents()
        time.sleep(0.005)
    out = {
        "photo": photo.name,
        "predict_s": round(time.perf_counter() - t0, 2),
        "max_event_gap_ms_predicting": gaps.stop(),
        "errors": [title for title, _ in dialogs.errors],
    }
    if side.controller.prediction is not None:
        t = time.perf_counter()
        side.actions.accept_prediction.trigger()
        app.processEvents()
        out["accept_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        window.session.undo()
        app.processEvents()
        out["undo_s"] = round(time.perf_counter() - t, 2)
        for name, step in (("redo_s", window.session.redo), ("undo_again_s", window.session.undo)):
            t = time.perf_counter()
            step()
            app.processEvents()
            out[name] = round(time.perf_counter() - t, 2)
    hwm, _ = peak_rss_mb()
    out["rss_before_predict_mb"] = round(rss_before)
    out["peak_rss_mb"] = round(hwm)
    return out


def measure_whole(photo: Path) -> dict:
    """The old way, in the same window: decode the whole file, build halved copies, show it."""
    from _common import peak_rss_mb
    from guihelpers import FakeDialogs
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from stoneseg_core.editing.mask_document import MaskDocument
    from stoneseg_core.io.images import read_image
    from stoneseg_gui.editor.display import make_display_image
    from stoneseg_gui.main_window import MainWindow

    window = MainWindow(dialogs=FakeDialogs())
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    canvas = window.canvas
    rss_before = peak_rss_mb()[1]
    t0 = time.perf_counter()
    display = make_display_image(read_image(photo))
    document = MaskDocument(shape=(display.height, display.width))
    canvas.show_image(display, document)
    canvas.viewport().repaint()
    app.processEvents()
    t_first = time.perf_counter() - t0
    hwm, _ = peak_rss_mb()
    return {
        "photo": photo.name,
        "first_screen_s": round(t_first, 2),
        "rss_before_open_mb": round(rss_before),
        "peak_rss_mb": round(hwm),
        "peak_rss_added_mb": round(hwm - rss_before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--skip-whole", action="store_true")
    parser.add_argument("--predict", metavar="MODEL_DIR", help="also Ctrl+P ('tiny': train one)")
    parser.add_argument("--case", choices=("tiled", "whole", "predict"), help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        if args.case == "predict":
            result = measure_predict(args.photo, args.model)
        else:
            result = (measure_tiled if args.case == "tiled" else measure_whole)(args.photo)
        print("RESULT " + json.dumps(result), flush=True)
        return

    plain = make_orthomosaic(args.size, overviews=False)
    ovr = make_orthomosaic(args.size, overviews=True)
    load = os.getloadavg()
    results = {"size": args.size, "load_before": [round(v, 2) for v in load]}
    import shutil

    shutil.rmtree(WORK / "pyramid-cache", ignore_errors=True)  # the first opening builds
    cases = [("tiled", plain, "plain"), ("tiled", plain, "plain_second"), ("tiled", ovr, "ovr")]
    if not args.skip_whole:
        cases.append(("whole", plain, "plain"))
    extra: list[str] = []
    if args.predict:
        model = tiny_model() if args.predict == "tiny" else Path(args.predict)
        cases.append(("predict", plain, "plain"))
        extra = ["--model", str(model)]
    for case, photo, name in cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", case, "--photo", str(photo), *extra],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            sys.exit(f"case {case} {photo.name} failed")
        figures = json.loads(line[7:])
        print(f"{case} {name} {photo.name}: {figures}", flush=True)
        results[f"{case}_{name}"] = figures
    if "whole_plain" in results:
        w, t = results["whole_plain"], results["tiled_plain"]
        results["first_screen_ratio_whole_over_tiled"] = round(
            w["first_screen_s"] / t["first_screen_s"], 2
        )
        results["first_screen_ratio_whole_over_tiled_ovr"] = round(
            w["first_screen_s"] / results["tiled_ovr"]["first_screen_s"], 2
        )
    first, second = results["tiled_plain"], results["tiled_plain_second"]
    results["first_screen_ratio_first_over_second_opening"] = round(
        first["first_screen_s"] / second["first_screen_s"], 2
    )
    results["first_screen_ratio_second_opening_over_ovr"] = round(
        second["first_screen_s"] / results["tiled_ovr"]["first_screen_s"], 2
    )
    results["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
