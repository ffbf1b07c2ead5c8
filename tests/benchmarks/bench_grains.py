"""How well does ``split_stones`` separate touching stones? Synthetic scenes with known instances.

Each scene is a pile of discs or ellipses of random size and orientation, dropped one by
one; a new stone may lie on top of earlier ones (hiding part of them) or under them, so many
stones touch or overlap, as in a photo of gravel. The truth is the visible part of every
stone. For a few minimum separations (and neck ratios) the script reports the stone-level
F1 at IoU >= 0.5 and the D50 error in psi (predicted - true, by count and by area), mean
over scenes, and prints one JSON line at the end.

    python tests/benchmarks/bench_grains.py [--scenes 6] [--size 512]

Not part of the test run: it takes tens of seconds and measures quality, not correctness.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.segmentation import expand_labels

from stoneseg_core.grains import d50_psi_error, match_instances, measure_stones, split_stones

log = logging.getLogger("bench_grains")

KINDS = {
    # name: (min b semi-axis, max b semi-axis, max aspect a/b, pile: overlapping or packed)
    "discs": (6, 30, 1.0, "pile"),
    "ellipses": (6, 30, 2.5, "pile"),
    "wide_range": (3, 45, 2.0, "pile"),
    "packed_ellipses": (6, 30, 2.5, "packed"),
}


def make_scene(rng: np.random.Generator, size: int, kind: str, n_try: int = 400) -> np.ndarray:
    """Instance labels of a dense, touching pile; visible fragments that are tiny or split are dropped.

    "pile": stones overlap (one hides part of another). "packed": stones never overlap;
    each is then grown by up to 3 pixels into the free ground, so neighbours meet along a
    short contact, like grains packed side by side.
    """
    bmin, bmax, amax, how = KINDS[kind]
    labels = np.zeros((size, size), np.int32)
    full_area: dict[int, int] = {}
    next_label = 1
    for _ in range(n_try):
        b = math.exp(rng.uniform(math.log(bmin), math.log(bmax)))
        a = b * rng.uniform(1.0, amax)
        r, c = rng.uniform(-0.1, 1.1, 2) * size
        rr, cc = ellipse(r, c, b, a, shape=labels.shape, rotation=rng.uniform(0, math.pi))
        if rr.size < 10:
            continue
        under = labels[rr, cc]
        covered = np.count_nonzero(under)
        if covered > (0 if how == "packed" else 0.25 * rr.size):
            continue  # would sit mostly on others: keep the pile one layer deep
        if how == "pile" and rng.random() < 0.5:  # on top: hides part of the stones below
            hit = np.unique(under[under > 0])
            if any(np.count_nonzero(under == h) > 0.3 * np.count_nonzero(labels == h) for h in hit):
                continue
            labels[rr, cc] = next_label
        else:  # underneath: only fills the free ground
            free = under == 0
            labels[rr[free], cc[free]] = next_label
        full_area[next_label] = rr.size
        next_label += 1
    if how == "packed":
        labels = expand_labels(labels, distance=3)
    # the visible part of each stone must be one piece and at least a third of the stone
    out = np.zeros_like(labels)
    k = 0
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        part = labels[sl] == lab
        comp, n = ndi.label(part)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        keep = comp == (np.argmax(sizes) + 1)
        if keep.sum() < 20 or keep.sum() < full_area[lab] / 3:
            continue
        k += 1
        out[sl][keep] = k
    return out


def touching_fraction(labels: np.ndarray) -> float:
    """Share of stones that share a border with another stone."""
    n = int(labels.max())
    if n == 0:
        return 0.0
    touching = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        touching.update(np.unique(a[sel]).tolist())
        touching.update(np.unique(b[sel]).tolist())
    return len(touching) / n


def synthetic_probability(labels: np.ndarray) -> np.ndarray:
    """A stand-in for a model that half-sees the seams: 0.55 on borders between stones, then blurred."""
    prob = (labels > 0).astype(np.float32)
    seam = np.zeros(labels.shape, bool)
    for sa, sb in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        a, b = labels[sa], labels[sb]
        sel = (a != b) & (a > 0) & (b > 0)
        seam[sa] |= sel
        seam[sb] |= sel
    prob[seam] = 0.55
    return np.clip(ndi.gaussian_filter(prob, 1.0), 0, 1) * (labels > 0)


def score(pred: np.ndarray, truth: np.ndarray) -> dict:
    s = match_instances(pred, truth, 0.5)
    ps, ts = measure_stones(pred), measure_stones(truth)
    out = {"f1": s.f1, "precision": s.precision, "recall": s.recall}
    for by in ("count", "area"):
        out[f"d50_psi_err_{by}"] = d50_psi_error(
            [x.b_axis_px for x in ps],
            [x.b_axis_px for x in ts],
            by,
            [x.area_px for x in ps],
            [x.area_px for x in ts],
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=6, help="scenes per kind (default 6)")
    ap.add_argument("--size", type=int, default=512, help="scene side in pixels (default 512)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    rng = np.random.default_rng(args.seed)
    scenes = {
        kind: [make_scene(rng, args.size, kind) for _ in range(args.scenes)] for kind in KINDS
    }
    settings = [("components", None, None, False)]
    settings += [("watershed", ms, 0.9, False) for ms in (3, 5, 7, 10, 15)]
    settings += [("watershed", 5, nr, False) for nr in (0.7, 0.8, 0.95, 1.0)]
    settings += [("watershed+prob", ms, 0.9, True) for ms in (3, 5, 7)]

    results: dict = {"scene_size": args.size, "scenes_per_kind": args.scenes, "kinds": {}}
    for kind, items in scenes.items():
        n_stones = [int(t.max()) for t in items]
        touching = float(np.mean([touching_fraction(t) for t in items]))
        log.info(
            "%s: %d scenes, %.0f stones per scene, %.0f%% of stones touch another",
            kind,
            len(items),
            np.mean(n_stones),
            100 * touching,
        )
        rows = []
        for method, ms, nr, use_prob in settings:
            start = time.perf_counter()
            per = []
            for truth in items:
                mask = truth > 0
                if method == "components":
                    pred = ndi.label(mask, structure=np.ones((3, 3)))[0]
                else:
                    prob = synthetic_probability(truth) if use_prob else None
                    pred = split_stones(mask, prob, min_separation_px=ms, neck_ratio=nr)
                per.append(score(pred, truth))
            row = {"method": method, "min_separation_px": ms, "neck_ratio": nr}
            for key in per[0]:
                vals = [p[key] for p in per if p[key] is not None]
                row[key] = round(float(np.mean(vals)), 4) if vals else None
                if key.startswith("d50"):
                    row[key + "_abs"] = round(float(np.mean(np.abs(vals))), 4) if vals else None
            row["seconds_per_scene"] = round((time.perf_counter() - start) / len(items), 3)
            rows.append(row)
            log.info(
                "  %-15s sep=%-4s neck=%-4s F1 %.3f  P %.3f  R %.3f  D50 psi err count %+.3f  area %+.3f  (%.2fs)",
                method,
                ms,
                nr,
                row["f1"],
                row["precision"],
                row["recall"],
                row["d50_psi_err_count"],
                row["d50_psi_err_area"],
                row["seconds_per_scene"],
            )
        results["kinds"][kind] = {
            "stones_per_scene": float(np.mean(n_stones)),
            "touching_fraction": round(touching, 3),
            "rows": rows,
        }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
