"""Inference per photo: the default encoder against the seed's efficientnet-b0, same process.

Each encoder's U-Net (random weights: the speed of a network does not depend on its
values) segments every dev photo through ``Segmenter.predict`` exactly as ``stoneseg
segment`` does (working scale, ONNX Runtime on the CPU, back to the
photo's size, threshold). Photos are decoded once beforehand; the encoders alternate photo
by photo, so background load hits them alike. Reported: seconds per photo and the speed
ratio b0 / candidate (> 1: the candidate is faster), per photo and as the median.

    python tests/benchmarks/bench_encoders.py [--reps 3] [--encoders tu-tf_efficientnet_lite0,...]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import logging

import torch
from _common import (
    add_common_args,
    data_dir,
    device,
    emit,
    interleaved,
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
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import ModelInfo, build_model
from stoneseg_core.model.pretrained import normalization

log = logging.getLogger("bench_encoders")
BASELINE = "efficientnet-b0"


def segmenter(encoder: str, work_size: int) -> Segmenter:
    torch.manual_seed(0)
    model = build_model(encoder, "none").eval()
    mean, std = normalization(encoder)
    info = ModelInfo(encoder=encoder, work_size=work_size, mean=mean, std=std)
    return Segmenter(model, info, InferenceConfig(device=str(device())))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--encoders", default=TrainConfig().encoder)
    ap.add_argument("--work-size", type=int, default=TrainConfig().work_size)
    args = ap.parse_args()
    setup(args)
    before = load_average()
    photos = [(p.stem, read_rgb(p)) for p, _ in labelled_pairs(data_dir(args.data))]
    names = [BASELINE, *[e.strip() for e in args.encoders.split(",") if e.strip()]]
    segs = {n: segmenter(n, args.work_size) for n in names}
    per_photo: dict[str, dict[str, float]] = {n: {} for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names[1:]}
    for stem, image in photos:
        times = interleaved(
            {n: (lambda s=segs[n], im=image: s.predict(im)) for n in names},
            reps=args.reps,
            warmup=1,
        )
        for n in names:
            per_photo[n][stem] = r3(median(times[n]))
        for n in names[1:]:
            ratios[n].append(paired_ratio(times[BASELINE], times[n]))
        log.info(
            "%s %dx%d: %s",
            stem,
            image.shape[1],
            image.shape[0],
            ", ".join(f"{n} {median(times[n]) * 1000:.0f} ms" for n in names),
        )
    summary = {
        n: {
            "mean_s_per_photo": r3(sum(per_photo[n].values()) / len(photos)),
            **(
                {"speed_vs_b0_median": r3(median(ratios[n]))} if n in ratios else {"baseline": True}
            ),
        }
        for n in names
    }
    emit(
        {
            "benchmark": "encoders",
            "machine": machine(),
            "work_size": args.work_size,
            "photos": len(photos),
            "per_photo_s": per_photo,
            "summary": summary,
            "targets": {
                f"{n}_no_slower_than_b0": summary[n]["speed_vs_b0_median"] >= 1.0 for n in names[1:]
            },
            "load_average_before_after": [before, load_average()],
        }
    )


if __name__ == "__main__":
    main()
