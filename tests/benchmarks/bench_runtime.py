"""How fast is StoneSeg's CPU inference through ONNX Runtime, against eager PyTorch?

Two parts:

- ``network``: the network alone on one working-scale input (default 384x288, what a 4:3
  photo becomes at the default working scale), eager float32 PyTorch (channels_last, as
  Segmenter ran it before, and plain NCHW) against the exported network in ONNX Runtime,
  interleaved repetition by repetition in this process, for each encoder (random weights:
  speed does not depend on them). Agreement is the largest logit difference.
- ``end_to_end``: ``stoneseg segment`` on a folder of photos against "the plain way", a
  small script (cv2 decode, long-side resize, eager float32 PyTorch, resize back,
  threshold, PNG), both as whole processes, interleaved, on the same trained model. Wall
  time ratio, pooled IoU of the two ways' masks, and peak RSS of each process.

    python tests/benchmarks/bench_runtime.py [--part network|end_to_end|both] [--reps 7]
        [--encoders tu-tf_efficientnet_lite0,efficientnet-b0] [--size 384x288]
        [--model DIR] [--e2e-reps 3] [--copies 1,5]

Without --model, the end-to-end part trains a 3-epoch model once (cached in the temp
folder, see _common.bench_model). The last line is one JSON object with the figures.
Other processes on the machine share the cores: read the load average printed with them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import (
    REPO,
    add_common_args,
    bench_model,
    data_dir,
    emit,
    interleaved,
    load_average,
    machine,
    median,
    paired_ratio,
    r3,
    setup,
)

from stoneseg_core.model import build_model
from stoneseg_core.runtime import onnx_network


def bench_network(encoder: str, size: tuple[int, int], reps: int) -> dict:
    """Eager (NCHW, channels_last) and ONNX Runtime milliseconds for one encoder."""
    w, h = size
    model = build_model(encoder, "none").eval()
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    xcl = x.contiguous(memory_format=torch.channels_last)
    cl = build_model(encoder, "none").eval()
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["STONESEG_CACHE_DIR"] = cache
        t = time.perf_counter()
        net = onnx_network(model)
        export_s = time.perf_counter() - t
        assert net is not None, "ONNX Runtime unavailable"
        cands = {}

        def eager(m, inp):
            def run():
                with torch.inference_mode():
                    return m(inp)

            return run

        cands["eager_nchw"] = eager(model, x)
        cands["eager_channels_last"] = eager(cl, xcl)
        cands["onnxruntime"] = lambda: net(x)
        try:  # the hand-fused oneDNN network that ONNX Runtime replaced, where it still exists
            from stoneseg_core.predict import fuse_for_cpu_inference

            fused = fuse_for_cpu_inference(cl)
            if fused is not None:
                cands["fused_onednn"] = eager(fused, xcl)
        except ImportError:
            pass
        with torch.inference_mode():
            ref = model(x)
        err = float((net(x) - ref).abs().max())
        times = interleaved(cands, reps, warmup=2)
    base = times["eager_nchw"]
    return {
        "encoder": encoder,
        "input": f"{w}x{h}",
        "export_s": r3(export_s),
        "ms": {k: r3(1000 * median(v)) for k, v in times.items()},
        "speedup_vs_eager_nchw": {k: r3(paired_ratio(base, v)) for k, v in times.items()},
        "speedup_vs_eager_channels_last": {
            k: r3(paired_ratio(times["eager_channels_last"], v)) for k, v in times.items()
        },
        "max_logit_diff_onnx": err,
    }


# ------------------------------------------------------------------------------ end to end

PLAIN_WAY = r"""
import sys, json
from pathlib import Path
import cv2, numpy as np, torch
from stoneseg_core.model import load_model
src, dst, model_dir = map(Path, sys.argv[1:4])
model, info = load_model(model_dir, torch.device("cpu"))
model.eval()
mean = np.array(info.mean, np.float32) * 255
std = np.array(info.std, np.float32) * 255
dst.mkdir(parents=True, exist_ok=True)
for p in sorted(src.iterdir()):
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        continue
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = info.work_size / max(h, w)
    wh, ww = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    ph, pw = -(-wh // 32) * 32, -(-ww // 32) * 32
    small = cv2.copyMakeBorder(small, 0, ph - wh, 0, pw - ww, cv2.BORDER_REFLECT_101)
    x = torch.from_numpy(((small - mean) / std).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        prob = torch.sigmoid(model(x))[0, 0, :wh, :ww].numpy()
    prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = np.where(prob >= info.threshold, 255, 0).astype(np.uint8)
    cv2.imwrite(str(dst / f"{p.stem}.png"), mask)
"""


def _run_timed(cmd: list[str], env: dict, rss_file: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a whole process (peak RSS by GNU time)."""
    t = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-2000:])
    return wall, int(rss_file.read_text().split()[-1]) / 1024


