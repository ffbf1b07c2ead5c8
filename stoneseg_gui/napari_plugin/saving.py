"""A labels layer back into its project, with the project's own writers.

The mask (``labels > 0``) becomes ``masks/<stem>.png`` (0/255, written atomically by
``io.images.write_mask``); a layer of single stones also becomes ``instances/<stem>.png``
(``Project.save_instances``: 16-bit, ids renumbered 1..N, refused over labels the user put
there). A model's mask saved unreviewed stays marked as a prediction in ``stoneseg.json``,
so it is never trained on; a reviewed one is marked as the user's. Nothing is written while
a StoneSeg window holds the project (``io.project_lock``). No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.images import image_size, write_mask
from stoneseg_core.io.project import Project
from stoneseg_core.io.project_lock import ProjectLock


@dataclass(frozen=True)
class Saved:
    mask: Path
    instances: Path | None
    predicted: bool  # still marked as an unreviewed prediction

    def describe(self) -> str:
        parts = [f"Saved {self.mask.parent.name}/{self.mask.name}"]
        if self.instances is not None:
            parts.append(f"{self.instances.parent.name}/{self.instances.name}")
        note = " (marked as an unreviewed prediction)" if self.predicted else ""
        return " and ".join(parts) + note + "."


def save_labels(
    folder: str | Path, image: str | Path, labels, per_stone: bool, reviewed: bool = True
) -> Saved:
    """Write ``labels`` (H, W; 0 = ground) as the mask, and with ``per_stone`` as the
    per-stone labels, of the photo ``image`` of the project in ``folder``."""
    project = Project.open(folder)
    image = _photo_of(project, image)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise StonesegError(f"A mask is a 2-D labels layer; this one is {labels.shape}.")
    w, h = image_size(image)
    if labels.shape != (h, w):
        raise StonesegError(
            f"The layer is {labels.shape[1]}x{labels.shape[0]} pixels but {image.name} is "
            f"{w}x{h}: a mask must have exactly the size of its photo."
        )
    other = ProjectLock(project.data_dir).other_owner()
    if other is not None:
        raise StonesegError(
            f"{project.root.name} is open in {other.describe()}: save there, or close it first."
        )
    mask = np.where(labels > 0, np.uint8(255), np.uint8(0))
    write_mask(project.mask_path(image), mask)
    project.set_predicted(image.stem, not reviewed)
    instances = None
    if per_stone:
        if labels.min(initial=0) < 0:
            raise StonesegError("Stone labels cannot be negative.")
        instances = project.save_instances(image, labels.astype(np.int64, copy=False), mask)
    return Saved(project.mask_path(image), instances, not reviewed)


def _photo_of(project: Project, image: str | Path) -> Path:
    """The project's photo named by a path or a stem."""
    image = Path(image)
    for path in project.image_paths():
        if path == image or path.name == image.name or path.stem == image.name:
            return path
    raise StonesegError(f"{image.name} is not a photo of {project.root}.")


def photo_names(folder: str | Path) -> list[str]:
    """The names of a project's photos, in the app's order (none when it is no folder)."""
    try:
        return [p.name for p in Project.open(folder).image_paths()]
    except StonesegError:
        return []
