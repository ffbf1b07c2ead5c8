"""Grains of a 20000 x 20000 mask window by window (grains/tiled.py): time, cost per
megapixel against a 2048 x 2048 mask, peak memory, and agreement with the whole-mask split.

The mask is synthetic gravel written to a temporary folder as a tiled deflate TIFF, strip
by strip (the script never holds it whole): one disc or ellipse per 40-px cell of a grid,
random size (radius 5-21 px) and position in the cell, so about a third of neighbours touch
and the split has real necks to cut. The 2048 x 2048 mask is its top-left corner.

- cost per MP: the tiled job on the 20000 x 20000 file against the whole-mask path
  (``analyse_mask``: split + ``measure_stones``, then the 16-bit PNG, CSV and GeoJSON) on
  the 2048 x 2048 one, and against the tiled job on it; each case in a fresh subprocess,
  so its peak RSS (VmHWM) is its own.
- agreement: the 2048 x 2048 corner split whole and split with small windows forced (512 px
  cores, margins 64 and 128): stones found by both with the same pixels, stones only one
  of them has, pixels two windows claimed, stone pixels left unlabelled.

    python tests/benchmarks/bench_grains_tiled.py [--size 20000] [--small 2048]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
CELL = 40


def stones_of(size: int, seed: int = 0) -> np.ndarray:
    """(row, col, semi-axis b, semi-axis a, rotation) of the scene's stones."""
    rng = np.random.default_rng(seed)
    n = -(-size // CELL)
    rows, cols = np.mgrid[0:n, 0:n]
    k = n * n
    a = rng.uniform(5, 21, k)
    b = np.where(rng.random(k) < 0.4, a, rng.uniform(5, 21, k))
    b = np.minimum(a, b)
    cy = rows.ravel() * CELL + CELL / 2 + rng.uniform(-8, 8, k)
    cx = cols.ravel() * CELL + CELL / 2 + rng.uniform(-8, 8, k)
    return np.stack([cy, cx, b, a, rng.uniform(0, np.pi, k)], axis=1)


def write_scene(path: Path, size: int, tile: int = 256) -> None:
    """The scene's 0/255 mask as a tiled TIFF, strip by strip."""
    import tifffile
    from skimage.draw import ellipse

    stones = stones_of(size)
    order = np.argsort(stones[:, 0])
    stones = stones[order]

    def tiles():
        for top in range(0, size, tile):
            h = min(tile, size - top)
            strip = np.zeros((h, size), np.uint8)
            lo = np.searchsorted(stones[:, 0], top - 25)
            hi = np.searchsorted(stones[:, 0], top + h + 25)
            for cy, cx, b, a, rot in stones[lo:hi]:
                rr, cc = ellipse(cy - top, cx, b, a, shape=strip.shape, rotation=rot)
                strip[rr, cc] = 255
            for c in range(0, size, tile):
                yield strip[:, c : c + tile]

    tifffile.imwrite(
        path,
        tiles(),
        shape=(size, size),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="zlib",
        photometric="minisblack",
        metadata=None,
    )


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, mask_path: str, out: str, window: int) -> None:
    """One case in this fresh process; prints a JSON line."""
    from stoneseg_core.grains import analyse_mask, stones_csv, stones_geojson
    from stoneseg_core.grains.io import write_instance_labels, write_json, write_text
    from stoneseg_core.grains.tiled import iter_grains_tiled
    from stoneseg_core.io.images import read_mask

    base = vm_hwm_mb()
    start = time.perf_counter()
    if mode == "whole":
        mask = read_mask(mask_path)
        labels, result = analyse_mask(mask, name="scene.tif")
        write_instance_labels(Path(out) / "scene_instances.png", labels)
        write_text(Path(out) / "scene_stones.csv", stones_csv([result], _options()))
        write_json(Path(out) / "scene_stones.geojson", stones_geojson(result, labels, _options()))
        stones, extra = len(result.stones), {}
    else:
        gen = iter_grains_tiled(mask_path, out, "scene", window_px=window)
        last = 0.0
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                res = stop.value
                break
            if event.seconds - last > 30:
                last = event.seconds
                print(
                    f"  window {event.window}/{event.windows}, {event.stones} stones, "
                    f"{event.seconds:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        stones = len(res.grains.stones)
        extra = {
            "windows": res.windows,
            "margin_px": res.margin_px,
            "label_dtype": res.label_dtype,
            "widened_windows": res.widened_windows,
            "overlap_px": res.overlap_px,
            "unlabelled_px": res.unlabelled_px,
        }
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": seconds,
                "stones": stones,
                "peak_rss_mb": vm_hwm_mb(),
                "rss_before_mb": base,
                **extra,
            }
        )
    )


