"""``stoneseg evaluate``: score a model on the labelled photos of a folder and print the scores
(the scoring itself is ``stoneseg_core.jobs.evaluate.iter_evaluation``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stoneseg_core.cli.common import (
    DEVICES,
    EXIT_OK,
    EXIT_SOME_FAILED,
    MODEL_HELP,
    add_scale_arguments,
    inference_config,
    model_arg,
    positive_float,
    probability_threshold,
)

# --instances without a folder: DATA_DIR/instances
DATA_INSTANCES = "\0DATA_DIR/instances"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the ``stoneseg`` sub-command parser."""
    e = subparsers.add_parser("evaluate", help="score a model on the labelled photos of DATA_DIR")
    e.set_defaults(handler=run)
    e.add_argument("model_dir", metavar="MODEL_DIR", type=model_arg, help=MODEL_HELP)
    e.add_argument("data_dir", metavar="DATA_DIR")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--threshold", type=probability_threshold, default=None)
    e.add_argument("--tta", action="store_true")
    add_scale_arguments(e)
    e.add_argument("--device", default="auto", choices=DEVICES)
    inst = e.add_mutually_exclusive_group()
    inst.add_argument(
        "--instances",
        nargs="?",
        const=DATA_INSTANCES,
        default=None,
        metavar="DIR",
        help="instance ground truth (DIR/<stem>.png, 16-bit, 0 = ground, one id per stone): "
        "adds stone precision/recall/F1 at IoU >= 0.5, F1 averaged over IoU 0.50-0.95, and the "
        "grain-size curve's errors at D16/D50/D84 in psi by count and by area. Without DIR: "
        "DATA_DIR/instances, which is also used when it exists and --instances is not given",
    )
    inst.add_argument(
        "--no-instances",
        action="store_true",
        help="pixel scores only, even when DATA_DIR/instances exists",
    )
    e.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="draw the pooled predicted and true grain-size curves (by count and by area, "
        "D16/D50/D84 marked) of the photos not trained on (all photos if every one was) into "
        "FILE: .png, .svg or .pdf; needs instance ground truth",
    )
    scale = e.add_mutually_exclusive_group()
    scale.add_argument(
        "--mm-per-px",
        type=positive_float,
        default=None,
        metavar="X",
        help="millimetres per pixel, for every photo (stone sizes in mm; else each photo's "
        "scale in the project, its georeference, or the project's folder scale)",
    )
    scale.add_argument(
        "--scale-csv",
        default=None,
        metavar="FILE",
        help="CSV with a header 'image,mm_per_px' and one row per photo",
    )
    return e


def _instances_dir(args: argparse.Namespace) -> Path | None:
    """The instance folder to score stones on: --instances DIR, DATA_DIR/instances for a bare
    --instances or (said on stderr) when that folder exists, none with --no-instances."""
    from stoneseg_core.io.project import INSTANCES_DIR
    from stoneseg_core.jobs.evaluate import default_instances_dir

    if args.instances == DATA_INSTANCES:
        return Path(args.data_dir) / INSTANCES_DIR
    if args.instances is not None:
        return Path(args.instances)
    if args.no_instances:
        return None
    found = default_instances_dir(args.data_dir)
    if found is not None:
        print(
            f"Scoring stones on the instance truth in {found} (--no-instances to skip).",
            file=sys.stderr,
        )
    return found


