"""Writing an imported photo's labels into the project: ``masks/<stem>.png`` (0/255) and,
when the file told the stones apart, ``instances/<stem>.png`` (16-bit, ids 1..N).

Nothing is overwritten unless asked (``existing`` names what is in the way), and nothing
already made is lost: both files are written whole beside their places first
(``io.staged.StagedFile``) and only then moved over the old ones, one right after the other,
so a failure or a crash leaves the old pair or the new one. The instances written are the
user's own (imported) labels: the app never replaces or removes them (see
``Project.wrote_instances``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.io import MAX_INSTANCES_PNG, write_instance_png
from stoneseg_core.io.images import describe_os_error, make_output_dir, write_mask
from stoneseg_core.io.project import Project
from stoneseg_core.io.staged import StagedFile


def existing(project: Project, photo: Path) -> list[Path]:
    """The photo's label files that exist: an import would replace them (an import that
    writes only a mask still counts the instances, which would no longer fit it)."""
    paths = [project.mask_path(photo), project.instances_path(photo)]
    return [p for p in paths if p.exists()]


def write_labels(
    project: Project, photo: Path, labels: np.ndarray, with_instances: bool
) -> Path | None:
    """Write a photo's mask (stone where ``labels`` > 0) and, ``with_instances``, its labels,
    as one step (see the module's docstring); StonesegError when it cannot. Without
    instances, an instances file left there from before (it would no longer fit the new
    mask) is renamed ``<stem>.before-import-<date>-<time>.png``, which no photo's name
    matches; returns its new path, else None."""
    labels = np.asarray(labels)
    if with_instances and int(labels.max(initial=0)) > MAX_INSTANCES_PNG:
        raise StonesegError(
            f"{int(labels.max())} stones do not fit a 16-bit PNG (at most {MAX_INSTANCES_PNG})"
        )
    for folder in (project.masks_dir, project.instances_dir if with_instances else None):
        if folder is not None:
            make_output_dir(folder)
    staged: list[StagedFile] = []
    try:
        mask_file = StagedFile(project.mask_path(photo))
        staged.append(mask_file)
        write_mask(mask_file.temporary, np.where(labels > 0, 255, 0).astype(np.uint8))
        if with_instances:
            labels_file = StagedFile(project.instances_path(photo))
            staged.append(labels_file)
            write_instance_png(labels_file.temporary, labels)
        for item in staged:  # both whole on disk: now moved into place, one after the other
            item.commit()
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, project.mask_path(photo))) from exc
    finally:
        for item in staged:
            item.discard()  # the committed ones are gone already: nothing to remove
    old = project.instances_path(photo)
    if with_instances or not old.exists():
        return None
    kept = old.with_name(f"{old.stem}.before-import-{time.strftime('%Y%m%d-%H%M%S')}.png")
    try:
        old.rename(kept)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, old)) from exc
    return kept


def forget_predictions(project: Project, stems: list[str]) -> None:
    """Imported masks are labels, not a model's unreviewed predictions: unmark them (one
    save of the project's state)."""
    predicted = project.predicted_stems()
    if not predicted & set(stems):
        return
    project.state["predicted"] = sorted(predicted - set(stems))
    project.save_state()