def _options():
    from stoneseg_core.grains import GrainOptions

    return GrainOptions()


def run_child(mode: str, mask: Path, window: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stoneseg-bench-out-") as out:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(mask), out, str(window)],
            capture_output=False,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agreement(mask_path: Path, window: int, margin: int) -> dict:
    from stoneseg_core.grains import analyse_mask
    from stoneseg_core.grains.tiled import grains_tiled
    from stoneseg_core.io.images import read_mask

    mask = read_mask(mask_path)
    _, whole = analyse_mask(mask)
    with tempfile.TemporaryDirectory(prefix="stoneseg-bench-agree-") as out:
        res = grains_tiled(mask, out, "agree", window_px=window, margin_px=margin)
    a = {(s.bbox, s.area_px, round(s.centroid_x, 6), round(s.centroid_y, 6)) for s in whole.stones}
    b = {
        (s.bbox, s.area_px, round(s.centroid_x, 6), round(s.centroid_y, 6))
        for s in res.grains.stones
    }
    return {
        "window_px": window,
        "margin_px": margin,
        "stones_whole": len(whole.stones),
        "stones_tiled": len(res.grains.stones),
        "identical": len(a & b),
        "only_whole": len(a - b),
        "only_tiled": len(b - a),
        "widened_windows": res.widened_windows,
        "overlap_px": res.overlap_px,
        "unlabelled_px": res.unlabelled_px,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--small", type=int, default=2048)
    p.add_argument("--window", type=int, default=2048)
    args = p.parse_args()
    import os
    import platform

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="stoneseg-bench-grains-") as tmp:
        tmp = Path(tmp)
        big, small = tmp / "big.tif", tmp / "small.tif"
        t = time.perf_counter()
        write_scene(big, args.size)
        write_scene(small, args.small)
        print(f"scenes written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        agree = [agreement(small, 512, m) for m in (64, 128)]
        print(f"agreement: {agree}", file=sys.stderr)
        whole_small = run_child("whole", small, args.window)
        tiled_small = run_child("tiled", small, args.window)
        print(f"small: whole {whole_small}, tiled {tiled_small}", file=sys.stderr)
        tiled_big = run_child("tiled", big, args.window)
        print(f"big: {tiled_big}", file=sys.stderr)
    mp_big, mp_small = args.size**2 / 1e6, args.small**2 / 1e6
    per_mp = {
        "whole_small_s_per_mp": whole_small["seconds"] / mp_small,
        "tiled_small_s_per_mp": tiled_small["seconds"] / mp_small,
        "tiled_big_s_per_mp": tiled_big["seconds"] / mp_big,
    }
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    result = {
        "size": args.size,
        "small": args.small,
        "window_px": args.window,
        "whole_small": whole_small,
        "tiled_small": tiled_small,
        "tiled_big": tiled_big,
        **{k: round(v, 4) for k, v in per_mp.items()},
        "per_mp_ratio_vs_whole_small": round(
            per_mp["tiled_big_s_per_mp"] / per_mp["whole_small_s_per_mp"], 3
        ),
        "per_mp_ratio_vs_tiled_small": round(
            per_mp["tiled_big_s_per_mp"] / per_mp["tiled_small_s_per_mp"], 3
        ),
        "agreement_2048_forced_windows": agree,
        "machine": {"cpu": cpu, "cores": os.cpu_count()},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "targets": {"peak_rss_under_4gb": tiled_big["peak_rss_mb"] < 4096},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
