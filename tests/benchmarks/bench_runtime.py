"""How fast is StoneSeg's CPU inference through ONNX Runtime, against eager PyTorch?

Three parts:

- ``network``: the network alone on one working-scale input (default 384x288, what a 4:3
  photo becomes at the default working scale), eager float32 PyTorch (channels_last, as
  Segmenter ran it before, and plain NCHW) against the exported network in ONNX Runtime,
  interleaved repetition by repetition in this process, for each encoder (random weights:
  speed does not depend on them). Agreement is the largest logit difference. ONNX Runtime
  is run as StoneSeg runs it (``onnxruntime``: optimisation level ALL, intra-op threads =
  physical cores, sequential, no spinning) and with the session options tried against it:
  ``ort_spinning`` (waiting threads spin; timed in a loop of its own, since spinning threads
  slow whatever runs next), ``ort_fixed_shape`` (batch, height and width
  fixed to the input's), ``ort_saved_optimised`` (the graph optimised once, saved and
  loaded; its session start is timed too: ``session_s``).
- ``int8`` (needs --model, a trained model, and the dev photos): the float32 network in ONNX
  Runtime against its int8 version (onnx_cache.int8_network, calibrated on --calib photos,
  the others held out) and eager PyTorch, interleaved on each held-out photo's
  working-scale input; masks of ``Segmenter`` runtime "onnx-int8" against "onnx" on the
  held-out photos and all photos (pooled IoU).
- ``end_to_end``: ``stoneseg segment`` on a folder of photos against "the plain way", a
  small script (cv2 decode, long-side resize, eager float32 PyTorch, resize back,
  threshold, PNG), both as whole processes, interleaved, on the same trained model. Wall
  time ratio, pooled IoU of the two ways' masks, and peak RSS of each process.

    python tests/benchmarks/bench_runtime.py [--part network|int8|end_to_end|both|all] [--reps 7]
        [--encoders tu-tf_efficientnet_lite0,efficientnet-b0] [--size 384x288]
        [--model DIR] [--e2e-reps 3] [--copies 1,5] [--int8] [--calib 4]
        [--baseline-repo /work/main]

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

from stoneseg_core.inference.onnx_cache import INPUT_NAME, OnnxNetwork
from stoneseg_core.inference.onnx_export import onnx_network
from stoneseg_core.model.network import build_model


def _ort_session(path: Path, spinning=False, fixed=None, level=None, save_to=None):
    """An ONNX Runtime session as OnnxNetwork makes it, with one option changed; and its
    start-up seconds."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = OnnxNetwork(path).session.get_session_options().intra_op_num_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level is None else level
    )
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    for name, value in (fixed or {}).items():
        opts.add_free_dimension_override_by_name(name, value)
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
    t = time.perf_counter()
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - t


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
        xn = x.numpy()
        cands["onnxruntime"] = lambda: net.run(xn)
        import onnxruntime as ort

        # the spinning session is timed apart (below): its threads keep spinning after each
        # run and slow whatever runs next, which in one interleaved loop is the others
        spinning = _ort_session(net.path, spinning=True)[0]
        variants = {
            "ort_fixed_shape": _ort_session(net.path, fixed={"batch": 1, "height": h, "width": w})[
                0
            ],
        }
        saved = Path(cache) / "optimised.onnx"
        session_s = {"onnxruntime": _ort_session(net.path)[1]}
        _ort_session(net.path, save_to=saved)
        variants["ort_saved_optimised"], session_s["ort_saved_optimised"] = _ort_session(
            saved, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        for name, sess in variants.items():
            cands[name] = lambda sess=sess: sess.run(None, {INPUT_NAME: xn})
        try:  # the hand-fused oneDNN network that ONNX Runtime replaced, where it still exists
            from stoneseg_core.inference.segmenter import fuse_for_cpu_inference

            fused = fuse_for_cpu_inference(cl)
            if fused is not None:
                cands["fused_onednn"] = eager(fused, xcl)
        except ImportError:
            pass
        with torch.inference_mode():
            ref = model(x)
        err = float((net(x) - ref).abs().max())
        errs = {
            k: float(np.abs(cands[k]()[0] - ref.numpy()).max())
            for k in cands
            if k.startswith("ort_")
        }
        errs["ort_spinning"] = float(
            np.abs(spinning.run(None, {INPUT_NAME: xn})[0] - ref.numpy()).max()
        )
        times = interleaved(cands, reps, warmup=2)
        # apart, right after: its ratios pair repetition r with repetition r of the loop above
        spin = interleaved(
            {"s": lambda sess=spinning: sess.run(None, {INPUT_NAME: xn})}, reps, warmup=2
        )
    base = times["eager_nchw"]
    times["ort_spinning"] = spin["s"]
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
        "max_logit_diff_variants": errs,
        "session_s": {k: r3(v) for k, v in session_s.items()},
    }


