"""One photo's chain: the options (``GrainOptions``), the result (``ImageGrains``) and
``analyse_mask``, which splits a mask and measures its stones."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.distribution import DEFAULT_PERCENTILES, Weighting, check_weighting
from stoneseg_core.grains.measure import Stone, check_mm_per_px, measure_stones
from stoneseg_core.grains.split import split_stones


@dataclass(frozen=True)
class GrainOptions:
    """How stones are split, which are kept, and how the distribution is weighted.

    Every export states these, so a number in a paper can be traced to its settings.
    ``min_size_px``/``min_size_mm`` are minimum b-axes; ``weighting`` is the curve shown
    and plotted (exports give percentiles both by count and by area);
    ``use_probability`` lets the model's outputs guide the split: its probability deepens
    the seams, and so does the boundary map of a model trained with the boundary target
    (when there is one).
    Change one with ``options.replace(exclude_edge=True)``.
    """

    min_separation_px: int = 5
    neck_ratio: float = 0.9
    use_probability: bool = True
    exclude_edge: bool = False
    min_size_px: float = 0.0
    min_size_mm: float | None = None
    weighting: Weighting = "count"
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES

    def __post_init__(self) -> None:
        if self.min_separation_px < 1:
            raise StonesegError(
                f"The minimum separation must be at least 1 pixel, got {self.min_separation_px}."
            )
        if not 0 < self.neck_ratio <= 1:
            raise StonesegError(f"The neck ratio must be in (0, 1], got {self.neck_ratio}.")
        if self.min_size_px < 0:
            raise StonesegError(f"The minimum size cannot be negative, got {self.min_size_px} px.")
        if self.min_size_mm is not None and not self.min_size_mm >= 0:
            raise StonesegError(f"The minimum size cannot be negative, got {self.min_size_mm} mm.")
        check_weighting(self.weighting)
        if any(not 0 <= p <= 100 for p in self.percentiles):
            raise StonesegError("Percentiles must lie between 0 and 100.")
        object.__setattr__(self, "percentiles", tuple(self.percentiles))

    def replace(self, **changes: Any) -> GrainOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["size"] = "b-axis (minor axis of the ellipse with the same second moments)"
        return d


@dataclass(frozen=True)
class ImageGrains:
    """The stones of one photo, with the scale they were measured at."""

    name: str
    mm_per_px: float | None
    stones: tuple[Stone, ...] = field(default_factory=tuple)


def analyse_mask(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    mm_per_px: float | None = None,
    options: GrainOptions | None = None,
    name: str = "",
    boundary: np.ndarray | None = None,
    min_stone_px: float = 0.0,
) -> tuple[np.ndarray, ImageGrains]:
    """Split and measure one photo's mask: (labels, ImageGrains). What the GUI calls per photo.

    ``boundary``: the model's stone-boundary probability, if it has one (used only with
    ``options.use_probability``). ``min_stone_px``: the speck floor of a predicted mask
    (``Prediction.min_stone_px``): pieces under it are no stones; 0 for a mask a person made.
    """
    options = options or GrainOptions()
    check_mm_per_px(mm_per_px)
    prob = probability if options.use_probability else None
    bnd = boundary if options.use_probability else None
    labels = split_stones(
        mask,
        prob,
        options.min_separation_px,
        options.neck_ratio,
        boundary=bnd,
        min_stone_px=min_stone_px,
    )
    stones = measure_stones(
        labels, mm_per_px, options.exclude_edge, options.min_size_px, options.min_size_mm
    )
    return labels, ImageGrains(name, mm_per_px, tuple(stones))