def run(args: argparse.Namespace) -> int:
    # heavy (torch, tqdm): only when the command runs, see common.py
    from tqdm import tqdm

    from stoneseg_core.grains import read_scale_csv
    from stoneseg_core.io.project import Project
    from stoneseg_core.jobs.evaluate import iter_evaluation

    n = len(Project.open(args.data_dir).labelled_pairs())
    gen = iter_evaluation(
        args.model_dir,
        args.data_dir,
        inference_config(args),
        instances_dir=_instances_dir(args),
        mm_per_px=args.mm_per_px,
        scales=read_scale_csv(args.scale_csv) if args.scale_csv else None,
        plot=args.plot,
    )
    with tqdm(total=n, unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            bar.update(1)
    for note in result.get("notes", []):
        print(note, file=sys.stderr)
    for f in result["failed"]:
        print(f"FAILED {f['image']}: {f['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{'image':<24} {'split':<11} {'accuracy':>9} {'IoU':>7} {'F1':>7} {'prec.':>7} {'recall':>7}"
        )
        for r in result["per_image"]:
            print(
                f"{r['image']:<24} {r['split']:<11} {r['accuracy']:9.4f} {r['iou']:7.4f} {r['f1']:7.4f} "
                f"{r['precision']:7.4f} {r['recall']:7.4f}"
            )
        if result["images"]:
            print(
                f"{'pooled':<24} {'all':<11} {result['accuracy']:9.4f} {result['iou']:7.4f} {result['f1']:7.4f} "
                f"{result['precision']:7.4f} {result['recall']:7.4f}"
            )
        nt = result["not_trained_on"]
        if nt["images"]:
            print(
                f"{'pooled':<24} {'not trained':<11} {nt['accuracy']:9.4f} {nt['iou']:7.4f} {nt['f1']:7.4f} "
                f"{nt['precision']:7.4f} {nt['recall']:7.4f}"
            )
        else:
            print("Every photo here was trained on: these figures say nothing about unseen photos.")
        if "stones" in result:
            _print_stones(result)
        if result.get("plot"):
            print(f"Grain-size curves drawn in {result['plot']}")
    return EXIT_SOME_FAILED if result["failed"] else EXIT_OK


def _num(v: float | None, width: int, fmt: str = ".4f") -> str:
    return ("-" if v is None else format(v, fmt)).rjust(width)


def _stone_row(name: str, split: str, st: dict[str, Any]) -> str:
    errs = "".join(_num(st.get(f"d{p}_psi_error"), 7, "+.3f") for p in (16, 50, 84))
    return (
        f"{name:<24} {split:<11} {st.get('n_pred', 0):>5} {st.get('n_true', 0):>5} "
        f"{st['precision']:6.3f} {st['recall']:6.3f} {st['f1']:6.3f} "
        f"{_num(st.get('f1_50_95'), 9, '.3f')}{errs}"
    )


def _print_stones(result: dict[str, Any]) -> None:
    """The stone figures as a short block under the pixel table."""
    rows = [r for r in result["per_image"] if "stones" in r]
    print()
    print(f"Stones, against the instance truth in {result['instances']}:")
    print(
        "  prec./recall/F1 at IoU >= 0.5, F1 .5-.95 averaged over IoU 0.50, 0.55, ..., 0.95;\n"
        "  dD16/dD50/dD84: the grain-size curve's error psi(predicted) - psi(true), by count"
    )
    if not rows:
        print("No photo had an instance mask there (<stem>.png): no stone figures.")
        return
    print(
        f"{'image':<24} {'split':<11} {'found':>5} {'true':>5} {'prec.':>6} {'recall':>6} "
        f"{'F1':>6} {'F1 .5-.95':>9}{'dD16':>7}{'dD50':>7}{'dD84':>7}"
    )
    for r in rows:
        print(_stone_row(r["image"], r["split"], r["stones"]))
    pools = [("all", result["stones"])]
    nt = result["not_trained_on"].get("stones", {})
    if nt.get("n_images"):
        pools.append(("not trained", nt))
    for label, st in pools:
        print(_stone_row(f"pooled ({st['n_images']} photos)", label, st))
    for label, st in pools:
        errs = "".join(_num(st.get(f"d{p}_psi_error_area"), 7, "+.3f") for p in (16, 50, 84))
        print(f"{'pooled, by area':<24} {label:<11} {'':>42}{errs}")
    for label, st in pools:
        unit = st.get("unit", "px")
        pred = " / ".join(_num(st.get(f"d{p}_pred_{unit}"), 0, ".3g") for p in (16, 50, 84))
        true = " / ".join(_num(st.get(f"d{p}_true_{unit}"), 0, ".3g") for p in (16, 50, 84))
        print(f"D16 / D50 / D84 by count, {label} ({unit}): predicted {pred}, true {true}")
    missing = len(result["per_image"]) - len(rows)
    if missing:
        print(f"({missing} scored photo{'s' if missing != 1 else ''} without an instance mask)")
