"""One pass of a network over an image at working scale: whole, or tile by tile (no torch).

An image no larger than one tile goes through the network in one piece, padded to the
network's multiple of 32. A larger one is cut into overlapping tiles (``tiling``: where they
go, how they blend), forwarded a few at a time and blended with a weight that falls off
towards each tile's edge, so no seams. The windowed segmentation of ``large`` runs the same
``add_tiles`` steps on a band of the photo; a network on a GPU runs the same tiles with the
photo kept on the device (``networks.pytorch.TorchNetwork.tiles_on_device``).

``forward``, here: a network's ``probabilities`` (``networks.Network``), (N, 3, H, W)
normalised float32 -> (N, C, H, W) probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.tiling import blend_window, pad_to, round_up, tile_starts
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.info import ModelInfo
from stoneseg_core.model.scale import normalize

Forward = Callable[[np.ndarray], np.ndarray]


def tile_corners(height: int, width: int, config: InferenceConfig) -> list[tuple[int, int]]:
    """(y, x) of the top-left corner of every tile over a padded image, row by row."""
    ys = tile_starts(height, config.tile, config.overlap)
    xs = tile_starts(width, config.tile, config.overlap)
    return [(y, x) for y in ys for x in xs]


def tile_batches(
    coords: list[tuple[int, int]],
    config: InferenceConfig,
    should_stop: Callable[[], bool] | None,
) -> Iterator[list[tuple[int, int]]]:
    """``coords`` in batches of ``config.batch_tiles``; "Cancelled." when asked to stop."""
    for i in range(0, len(coords), config.batch_tiles):
        if should_stop is not None and should_stop():
            raise StonesegError("Cancelled.")
        yield coords[i : i + config.batch_tiles]


def whole_image(forward: Forward, work: np.ndarray, info: ModelInfo) -> np.ndarray:
    """(C, H, W) for an image no larger than a tile: one pass, padded to a multiple of 32."""
    h, w = work.shape[:2]
    x = normalize(pad_to(work, round_up(h), round_up(w)), info.mean, info.std)[None]
    return forward(x)[0, :, :h, :w]


def add_tiles(
    forward: Forward,
    image: np.ndarray,
    coords: Sequence[tuple[int, int]],
    acc: np.ndarray,
    norm: np.ndarray,
    weight: np.ndarray,
    tile: int,
    info: ModelInfo,
) -> None:
    """Forward the ``tile``-sized tiles of ``image`` at ``coords`` ((y, x) of their top-left
    corners) as one batch and add each probability times ``weight`` into ``acc`` (C, H, W) and
    ``weight`` into ``norm`` (H, W) at the same place: one step of the tiled pass."""
    batch = np.stack(
        [normalize(image[y : y + tile, x : x + tile], info.mean, info.std) for y, x in coords]
    )
    probs = forward(batch)
    for (y, x), p in zip(coords, probs):
        acc[:, y : y + tile, x : x + tile] += p * weight
        norm[y : y + tile, x : x + tile] += weight


def tiled(
    forward: Forward,
    padded: np.ndarray,
    config: InferenceConfig,
    info: ModelInfo,
    should_stop: Callable[[], bool] | None,
) -> np.ndarray:
    """(C, H, W) for an image at least a tile on each side, tile by tile, blended."""
    ph, pw = padded.shape[:2]
    weight = blend_window(config.tile, config.overlap)
    acc = np.zeros((info.classes, ph, pw), np.float32)
    norm = np.zeros((ph, pw), np.float32)
    for batch in tile_batches(tile_corners(ph, pw, config), config, should_stop):
        add_tiles(forward, padded, batch, acc, norm, weight, config.tile, info)
    return acc / np.maximum(norm, 1e-6)
