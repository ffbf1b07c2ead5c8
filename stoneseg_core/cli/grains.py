"""``stoneseg grains``: segment a folder, split the stones, measure them, write the tables."""

from __future__ import annotations

import argparse

from stoneseg_core.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_scale_arguments,
    add_shard_argument,
    non_negative_float,
    positive_float,
    run_photo_loop,
)
from stoneseg_core.cli.engine import add_engine_arguments, ray_settings
from stoneseg_core.errors import StonesegError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``grains`` on the ``stoneseg`` sub-command parser."""
    p = subparsers.add_parser(
        "grains",
        help="measure every stone in the photos of INPUT_DIR and write the grain-size distribution",
        description=(
            "Segment every photo of INPUT_DIR, split touching stones, measure each stone (b-axis = grain size) "
            "and write OUTPUT_DIR/<photo>_instances.png (16-bit labels), <photo>_stones.csv, stones_pooled.csv "
            "and percentiles.json (D10, D16, D50, D84, D90 by count and by area, in mm and psi). Without a scale, "
            "sizes are in pixels. With --shard K/N the pooled files are stones_pooled.shard-K-of-N.csv and "
            "percentiles.shard-K-of-N.json, so array jobs sharing OUTPUT_DIR never overwrite each other's. "
            "A mask over 50 MP is split window by window (bounded memory) and its labels written as a "
            "tiled <photo>_instances.tif."
        ),
    )
    # optional only for --pool-only, which takes none of them (run checks)
    p.add_argument("model_dir", metavar="MODEL_DIR", nargs="?")
    p.add_argument("input_dir", metavar="INPUT_DIR", nargs="?")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", nargs="?")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--mm-per-px",
        type=positive_float,
        default=None,
        metavar="X",
        help="millimetres per pixel, for every photo",
    )
    scale.add_argument(
        "--scale-csv",
        default=None,
        metavar="FILE",
        help="CSV with a header 'image,mm_per_px' and one row per photo",
    )
    p.add_argument(
        "--exclude-edge", action="store_true", help="leave out stones cut by the photo's edge"
    )
    p.add_argument(
        "--min-size",
        type=non_negative_float,
        default=None,
        metavar="MM",
        help="leave out stones whose b-axis is below MM millimetres (needs a scale)",
    )
    add_scale_arguments(p)
    add_shard_argument(p)
    add_engine_arguments(p)
    p.add_argument(
        "--pool-only",
        default=None,
        metavar="OUTPUT_DIR",
        help="segment nothing: pool the <photo>_stones.csv tables already in OUTPUT_DIR (e.g. "
        "written by --shard array jobs) into stones_pooled.csv and percentiles.json; "
        "stoneseg grains --pool-only OUTPUT_DIR",
    )
    p.set_defaults(handler=run, grains_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stoneseg grains``; raises StonesegError for a user's mistake (printed as one line)."""
    # heavy (torch, SciPy, OpenCV): only when the command runs, see common.py
    from stoneseg_core.grains import GrainOptions, read_scale_csv
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.geo import is_tiff
    from stoneseg_core.io.images import list_images
    from stoneseg_core.jobs.grains_folder import iter_grains_folder
    from stoneseg_core.jobs.shard import take_shard
    from stoneseg_core.model.config import InferenceConfig

    given = [a for a in (args.model_dir, args.input_dir, args.output_dir) if a is not None]
    if args.pool_only is not None:
        if given:
            args.grains_parser.error("--pool-only OUTPUT_DIR takes no other folder")
        return _pool_only(args.pool_only)
    if len(given) < 3:
        args.grains_parser.error("MODEL_DIR, INPUT_DIR and OUTPUT_DIR are required")
    settings = ray_settings(args)
    photos = list_images(args.input_dir)
    if (
        args.min_size is not None
        and args.mm_per_px is None
        and args.scale_csv is None
        and not any(is_tiff(p) for p in photos)  # may be georeferenced
    ):
        raise StonesegError(
            "--min-size is in millimetres: give the scale with --mm-per-px or --scale-csv."
        )
    scales = read_scale_csv(args.scale_csv) if args.scale_csv else None
    options = GrainOptions(exclude_edge=args.exclude_edge, min_size_mm=args.min_size)
    if not photos:  # say so before spending seconds on loading the model
        raise StonesegError(f"No photos in {args.input_dir}.")
    total = len(take_shard(photos, args.shard))
    if total == 0:  # more array jobs than photos: this one has nothing to do
        print(f"Shard {args.shard[0]}/{args.shard[1]} has no photos; nothing to do.")
        return EXIT_OK
    # the model's own threshold, the scale options given: the same for either engine
    config = InferenceConfig(scale=args.scale, stone_mm=args.stone_mm or 0.0)
    folders = (args.input_dir, args.output_dir, options)
    common = {"mm_per_px": args.mm_per_px, "scales": scales, "shard": args.shard}
    if settings is not None:
        from stoneseg_core.jobs.ray_grains import iter_grains_ray

        gen = iter_grains_ray(args.model_dir, *folders, **common, settings=settings, config=config)
    else:
        gen = iter_grains_folder(Segmenter.load(args.model_dir, config), *folders, **common)
    summary = run_photo_loop(gen, total)
    pooled = summary.report["pooled"]
    block = pooled[f"by_{options.weighting}"]
    unit, d = block["unit"], _d16_d50_d84(block)
    print(
        f"{len(summary.results)} photos measured, {len(summary.failed)} failed; "
        f"{pooled['stones_found']} stones, {block['n_stones']} kept "
        f"(by {options.weighting}, {unit}): {d} -> {args.output_dir}"
    )
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _pool_only(output_dir: str) -> int:
    from stoneseg_core.grains.pool import pool_folder  # SciPy, OpenCV: only when the command runs

    report = pool_folder(output_dir)
    pooled = report["pooled"]
    block = pooled[f"by_{report['options']['weighting']}"]
    unit, d = block["unit"], _d16_d50_d84(block)
    print(
        f"{pooled['images']} photos pooled, {len(report['failed'])} failed in the shards; "
        f"{pooled['stones_found']} stones, {block['n_stones']} kept ({unit}): {d} -> "
        f"{output_dir}/percentiles.json"
    )
    return EXIT_OK


def _d16_d50_d84(block: dict) -> str:
    """'D16 x  D50 y  D84 z' of one weighting's percentile block, in its unit."""
    unit = block["unit"]
    return "  ".join(
        f"D{p:g} {_fmt(block.get(f'D{p:g}_{unit}'))}{_ci(block.get(f'D{p:g}_{unit}_ci95'))}"
        for p in (16, 50, 84)
    )


def _ci(interval) -> str:
    """' (low-high)', the bootstrap interval beside a percentile; '' without one."""
    if not interval or any(v is None for v in interval):
        return ""
    return f" ({interval[0]:.3g}-{interval[1]:.3g})"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