def _pooled_iou(a: Path, b: Path) -> tuple[float, int]:
    inter = union = n = 0
    for pa in sorted(a.glob("*.png")):
        ma = cv2.imread(str(pa), cv2.IMREAD_GRAYSCALE) > 127
        mb = cv2.imread(str(b / pa.name), cv2.IMREAD_GRAYSCALE) > 127
        assert ma.shape == mb.shape, pa.name
        inter += np.count_nonzero(ma & mb)
        union += np.count_nonzero(ma | mb)
        n += 1
    return (inter / union if union else 1.0), n


def bench_end_to_end(images: Path, model: Path, reps: int, copies: int = 1) -> dict:
    """``copies``: the folder holds every photo that many times (symbolic links), so that
    the per-process start (imports, model load) weighs less against the photos."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if copies > 1:
            folder = tmp / "images"
            folder.mkdir()
            for p in sorted(images.iterdir()):
                for i in range(copies):
                    (folder / f"{p.stem}_{i}{p.suffix}").symlink_to(p.resolve())
            images = folder
        rss_file = tmp / "rss.txt"
        env["STONESEG_CACHE_DIR"] = str(tmp / "cache")
        script = tmp / "plain.py"
        script.write_text(PLAIN_WAY)
        out_s, out_p = tmp / "stoneseg", tmp / "plain"
        stoneseg = [sys.executable, "-m", "stoneseg_core", "segment", str(model), str(images)]
        stoneseg += [str(out_s), "--overwrite"]
        plain = [sys.executable, str(script), str(images), str(out_p), str(model)]
        # one run each first: the ONNX export is cached per weights, as for a user's second run
        _run_timed(stoneseg, env, rss_file)
        _run_timed(plain, env, rss_file)
        walls: dict[str, list[float]] = {"plain": [], "stoneseg": []}
        rss: dict[str, list[float]] = {"plain": [], "stoneseg": []}
        for r in range(reps):
            order = [("plain", plain), ("stoneseg", stoneseg)]
            for name, cmd in order if r % 2 == 0 else order[::-1]:
                w, m = _run_timed(cmd, env, rss_file)
                walls[name].append(w)
                rss[name].append(m)
        pooled, n = _pooled_iou(out_p, out_s)
    return {
        "photos": n,
        "copies_of_each": copies,
        "wall_s": {k: r3(median(v)) for k, v in walls.items()},
        "speedup": r3(paired_ratio(walls["plain"], walls["stoneseg"])),
        "pooled_iou_vs_plain": round(pooled, 5),
        "peak_rss_mb": {k: r3(max(v)) for k, v in rss.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument("--part", default="both", choices=("network", "end_to_end", "both"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--e2e-reps", type=int, default=3)
    ap.add_argument("--copies", default="1,5", help="end to end: each photo N times, per run")
    ap.add_argument("--encoders", default="tu-tf_efficientnet_lite0,efficientnet-b0")
    ap.add_argument("--size", default="384x288", help="network input WxH (multiples of 32)")
    ap.add_argument("--model", help="trained model folder for the end-to-end part")
    args = ap.parse_args()
    setup(args)
    result: dict = {"machine": machine(), "load_before": load_average()}
    if args.part in ("network", "both"):
        size = tuple(int(v) for v in args.size.lower().split("x"))
        result["network"] = [
            bench_network(e, size, args.reps) for e in args.encoders.split(",") if e
        ]
        for row in result["network"]:
            print(row, flush=True)
    if args.part in ("end_to_end", "both"):
        data = data_dir(args.data)
        model = bench_model(args.model, data)
        result["end_to_end"] = []
        for copies in (int(c) for c in args.copies.split(",") if c):
            row = bench_end_to_end(data / "images", model, args.e2e_reps, copies)
            result["end_to_end"].append(row)
            print(row, flush=True)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