# ----------------------------------------------------------------------------------- int8


def bench_int8(model_dir: Path, images: Path, reps: int, calib_count: int) -> dict:
    """float32 ONNX Runtime against int8 (and eager PyTorch) on a trained model's inputs."""
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.images import list_images, read_image
    from stoneseg_core.model.config import InferenceConfig

    photos = list_images(images)
    calib, held = (
        photos[::2][:calib_count],
        [p for p in photos if p not in photos[::2][:calib_count]],
    )
    with tempfile.TemporaryDirectory() as cache:
        os.environ["STONESEG_CACHE_DIR"] = cache
        fp32 = Segmenter.load(model_dir, InferenceConfig(device="cpu", runtime="onnx"))
        int8 = Segmenter.load(model_dir, InferenceConfig(device="cpu", runtime="onnx-int8"))
        eager = Segmenter.load(model_dir, InferenceConfig(device="cpu", runtime="torch"))
        fp32.predict_mask(read_image(photos[0]))  # exports the network
        t = time.perf_counter()
        ok = int8.calibrate_int8(read_image(p) for p in calib)
        quantise_s = time.perf_counter() - t
        assert ok, "int8 quantisation failed"
        # the network alone on each held-out photo's working-scale input, interleaved
        from stoneseg_core.inference.tiling import pad_to, round_up
        from stoneseg_core.model.scale import normalize, to_work_scale

        f_net, i_net, model = fp32.network.session(), int8.network.session(), eager.model
        ratios: dict[str, list[float]] = {
            "int8_vs_fp32_ort": [],
            "int8_vs_eager": [],
            "fp32_ort_vs_eager": [],
        }
        ms: dict[str, list[float]] = {"eager": [], "onnxruntime": [], "onnxruntime_int8": []}
        for p in held:
            work = to_work_scale(read_image(p), fp32.info.work_size)
            hh, ww = work.shape[:2]
            xn = normalize(pad_to(work, round_up(hh), round_up(ww)), fp32.info.mean, fp32.info.std)[
                None
            ]
            xt = torch.from_numpy(xn).contiguous(memory_format=torch.channels_last)

            def run_eager(xt=xt):
                with torch.inference_mode():
                    return model(xt)

            times = interleaved(
                {
                    "eager": run_eager,
                    "onnxruntime": lambda xn=xn: f_net.run(xn),
                    "onnxruntime_int8": lambda xn=xn: i_net.run(xn),
                },
                reps,
                warmup=1,
            )
            for k, v in times.items():
                ms[k].append(1000 * median(v))
            ratios["int8_vs_fp32_ort"].append(
                paired_ratio(times["onnxruntime"], times["onnxruntime_int8"])
            )
            ratios["int8_vs_eager"].append(paired_ratio(times["eager"], times["onnxruntime_int8"]))
            ratios["fp32_ort_vs_eager"].append(paired_ratio(times["eager"], times["onnxruntime"]))

        def pooled(paths):
            inter = union = 0
            for p in paths:
                img = read_image(p)
                a, b = int8.predict_mask(img) > 0, fp32.predict_mask(img) > 0
                inter += np.count_nonzero(a & b)
                union += np.count_nonzero(a | b)
            return inter / union if union else 1.0

        return {
            "model": str(model_dir),
            "calibration_photos": [p.name for p in calib],
            "held_out_photos": len(held),
            "quantise_s": r3(quantise_s),
            "network_ms_median_over_photos": {k: r3(median(v)) for k, v in ms.items()},
            "speedup_median_over_photos": {k: r3(median(v)) for k, v in ratios.items()},
            "pooled_iou_int8_vs_fp32_held_out": round(pooled(held), 5),
            "pooled_iou_int8_vs_fp32_all": round(pooled(photos), 5),
        }


# ------------------------------------------------------------------------------ end to end

