"""``stoneseg segment``: write a 0/255 mask for every photo of a folder (PNG; GeoTIFF for a GeoTIFF)."""

from __future__ import annotations

import argparse

from stoneseg_core.cli.common import (
    AMP_CHOICES,
    AMP_HELP,
    DEVICES,
    EXIT_OK,
    EXIT_SOME_FAILED,
    MODEL_HELP,
    add_scale_arguments,
    add_shard_argument,
    inference_config,
    model_arg,
    probability_threshold,
    run_photo_loop,
)
from stoneseg_core.cli.engine import add_engine_arguments, ray_settings
from stoneseg_core.model.config import RUNTIMES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segment`` on the ``stoneseg`` sub-command parser."""
    s = subparsers.add_parser(
        "segment",
        help="write a 0/255 mask for every photo in INPUT_DIR (PNG; GeoTIFF for a georeferenced GeoTIFF)",
    )
    s.set_defaults(handler=run)
    s.add_argument("model_dir", metavar="MODEL_DIR", type=model_arg, help=MODEL_HELP)
    s.add_argument("input_dir", metavar="INPUT_DIR")
    s.add_argument("output_dir", metavar="OUTPUT_DIR")
    s.add_argument(
        "--threshold", type=probability_threshold, default=None, help="default: the model's own"
    )
    s.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    s.add_argument("--device", default="auto", choices=DEVICES)
    s.add_argument(
        "--amp",
        default="auto",
        choices=AMP_CHOICES,
        help=AMP_HELP,
    )
    s.add_argument(
        "--runtime",
        default="auto",
        choices=RUNTIMES,
        help="what runs the network: auto = ONNX Runtime on the CPU, PyTorch on a GPU; "
        "onnx-int8 = ONNX Runtime with the network in int8, calibrated on up to 8 of the photos "
        "the first time (faster; masks close to, not equal to, float32's: docs/benchmarks.md)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_scale_arguments(s)
    add_shard_argument(s)
    add_engine_arguments(s)
    return s


def run(args: argparse.Namespace) -> int:
    # heavy (torch, OpenCV): only when the command runs, see common.py
    import logging

    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.images import list_images
    from stoneseg_core.jobs.segment_folder import iter_segment_images
    from stoneseg_core.jobs.shard import take_shard

    settings = ray_settings(args)
    # what iter_segment_folder does, with the shard taken from the sorted list
    paths = take_shard(list_images(args.input_dir), args.shard)
    if args.shard is not None and not paths:
        print(f"Shard {args.shard[0]}/{args.shard[1]} has no photos; nothing to do.")
        return EXIT_OK
    # a photo over 50 MP is segmented window by window (large.py): its progress every 10 %
    large_log = logging.getLogger("stoneseg_core.inference.large")
    if not large_log.isEnabledFor(logging.INFO):
        large_log.setLevel(logging.INFO)
    if settings is not None:
        from stoneseg_core.jobs.ray_segment import iter_segment_ray

        gen = iter_segment_ray(
            args.model_dir,
            paths,
            args.output_dir,
            inference_config(args),
            settings,
            overwrite=args.overwrite,
        )
    else:
        segmenter = Segmenter.load(args.model_dir, inference_config(args))
        if args.runtime == "onnx-int8":
            segmenter.calibrate_int8(_calibration_photos(paths))
        gen = iter_segment_images(
            segmenter, paths, args.output_dir, overwrite=args.overwrite, geotiff_masks=True
        )
    summary = run_photo_loop(gen, len(paths))
    print(
        f"{summary.written} written, {summary.skipped} skipped (already there), {len(summary.failed)} failed "
        f"-> {args.output_dir}"
    )
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _calibration_photos(paths: list, count: int = 8):
    """Up to ``count`` photos spread over ``paths``, read one by one (unreadable ones skipped)."""
    from stoneseg_core.errors import StonesegError
    from stoneseg_core.io.images import read_image

    step = max(1, len(paths) // count)
    for p in paths[::step][:count]:
        try:
            yield read_image(p)
        except StonesegError:
            continue
