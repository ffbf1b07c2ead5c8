"""The stones a label file holds, in photo pixels, before they are painted: what every reader
gives the importer, whatever the format.

Coordinates are pixel *corners* (x = column, y = row; pixel (r, c) is the square from (c, r)
to (c + 1, r + 1)), as StoneSeg's outlines (``grains.outlines``) and the georeference use them,
and as labelme and CVAT show their points over the photo. A stone is painted on the pixels
whose centre lies inside it (``raster``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Part:
    """One polygon: an exterior ring and the rings of its holes, each a (k, 2) float array of
    (x, y) pixel-corner coordinates (closing vertex repeated or not)."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class StoneShape:
    """One stone as a file gives it, in one of three ways:

    - ``parts``: polygons, the stone being their union (COCO polygons, labelme shapes,
      GeoJSON and GeoPackage geometries);
    - ``runs``: the run lengths of a COCO RLE over a whole photo of ``runs_size`` (height,
      width) (``rle``);
    - ``bitmap``: a bool crop whose top-left pixel is ``origin`` (row, col) of the photo
      (labelme's mask shapes).

    ``where`` names it in the report ("annotation 17"); stones of one ``group`` (labelme's
    group_id) are one stone.
    """

    where: str
    parts: tuple[Part, ...] = ()
    runs: np.ndarray | None = None
    runs_size: tuple[int, int] | None = None
    bitmap: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    group: object = None


@dataclass
class PhotoShapes:
    """The stones a file gives for one photo.

    ``name``: the photo as the file names it (a file name, perhaps with folders, or a stem);
    ``size``: the (height, width) the file says the photo has, checked against the photo;
    ``labelled``: the file says the photo was labelled even when it has no stone (StoneSeg's
    exports say so, so a photo without stones comes back as an empty mask); ``labels``: a
    whole label image instead of stones (CVAT's masks), 0 = ground; ``mask_only``: the file
    tells stone from ground but not one stone from the next (no instances/ written);
    ``source``: the file, for the report; ``other_names``: names to try when ``name`` is no
    photo of the project (a labelme JSON's own name).
    """

    name: str
    stones: list[StoneShape] = field(default_factory=list)
    size: tuple[int, int] | None = None
    labelled: bool = False
    labels: np.ndarray | None = None
    mask_only: bool = False
    source: str = ""
    other_names: tuple[str, ...] = ()


def ring_array(points, what: str = "polygon") -> np.ndarray:
    """A ring's points ([[x, y], ...] or a flat [x0, y0, x1, y1, ...]) as a (k, 2) float array;
    ValueError saying what is wrong (fewer than three points, not numbers, not finite)."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"its {what} holds values that are not numbers") from None
    if arr.ndim == 1:
        if arr.size % 2:
            raise ValueError(f"its {what} has an odd number of coordinates")
        arr = arr.reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"its {what} is not a list of (x, y) points")
    if len(arr) < 3:
        raise ValueError(f"its {what} has {len(arr)} point(s), fewer than three")
    if not np.isfinite(arr).all():
        raise ValueError(f"its {what} has coordinates that are not finite numbers")
    return arr


BACKGROUND_LABELS = ("background", "_background_")  # never stones unless named


def is_stone_label(name: str, labels: Sequence[str] | None) -> bool:
    """Whether a label or category ``name`` is a stone: one of ``labels`` (any case) when
    given, else any label but ``BACKGROUND_LABELS``."""
    if labels:
        return name.lower() in {w.lower() for w in labels}
    return name.lower() not in BACKGROUND_LABELS
