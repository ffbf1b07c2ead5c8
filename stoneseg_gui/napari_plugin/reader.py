"""The reader contribution: napari opens a StoneSeg project folder as layers.

A folder is a project when it has ``images/`` and either ``stoneseg.json`` or ``masks/``
(a plain folder of photos is left to napari's own readers). Every photo becomes an image
layer, with its mask and per-stone labels when it has them (``layers.photo_layers``); only
the first photo's layers are visible. A photo that cannot be read is skipped and named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.project import STATE_FILE, Project

from .layers import LayerData, photo_layers

log = logging.getLogger(__name__)


def is_project_folder(path: str | Path) -> bool:
    folder = Path(path)
    return (folder / "images").is_dir() and (
        (folder / STATE_FILE).is_file() or (folder / "masks").is_dir()
    )


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """``read_project`` when ``path`` is one StoneSeg project folder, else None (npe2's
    reader hook: napari then asks the next reader)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_project if is_project_folder(path) else None


def read_project(path: str | list[str]) -> list[LayerData]:
    """Every photo of the project, with its mask and stones."""
    folder = path[0] if isinstance(path, (list, tuple)) else path
    project = Project.open(folder)
    layers: list[LayerData] = []
    for image in project.image_paths():
        try:
            layers += photo_layers(project, image, visible=not layers)
        except StonesegError as exc:  # one damaged photo or mask does not hide the others
            log.warning("StoneSeg reader skipped %s: %s", image.name, exc)
    return layers
