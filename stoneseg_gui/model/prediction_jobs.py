"""The model's prediction jobs (run on a worker): one photo, a big photo window by window,
every unlabelled photo; the prediction scales the user picks from, and the working scale in a
user's words."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tifffile

from stoneseg_core.inference.large import iter_segment_large
from stoneseg_core.inference.segmenter import Prediction, Segmenter
from stoneseg_core.io.images import read_image
from stoneseg_core.jobs.segment_folder import iter_segment_images
from stoneseg_core.model.config import InferenceConfig

# how the window's predictions bring a photo to the model's scale (InferenceConfig.scale),
# with the words the Model menu and the batch dialog show
PREDICTION_SCALES = (
    ("auto", "The model's own (stone-size models estimate each photo)"),
    ("stone-size", "By stone size (gravel frames, orthomosaics)"),
    ("long-side", "Each photo's long side"),
    ("training", "Same as the training photos (fixed camera)"),
)


def _segmenter(model_dir: Path, scale: str) -> Segmenter:
    """The model at the chosen prediction scale, with the threshold it chose for itself,
    measuring how unsure it is of each photo (``inference.uncertainty``: no pass more)."""
    segmenter = Segmenter.load(model_dir, InferenceConfig(scale=scale))
    segmenter.measure_uncertainty = True
    return segmenter


def predict_image_job(
    model_dir: Path, image_path: Path, scale: str = "auto"
) -> tuple[Path, Prediction]:
    """Predict one photo held whole (a photo of up to ``large.LARGE_PIXELS``)."""
    return image_path, _segmenter(model_dir, scale).predict(read_image(image_path))


def predict_large_image_job(
    model_dir: Path, image_path: Path, scale: str = "auto", should_stop=None
):
    """Predict a photo too big to read whole (over ``large.LARGE_PIXELS``: an orthomosaic)
    window by window (``large.iter_segment_large``) into a tiled TIFF in a temporary
    folder, then hand the 0/255 mask on (1 byte a pixel: what the editor holds anyway; no
    probability, which would take 4). Yields ``LargeEvent``; returns (path, Prediction), or
    None when stopped."""
    segmenter = _segmenter(model_dir, scale)
    with tempfile.TemporaryDirectory(prefix="stoneseg-predict-") as folder:
        out = Path(folder) / f"{image_path.stem}_mask.tif"
        summary = yield from iter_segment_large(segmenter, image_path, out, should_stop=should_stop)
        if summary.cancelled or summary.output is None:
            return None
        mask = tifffile.imread(out)
    return image_path, Prediction(
        probability=None,
        mask=mask,
        scale=summary.scale,
        min_stone_px=segmenter.speck_floor(summary.scale),
    )


def predict_all_job(
    model_dir: Path, images: list[Path], masks_dir: Path, scale: str = "auto", should_stop=None
):
    """Write a predicted mask for each photo (``iter_segment_images``); yields SegmentEvent."""
    segmenter = _segmenter(model_dir, scale)
    return (yield from iter_segment_images(segmenter, images, masks_dir, should_stop=should_stop))


def prediction_zoom(scale: float) -> str:
    """The working scale in a user's words: the photo at "1.5x" or "0.25x" of its size."""
    return f"{scale:.2g}x" if scale < 1 else f"{scale:.1f}x".replace(".0x", "x")
