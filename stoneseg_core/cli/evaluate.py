"""``stoneseg evaluate``: score a model on the labelled photos of a folder and print the scores
(the scoring itself is ``stoneseg_core.evaluate.iter_evaluation``)."""

from __future__ import annotations

import argparse
import json
import sys

from .common import (
    DEVICES,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _threshold,
    add_scale_arguments,
    inference_config,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the ``stoneseg`` sub-command parser."""
    e = subparsers.add_parser("evaluate", help="score a model on the labelled photos of DATA_DIR")
    e.set_defaults(handler=run)
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("data_dir", metavar="DATA_DIR")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--threshold", type=_threshold, default=None)
    e.add_argument("--tta", action="store_true")
    add_scale_arguments(e)
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument(
        "--instances",
        default=None,
        metavar="DIR",
        help="instance ground truth (DIR/<stem>.png, one label per stone): adds stone-level "
        "precision/recall/F1 at IoU >= 0.5 and the D50 error in psi",
    )
    return e


def run(args: argparse.Namespace) -> int:
    # heavy (torch, tqdm): only when the command runs, see common.py
    from tqdm import tqdm

    from ..evaluate import iter_evaluation
    from ..project import Project

    n = len(Project.open(args.data_dir).labelled_pairs())
    gen = iter_evaluation(
        args.model_dir, args.data_dir, inference_config(args), instances_dir=args.instances
    )
    with tqdm(total=n, unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            bar.update(1)
    for f in result["failed"]:
        print(f"FAILED {f['image']}: {f['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{'image':<24} {'split':<10} {'accuracy':>9} {'IoU':>7} {'F1':>7} {'prec.':>7} {'recall':>7}"
        )
        for r in result["per_image"]:
            print(
                f"{r['image']:<24} {r['split']:<10} {r['accuracy']:9.4f} {r['iou']:7.4f} {r['f1']:7.4f} "
                f"{r['precision']:7.4f} {r['recall']:7.4f}"
            )
        if result["images"]:
            print(
                f"{'pooled':<24} {'all':<10} {result['accuracy']:9.4f} {result['iou']:7.4f} {result['f1']:7.4f} "
                f"{result['precision']:7.4f} {result['recall']:7.4f}"
            )
        nt = result["not_trained_on"]
        if nt["images"]:
            print(
                f"{'pooled':<24} {'not trained':<10} {nt['accuracy']:9.4f} {nt['iou']:7.4f} {nt['f1']:7.4f} "
                f"{nt['precision']:7.4f} {nt['recall']:7.4f}"
            )
        else:
            print("Every photo here was trained on: these figures say nothing about unseen photos.")
        if "stones" in result:
            st = result["stones"]
            print(
                f"stones (IoU >= 0.5): precision {st['precision']:.4f}  recall {st['recall']:.4f}  "
                f"F1 {st['f1']:.4f}  D50 error {st.get('d50_psi_error')} psi"
            )
    return EXIT_SOME_FAILED if result["failed"] else EXIT_OK
