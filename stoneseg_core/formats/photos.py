"""The project's side of an import or export: which photo a file means, its size and
georeference, its scale, and the stones it has.

A file names a photo by its file name (folders before it are ignored: COCO's ``file_name``
is often ``images/x.jpg``, labelme's ``imagePath`` ``../images/x.jpg``) or by its stem; the
name is matched first, then the stem, without regard to case.

The stones exported for a photo (``photo_stones``): its per-stone labels (``instances/``)
where it has some that fit its mask, else its mask split into stones as the Grains panel and
``stoneseg grains`` split it (``split="grains"``, the default options), or its mask's
connected pieces (``split="pieces"``, 8-connected, as training reads a mask without labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.analyse import GrainOptions
from stoneseg_core.grains.scale import project_scales
from stoneseg_core.grains.split import split_stones
from stoneseg_core.io.geo import Georeference, georeference_or_none, is_tiff
from stoneseg_core.io.images import (
    image_size,
    instances_disagreement,
    read_instance_labels,
    read_mask,
)
from stoneseg_core.io.project import Project

SPLITS = ("grains", "pieces")


def plain_name(name: str) -> str:
    """The file name a label file gives, without its folders (either slash)."""
    return str(name).replace("\\", "/").rstrip("/").split("/")[-1]


class PhotoIndex:
    """The photos of a project, found by the names label files give them; their sizes and
    georeferences read once each (headers only)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.photos = project.image_paths()
        self.by_name = {p.name.lower(): p for p in self.photos}
        self.by_stem: dict[str, Path] = {}
        for p in self.photos:
            self.by_stem.setdefault(p.stem.lower(), p)
        self._sizes: dict[Path, tuple[int, int]] = {}
        self._georefs: dict[Path, Georeference | None] = {}

    def find(self, name: str) -> Path | None:
        """The photo a file means by ``name``; None when the project has none of that name."""
        base = plain_name(name).lower()
        if not base:
            return None
        return self.by_name.get(base) or self.by_stem.get(base) or self.by_stem.get(Path(base).stem)

    def size(self, photo: Path) -> tuple[int, int]:
        """(height, width) of ``photo`` in display orientation."""
        if photo not in self._sizes:
            w, h = image_size(photo)
            self._sizes[photo] = (h, w)
        return self._sizes[photo]

    def georef(self, photo: Path) -> Georeference | None:
        if photo not in self._georefs:
            self._georefs[photo] = georeference_or_none(photo) if is_tiff(photo) else None
        return self._georefs[photo]

    def georeferenced(self) -> list[Path]:
        return [p for p in self.photos if is_tiff(p) and self.georef(p) is not None]


def photo_scale(
    project: Project, photo: Path, georef: Georeference | None
) -> tuple[float | None, str | None]:
    """(mm per pixel or None, where it came from) as the grains take it: the scale the app
    keeps for the photo, else its georeference's, else the project folder's."""
    own, folder = project_scales(project.state)
    if photo.stem in own:
        return own[photo.stem], "project"
    if georef is not None:
        mm = georef.mm_per_px()[0]
        if mm is not None:
            return mm, "georeference"
    if folder is not None:
        return folder, "project folder"
    return None, None


@dataclass
class PhotoStones:
    """A photo's stones to export: labels 1..N (0 = ground) and where they came from."""

    photo: Path
    labels: np.ndarray
    count: int
    source: str  # "instances", "grains split" or "pieces"
    notes: list[str]


def photo_stones(project: Project, photo: Path, split: str = "grains") -> PhotoStones:
    """The stones of ``photo`` (see the module's docstring); StonesegError when its mask
    cannot be read. Labels that stray from the mask are cut to it, mask pixels without a
    stone become stones of their own (pieces), and the notes say so."""
    if split not in SPLITS:
        raise StonesegError(f"Unknown split {split!r}: one of {', '.join(SPLITS)}.")
    mask = read_mask(project.mask_path(photo)) > 0
    notes: list[str] = []
    labels, source = None, "instances"
    path = project.instances_path(photo)
    if path.is_file():
        try:
            labels = read_instance_labels(path)
            why = instances_disagreement(labels, mask)
        except StonesegError as exc:
            why = str(exc)
        if why is not None:
            notes.append(f"instances/{path.name} does not fit the mask ({why}); split instead")
            labels = None
    if labels is None:
        labels, source = split_mask(mask, split), "grains split" if split == "grains" else "pieces"
    else:
        labels = np.where(mask, labels, 0).astype(np.int32)
        loose = mask & (labels == 0)
        if loose.any():
            extra = pieces_of(loose)
            notes.append(
                f"{int(loose.sum())} mask pixel(s) without a stone in instances/ exported as "
                f"{int(extra.max())} stone(s) of their own"
            )
            labels = np.where(extra > 0, extra + int(labels.max()), labels)
    labels, n = renumbered(labels)
    return PhotoStones(photo, labels, n, source, notes)


def pieces_of(mask: np.ndarray) -> np.ndarray:
    """The 8-connected pieces of a bool mask as int32 labels 1..N."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels.astype(np.int32)


def split_mask(mask: np.ndarray, split: str) -> np.ndarray:
    if split == "pieces":
        return pieces_of(mask)
    options = GrainOptions()
    return split_stones(
        np.where(mask, 255, 0).astype(np.uint8),
        None,
        options.min_separation_px,
        options.neck_ratio,
    )


def renumbered(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels as int32 ids 1..N in the order of the old ids, N)."""
    labels = np.asarray(labels)
    top = int(labels.max(initial=0))
    present = np.bincount(labels.ravel().astype(np.int64), minlength=top + 1) > 0
    present[0] = False
    n = int(present.sum())
    lut = np.zeros(top + 1, np.int32)
    lut[present] = np.arange(1, n + 1, dtype=np.int32)
    return lut[labels], n
