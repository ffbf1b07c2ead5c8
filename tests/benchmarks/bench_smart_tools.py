"""How fast do the smart tools answer on a 24 MP photo? (#25: under 100 ms once the prediction is there)

A synthetic 6000 x 4000 photo of about 2000 stones (ellipses of their own colour, packed so
that neighbours touch, on a noisy ground) and its stones as labels, as a prediction split
into stones would give them. Each tool is driven as the canvas drives it (plain events on a
``MaskDocument``), several times at different stones, and its median milliseconds printed:

- click: Click a stone adds one stone; drag: a drag across ten stones; remove: Shift+click
  removes a predicted stone from the mask;
- box_model: Box a stone round one stone, the model's stone taken; box_grabcut: the same box
  with no prediction (GrabCut on the crop); box_grabcut_big: a 1500 x 1500 box, GrabCut;
- wand_click: the magic wand's click where it has read no window yet (reads and converts
  1024 x 1024); wand_hover: the wand hovering one pixel further (its window kept);
  wand_hover_grown: the worst case of a hover, on the ground at tolerance 40, whose fill
  reaches the window's edge until the window is 2048 px (two windows read and converted,
  and outlined); wand_click_grown: a click there;
- layer: making the stone layer from the labels (per-stone boxes; on the worker, once per
  prediction); split (with ``--split``): ``grains.split_stones`` of the photo's mask with its
  probability (on the worker, once per prediction).

    .venv/bin/python tests/benchmarks/bench_smart_tools.py [--reps 15] [--split]

Prints one JSON line at the end (medians in ms, the machine, the load before and after).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, emit, load_average, machine, median, r3

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.region import Region
from stoneseg_core.editing.smart_regions import ArrayPhoto
from stoneseg_core.editing.smart_tools import (
    BoxStoneTool,
    ClickStoneTool,
    MagicWandTool,
    SmartContext,
)
from stoneseg_core.editing.stone_layer import LabelledStones
from stoneseg_core.editing.tools import PointerEvent

log = logging.getLogger("bench_smart_tools")
W, H = 6000, 4000
CELL = (120, 100)  # 50 x 40 cells: 2000 stones


def make_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB photo, int32 labels 1..N): one ellipse a cell, big enough to touch its neighbours."""
    rng = np.random.default_rng(seed)
    photo = rng.normal((75, 72, 88), 10, (H, W, 3)).clip(0, 255).astype(np.uint8)
    labels = np.zeros((H, W), np.int32)
    cw, ch = CELL
    label = 0
    for top in range(0, H, ch):
        for left in range(0, W, cw):
            label += 1
            cx = left + cw // 2 + int(rng.integers(-6, 7))
            cy = top + ch // 2 + int(rng.integers(-6, 7))
            axes = (int(rng.integers(54, 66)), int(rng.integers(45, 56)))
            box = Region(cy - 70, cx - 70, cy + 71, cx + 71).clipped(H, W)
            stone = np.zeros((box.height, box.width), np.uint8)
            centre = (cx - box.left, cy - box.top)
            cv2.ellipse(stone, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            inside = stone > 0
            labels[box.slices][inside] = label
            tone = rng.uniform(140, 215, 3)
            noise = rng.normal(0, 8, (int(inside.sum()), 3))
            photo[box.slices][inside] = (tone + noise).clip(0, 255).astype(np.uint8)
    return photo, labels


def ev(x: float, y: float, shift: bool = False) -> PointerEvent:
    return PointerEvent(x, y, shift=shift)


def centres(labels_layer: LabelledStones, n: int, seed: int = 1) -> list[tuple[float, float]]:
    """Pixel centres inside ``n`` stones picked at random (their boxes' middles)."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in rng.choice(np.arange(1, len(labels_layer.boxes) + 1), n, replace=False):
        stone = labels_layer.stone(int(label))
        r, c = np.argwhere(stone.pixels)[len(np.argwhere(stone.pixels)) // 2]
        picked.append((stone.region.left + c + 0.5, stone.region.top + r + 0.5))
    return picked


def timed(fn, points) -> list[float]:
    out = []
    for p in points:
        t = time.perf_counter()
        fn(p)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_click(context, doc, points) -> dict[str, list[float]]:
    tool = ClickStoneTool(context)

    def click(p, shift=False):
        tool.press(doc, ev(*p, shift=shift))
        tool.release(doc, ev(*p, shift=shift))

    def drag(p):  # ten stones to the right
        tool.press(doc, ev(*p))
        for k in range(1, 21):
            tool.move(doc, ev(min(W - 1, p[0] + 60 * k), p[1]))
        tool.release(doc, ev(min(W - 1, p[0] + 1200), p[1]))

    return {
        "click": timed(click, points),
        "remove": timed(lambda p: click(p, True), points),
        "drag": timed(drag, points),
    }


def bench_box(context, doc, points) -> dict[str, list[float]]:
    def box_round(tool, p, half=(75, 65)):
        tool.press(doc, ev(p[0] - half[0], p[1] - half[1]))
        tool.move(doc, ev(p[0], p[1]))
        tool.release(doc, ev(p[0] + half[0], p[1] + half[1]))

    model = BoxStoneTool(context)
    grabcut = BoxStoneTool(SmartContext(photo=context.photo))
    big = [(min(max(x, 800), W - 800), min(max(y, 800), H - 800)) for x, y in points]
    return {
        "box_model": timed(lambda p: box_round(model, p), points),
        "box_grabcut": timed(lambda p: box_round(grabcut, p), points),
        "box_grabcut_big": timed(lambda p: box_round(grabcut, p, (750, 750)), big),
    }


def bench_wand(context, doc, points, ground) -> dict[str, list[float]]:
    def cold_click(p):
        context.lab_cache.region = None  # as if the pointer had come from far away
        tool = MagicWandTool(context)
        tool.press(doc, ev(*p))

    hover_tool = MagicWandTool(context)
    hover_tool.hover(ev(*points[0]))

    def hover(p):
        hover_tool.hover(ev(p[0] + 1, p[1]))
        hover_tool.preview_outlines()

    near = [(points[0][0] + 3 * k, points[0][1]) for k in range(len(points))]

    def grow(p, click=False):  # the ground at a high tolerance: the window grows
        context.lab_cache.region = None
        tool = MagicWandTool(context)
        tool.set_tolerance(40)
        if click:
            tool.press(doc, ev(*p))
        else:
            tool.hover(ev(*p))
            tool.preview_outlines()

    return {
        "wand_click": timed(cold_click, points),
        "wand_hover": timed(hover, near),
        "wand_hover_grown": timed(grow, ground),
        "wand_click_grown": timed(lambda p: grow(p, True), ground),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="clicks, boxes... per tool")
    parser.add_argument("--split", action="store_true", help="also time split_stones")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    load_before = load_average()
    photo, labels = make_scene()
    t = time.perf_counter()
    layer = LabelledStones(labels)
    layer_ms = (time.perf_counter() - t) * 1000
    log.info("%d stones on %dx%d; layer made in %.0f ms", layer.count, W, H, layer_ms)
    context = SmartContext(ArrayPhoto(photo), layer)
    doc = MaskDocument(shape=(H, W))
    points = centres(layer, args.reps)
    times = bench_click(context, doc, points)
    times |= bench_box(context, doc, points)
    rows, cols = np.nonzero(labels[::97, ::89] == 0)  # ground pixels spread over the photo
    pick = np.random.default_rng(2).choice(rows.size, max(1, args.reps // 3), replace=False)
    ground = [(cols[i] * 89 + 0.5, rows[i] * 97 + 0.5) for i in pick]
    times |= bench_wand(context, doc, points, ground)
    result = {
        "benchmark": "smart_tools",
        "photo": f"{W}x{H}",
        "stones": layer.count,
        "reps": args.reps,
        "ms": {name: r3(median(v)) for name, v in times.items()},
        "ms_max": {name: r3(max(v)) for name, v in times.items()},
        "layer_ms": r3(layer_ms),
    }
    if args.split:
        from stoneseg_core.grains.split import split_stones

        probability = (labels > 0).astype(np.float32)
        t = time.perf_counter()
        split = split_stones((labels > 0).astype(np.uint8) * 255, probability)
        result["split_ms"] = r3((time.perf_counter() - t) * 1000)
        result["split_stones"] = int(split.max())
    result["targets"] = {name: median(v) < 100 for name, v in times.items()}
    result["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    result["machine"] = machine()
    result["load_before"], result["load_after"] = load_before, load_average()
    emit(result)


if __name__ == "__main__":
    main()
