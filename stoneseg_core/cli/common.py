"""What the ``stoneseg`` sub-commands share: exit codes, argument types, the photo loop.

The command modules import at their top only what building the parser needs (config,
errors, this module). The rest of the core -- torch (train, predict, evaluate, model),
numpy, OpenCV and SciPy (imageio, project, grains) -- and tqdm are imported inside the
``run`` handlers: ``stoneseg --help`` and ``stoneseg gui`` then start in a fraction of a
second instead of loading seconds of libraries they never use.
"""

from __future__ import annotations

import argparse
import math
import sys

from stoneseg_core.errors import ModelFileError
from stoneseg_core.jobs.shard import parse_shard
from stoneseg_core.model.config import INFERENCE_SCALES, InferenceConfig

EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 2

DEVICES = ["auto", "cpu", "cuda"]
AMP_CHOICES = ["auto", "off", "bf16", "fp16"]
AMP_HELP = "mixed precision: auto (fp32 on CUDA and on CPUs without native bf16), off, bf16, fp16"


# --------------------------------------------------------------------------- argument types


MODEL_HELP = "a model folder, or stones: the stone model installed with StoneSeg"


def model_arg(text: str):
    """A model folder, or ``stones``: the stone model installed with StoneSeg."""
    from stoneseg_core.model.stone_model import resolve_model_arg

    try:
        return resolve_model_arg(text)
    except ModelFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction_arg(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def probability_threshold(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def threshold_or_auto(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else probability_threshold(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SHARD_HELP = (
    "process only shard K of N of INPUT_DIR's photos (photo i in sorted order goes to shard "
    "(i mod N)+1): for array jobs, e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT "
    "with --array=1-N"
)


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """--scale and --stone-mm: how each photo's working scale is found (InferenceConfig)."""
    parser.add_argument(
        "--scale",
        choices=INFERENCE_SCALES,
        default="auto",
        help="working scale of each photo: auto = the model's policy; stone-size = each "
        "photo resized so that its typical stone has the model's standard size (estimated "
        "by the network, or from --stone-mm and the photo's mm/px: for full-frame gravel "
        "photos and orthomosaics); long-side = the photo's long side at the model's "
        "working size; training = the training photos' scale (a fixed camera)",
    )
    parser.add_argument(
        "--stone-mm",
        type=positive_float,
        default=None,
        help="typical stone size in mm; with a photo's mm/px (a GeoTIFF's georeference, or "
        "grains' --mm-per-px) it sets a stone-size model's scale instead of estimating it",
    )


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", type=_shard, default=None, metavar="K/N", help=SHARD_HELP)


# ---------------------------------------------------------------------------------- helpers


def inference_config(args: argparse.Namespace) -> InferenceConfig:
    """The model's own threshold unless ``--threshold`` overrides it, with --tta/--device/--amp."""
    return InferenceConfig(
        threshold=args.threshold,
        tta=args.tta,
        device=args.device,
        amp=getattr(args, "amp", "auto"),
        runtime=getattr(args, "runtime", "auto"),
        scale=getattr(args, "scale", "auto"),
        stone_mm=getattr(args, "stone_mm", None) or 0.0,
    )


def run_photo_loop(gen, total: int):
    """Drive a folder generator (events with .status/.image/.message) with a progress bar.

    Each failure is named on stderr as it happens; returns the generator's summary.
    """
    from tqdm import tqdm  # 0.25 s to import: only when a command runs

    with tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            bar.update(1)
            if event.status == "failed":
                bar.write(f"FAILED {event.image}: {event.message}", file=sys.stderr)
