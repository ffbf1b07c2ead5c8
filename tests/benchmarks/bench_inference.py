"""How fast is StoneSeg's inference (Segmenter) against the plain way, and do they agree?

The plain way runs the same weights on the same working-scale image with the same tiles
and the same blending, but as a straightforward script would: float32, eager, NCHW,
``torch.no_grad``, one tile at a time. StoneSeg's way is ``Segmenter`` as shipped. Both
are timed in this process, interleaved photo by photo (alternating who goes first), and
the speed-up is the median over repetitions of plain time / StoneSeg time.

Scenarios:
- ``default``: the model's working scale (384 by default: every photo is one tile);
- ``tiled``: working scale 1024, so each photo is cut into 512-px tiles with 64 px overlap;
- ``end_to_end``: ``Segmenter.predict`` on the full-size photo (resize to working scale,
  network, resize back, threshold) against the same steps done the plain way; megapixels
  are the photo's own. Decoding the JPEG is excluded (it is the same for both).
- ``ablation`` (one photo, network only): what each step is worth.

    python tests/benchmarks/bench_inference.py [--reps 3] [--images 14] [--tiled-images 4]
        [--model DIR] [--no-ablation] [--try-compile]

Without --model, a 3-epoch model is trained on the data once (~2-3 min) and cached in the
temp folder; random weights would make the two outputs agree trivially. The last line is
one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time

import cv2
import numpy as np
import torch
from _common import (
    add_common_args,
    bench_model,
    data_dir,
    emit,
    interleaved,
    iou,
    labelled_pairs,
    load_average,
    machine,
    median,
    paired_ratio,
    r3,
    read_rgb,
    setup,
)

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.inference.tiling import blend_window, pad_to, round_up, tile_starts
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.network import load_model
from stoneseg_core.training.dataset import normalize, to_work_scale

log = logging.getLogger("bench_inference")


# ------------------------------------------------------------------------- the plain way


class Plain:
    """Same weights, same tiles and blending; fp32 eager NCHW, no_grad, batch 1."""

    def __init__(self, model: torch.nn.Module, info, config: InferenceConfig):
        self.model, self.info, self.config = model.eval(), info, config
        self.device = next(model.parameters()).device

    def _prob(self, x: np.ndarray) -> np.ndarray:
        logits = self.model(torch.from_numpy(x)[None].to(self.device))
        return torch.sigmoid(logits)[0, 0].cpu().numpy()

    def probability_at_work_scale(self, work: np.ndarray) -> np.ndarray:
        cfg, info = self.config, self.info
        h, w = work.shape[:2]
        tile = cfg.tile
        with torch.no_grad():
            if h <= tile and w <= tile:
                x = normalize(pad_to(work, round_up(h), round_up(w)), info.mean, info.std)
                return self._prob(x)[:h, :w]
            ph, pw = max(h, tile), max(w, tile)
            padded = pad_to(work, ph, pw)
            weight = blend_window(tile, cfg.overlap)
            acc = np.zeros((ph, pw), np.float32)
            norm = np.zeros((ph, pw), np.float32)
            for y in tile_starts(ph, tile, cfg.overlap):
                for x0 in tile_starts(pw, tile, cfg.overlap):
                    x = normalize(padded[y : y + tile, x0 : x0 + tile], info.mean, info.std)
                    p = self._prob(x)
                    acc[y : y + tile, x0 : x0 + tile] += p * weight
                    norm[y : y + tile, x0 : x0 + tile] += weight
            return (acc / np.maximum(norm, 1e-6))[:h, :w]

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        prob = self.probability_at_work_scale(to_work_scale(image, self.info.work_size))
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return prob, np.where(prob >= self.config.threshold, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------------------- scenarios


def warm(seg: Segmenter) -> Segmenter:
    """Two small passes: Segmenter exports (or loads) its ONNX Runtime network at the first."""
    for _ in range(2):
        seg.predict(np.full((96, 128, 3), 90, np.uint8))
    return seg


def compare_work_scale(seg: Segmenter, plain: Plain, works: list[np.ndarray], reps: int) -> dict:
    """Network + tiling + blending on working-scale images; speed and mask agreement."""
    thr = seg.config.threshold
    inter = union = 0
    ious, max_diff = [], 0.0
    for work in works:
        a = seg.probability_at_work_scale(work)  # also the warm-up
        b = plain.probability_at_work_scale(work)
        ma, mb = a >= thr, b >= thr
        inter += np.count_nonzero(ma & mb)
        union += np.count_nonzero(ma | mb)
        ious.append(iou(ma, mb))
        max_diff = max(max_diff, float(np.abs(a - b).max()))
    totals = {"stoneseg": [], "plain": []}
    for r in range(reps):
        t_rep = {"stoneseg": 0.0, "plain": 0.0}
        for i, work in enumerate(works):
            order = ["stoneseg", "plain"] if (r + i) % 2 == 0 else ["plain", "stoneseg"]
            for name in order:
                f = seg if name == "stoneseg" else plain
                t = time.perf_counter()
                f.probability_at_work_scale(work)
                t_rep[name] += time.perf_counter() - t
        for k in totals:
            totals[k].append(t_rep[k])
        log.info("rep %d: stoneseg %.2f s, plain %.2f s", r + 1, t_rep["stoneseg"], t_rep["plain"])
    mp = sum(w.shape[0] * w.shape[1] for w in works) / 1e6
    tiles = sum(
        len(tile_starts(max(w.shape[0], seg.config.tile), seg.config.tile, seg.config.overlap))
        * len(tile_starts(max(w.shape[1], seg.config.tile), seg.config.tile, seg.config.overlap))
        for w in works
    )
    return {
        "images": len(works),
        "tiles": tiles,
        "work_megapixels": r3(mp),
        "stoneseg_mp_per_s": r3(mp / median(totals["stoneseg"])),
        "plain_mp_per_s": r3(mp / median(totals["plain"])),
        "speedup": r3(paired_ratio(totals["plain"], totals["stoneseg"])),
        "mask_iou_pooled": float(round(inter / union, 5)) if union else 1.0,
        "mask_iou_min_image": float(round(min(ious), 5)),
        "max_abs_prob_diff": float(f"{max_diff:.3g}"),
        "seconds_stoneseg": [r3(t) for t in totals["stoneseg"]],
        "seconds_plain": [r3(t) for t in totals["plain"]],
    }


def compare_end_to_end(seg: Segmenter, plain: Plain, photos: list[np.ndarray], reps: int) -> dict:
    inter = union = 0
    for img in photos:
        a = seg.predict(img).mask
        _, b = plain.predict(img)
        inter += np.count_nonzero((a > 0) & (b > 0))
        union += np.count_nonzero((a > 0) | (b > 0))
    totals = {"stoneseg": [], "plain": []}
    for r in range(reps):
        t_rep = {"stoneseg": 0.0, "plain": 0.0}
        for i, img in enumerate(photos):
            order = ["stoneseg", "plain"] if (r + i) % 2 == 0 else ["plain", "stoneseg"]
            for name in order:
                t = time.perf_counter()
                seg.predict(img) if name == "stoneseg" else plain.predict(img)
                t_rep[name] += time.perf_counter() - t
        for k in totals:
            totals[k].append(t_rep[k])
        log.info(
            "e2e rep %d: stoneseg %.2f s, plain %.2f s", r + 1, t_rep["stoneseg"], t_rep["plain"]
        )
    mp = sum(p.shape[0] * p.shape[1] for p in photos) / 1e6
    return {
        "images": len(photos),
        "photo_megapixels": r3(mp),
        "stoneseg_mp_per_s": r3(mp / median(totals["stoneseg"])),
        "plain_mp_per_s": r3(mp / median(totals["plain"])),
        "speedup": r3(paired_ratio(totals["plain"], totals["stoneseg"])),
        "mask_iou_pooled": float(round(inter / union, 5)) if union else 1.0,
    }


def ablation(model_dir, work: np.ndarray, reps: int, try_compile: bool) -> dict:
    """One photo, network only: each step of StoneSeg's CPU path against the plain call."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model, info = load_model(model_dir)
    model.eval()
    h, w = work.shape[:2]
    x = torch.from_numpy(normalize(pad_to(work, round_up(h), round_up(w)), info.mean, info.std))[
        None
    ]
    xcl = x.contiguous(memory_format=torch.channels_last)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    folded = copy.deepcopy(model)
    for m in folded.modules():  # BatchNorm folded into the conv before it (eager aten convs)
        for a, b in (
            ("_expand_conv", "_bn0"),
            ("_depthwise_conv", "_bn1"),
            ("_project_conv", "_bn2"),
            ("_conv_stem", "_bn0"),
        ):
            conv, bn = getattr(m, a, None), getattr(m, b, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(m, a, fuse_conv_bn_eval(conv, bn))
                setattr(m, b, torch.nn.Identity())
        if isinstance(m, torch.nn.Sequential) and len(m) > 1:
            if isinstance(m[0], torch.nn.Conv2d) and isinstance(m[1], torch.nn.BatchNorm2d):
                m[0], m[1] = fuse_conv_bn_eval(m[0], m[1]), torch.nn.Identity()
    folded = folded.to(memory_format=torch.channels_last)
    from stoneseg_core.inference.onnx_export import onnx_network

    onnx = onnx_network(
        model
    )  # what Segmenter runs on the CPU (the hand-fused network's successor)
    threads = torch.get_num_threads()

    def run(net, inp, mode="inference", nthreads=None):
        def f():
            if nthreads:
                torch.set_num_threads(nthreads)
            try:
                ctx = torch.inference_mode() if mode == "inference" else torch.no_grad()
                with ctx:
                    return net(inp)
            finally:
                torch.set_num_threads(threads)

        return f

    cands = {
        "plain_nchw_no_grad": run(model, x, "no_grad"),
        "nchw_inference_mode": run(model, x),
        "channels_last": run(cl, xcl),
        "channels_last_bn_folded": run(folded, xcl),
        "onnxruntime": (lambda: onnx(x)) if onnx is not None else None,
    }
    if threads > 1:
        cands["plain_1_thread"] = run(model, x, "no_grad", 1)
    cands = {k: v for k, v in cands.items() if v is not None}
    compile_s = None
    if try_compile:
        import torch._inductor.config as ic

        ic.freezing = True
        compiled = torch.compile(copy.deepcopy(cl))
        t = time.perf_counter()
        with torch.inference_mode():
            compiled(xcl)
        compile_s = time.perf_counter() - t
        cands["torch_compile_inductor_freezing"] = run(compiled, xcl)
    with torch.no_grad():
        ref = model(x)
        diffs = {k: float(f"{float((f() - ref).abs().max()):.3g}") for k, f in cands.items()}
    times = interleaved(cands, reps, warmup=1)
    base = times["plain_nchw_no_grad"]
    out = {
        "input": list(x.shape),
        "ms": {k: round(median(v) * 1000, 1) for k, v in times.items()},
        "speedup_vs_plain": {k: r3(paired_ratio(base, v)) for k, v in times.items()},
        "max_abs_logit_diff": diffs,
    }
    if compile_s is not None:
        out["torch_compile_first_call_s"] = round(compile_s, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--model", help="a StoneSeg model folder (default: train a short one, cached)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per scenario")
    ap.add_argument("--images", type=int, default=0, help="photos to use (0: all)")
    ap.add_argument("--tiled-images", type=int, default=4, help="photos for the tiled scenario")
    ap.add_argument("--tiled-work-size", type=int, default=1024)
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--ablation-reps", type=int, default=7)
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument(
        "--try-compile", action="store_true", help="add torch.compile to the ablation (slow)"
    )
    args = ap.parse_args()
    setup(args)
    load_before = load_average()
    root = data_dir(args.data)
    model_dir = bench_model(args.model, root)
    pairs = labelled_pairs(root)
    if args.images:
        pairs = pairs[: args.images]
    photos = [read_rgb(p) for p, _ in pairs]
    log.info(
        "%d photos, model %s, torch threads %d", len(photos), model_dir, torch.get_num_threads()
    )

    seg = warm(Segmenter.load(model_dir))
    plain_model, info = load_model(model_dir)
    plain = Plain(plain_model, info, seg.config)
    result: dict = {"benchmark": "inference", "model": str(model_dir), "machine": machine()}

    works = [to_work_scale(p, seg.info.work_size) for p in photos]
    log.info("default scenario: working scale %d, tile %d", seg.info.work_size, seg.config.tile)
    result["default"] = compare_work_scale(seg, plain, works, args.reps)
    log.info("default: %s", result["default"])

    if args.tiled_images:
        tws = args.tiled_work_size
        tseg = warm(Segmenter.load(model_dir))
        tseg.info.work_size = tws
        tplain = Plain(plain_model, copy.copy(info), tseg.config)
        tplain.info.work_size = tws
        tworks = [to_work_scale(p, tws) for p in photos[: args.tiled_images]]
        log.info("tiled scenario: working scale %d, tile %d", tws, tseg.config.tile)
        result["tiled"] = {"work_size": tws, **compare_work_scale(tseg, tplain, tworks, args.reps)}
        log.info("tiled: %s", result["tiled"])

    if not args.no_end_to_end:
        result["end_to_end"] = compare_end_to_end(seg, plain, photos, max(1, args.reps))
        log.info("end to end: %s", result["end_to_end"])

    if not args.no_ablation:
        big = max(range(len(photos)), key=lambda i: photos[i].shape[0] * photos[i].shape[1])
        result["ablation"] = {
            "photo": pairs[big][0].name,
            **ablation(model_dir, works[big], args.ablation_reps, args.try_compile),
        }
        log.info("ablation: %s", result["ablation"])

    result["targets"] = {
        "speedup_ge_2.5": result["default"]["speedup"] >= 2.5,
        "mask_iou_ge_0.995": result["default"]["mask_iou_pooled"] >= 0.995,
    }
    result["load_average_before_after"] = [load_before, load_average()]
    emit(result)


if __name__ == "__main__":
    main()