PLAIN_WAY = r"""
import sys, json
from pathlib import Path
import cv2, numpy as np, torch
from stoneseg_core.model.network import load_model
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


def bench_end_to_end(
    images: Path,
    model: Path,
    reps: int,
    copies: int = 1,
    int8: bool = False,
    baseline_repo: str | None = None,
) -> dict:
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
        cmds = {"plain": plain, "stoneseg": stoneseg}
        if int8:  # the opt-in int8 network (README): its own output folder
            out_i = tmp / "stoneseg_int8"
            cmds["stoneseg_int8"] = [*stoneseg[:-2], str(out_i), "--overwrite"]
            cmds["stoneseg_int8"] += ["--runtime", "onnx-int8"]
        if baseline_repo:  # another checkout's `stoneseg segment` (e.g. main), same harness
            cmds["stoneseg_baseline"] = ["env", f"PYTHONPATH={baseline_repo}", *stoneseg[:-2]]
            cmds["stoneseg_baseline"] += [str(tmp / "stoneseg_baseline"), "--overwrite"]
        # one run each first: the ONNX export (and int8 version) is cached per weights, as
        # for a user's second run
        for cmd in cmds.values():
            _run_timed(cmd, env, rss_file)
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        rss: dict[str, list[float]] = {k: [] for k in cmds}
        for r in range(reps):
            order = list(cmds.items())
            for name, cmd in order if r % 2 == 0 else order[::-1]:
                w, m = _run_timed(cmd, env, rss_file)
                walls[name].append(w)
                rss[name].append(m)
        pooled, n = _pooled_iou(out_p, out_s)
        row = {
            "photos": n,
            "copies_of_each": copies,
            "wall_s": {k: r3(median(v)) for k, v in walls.items()},
            "speedup": r3(paired_ratio(walls["plain"], walls["stoneseg"])),
            "pooled_iou_vs_plain": round(pooled, 5),
            "peak_rss_mb": {k: r3(max(v)) for k, v in rss.items()},
        }
        if baseline_repo:
            row["baseline_repo"] = baseline_repo
            row["speedup_baseline"] = r3(paired_ratio(walls["plain"], walls["stoneseg_baseline"]))
            row["speedup_vs_baseline"] = r3(
                paired_ratio(walls["stoneseg_baseline"], walls["stoneseg"])
            )
        if int8:
            row["speedup_int8"] = r3(paired_ratio(walls["plain"], walls["stoneseg_int8"]))
            row["pooled_iou_int8_vs_plain"] = round(_pooled_iou(out_p, out_i)[0], 5)
            row["pooled_iou_int8_vs_fp32"] = round(_pooled_iou(out_s, out_i)[0], 5)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument(
        "--part", default="both", choices=("network", "int8", "end_to_end", "both", "all")
    )
    ap.add_argument("--calib", type=int, default=4, help="int8: photos that calibrate")
    ap.add_argument("--int8", action="store_true", help="end to end: time --runtime onnx-int8 too")
    ap.add_argument(
        "--baseline-repo",
        help="end to end: time this checkout's `stoneseg segment` too (e.g. main)",
    )
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--e2e-reps", type=int, default=3)
    ap.add_argument("--copies", default="1,5", help="end to end: each photo N times, per run")
    ap.add_argument("--encoders", default="tu-tf_efficientnet_lite0,efficientnet-b0")
    ap.add_argument("--size", default="384x288", help="network input WxH (multiples of 32)")
    ap.add_argument("--model", help="trained model folder for the end-to-end part")
    args = ap.parse_args()
    setup(args)
    result: dict = {"machine": machine(), "load_before": load_average()}
    if args.part in ("network", "both", "all"):
        size = tuple(int(v) for v in args.size.lower().split("x"))
        result["network"] = [
            bench_network(e, size, args.reps) for e in args.encoders.split(",") if e
        ]
        for row in result["network"]:
            print(row, flush=True)
    if args.part in ("int8", "all"):
        data = data_dir(args.data)
        result["int8"] = bench_int8(
            bench_model(args.model, data), data / "images", args.reps, args.calib
        )
        print(result["int8"], flush=True)
    if args.part in ("end_to_end", "both", "all"):
        data = data_dir(args.data)
        model = bench_model(args.model, data)
        result["end_to_end"] = []
        for copies in (int(c) for c in args.copies.split(",") if c):
            row = bench_end_to_end(
                data / "images", model, args.e2e_reps, copies, args.int8, args.baseline_repo
            )
            result["end_to_end"].append(row)
            print(row, flush=True)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
