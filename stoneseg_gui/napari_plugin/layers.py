"""A project's photo as napari layer data, and what a layer says about where it came from.

Every layer the plugin makes carries ``metadata["stoneseg"]``: the project folder, the photo
and its kind (``PHOTO``, ``MASK``, ``PREDICTION`` or ``STONES``), so the other widgets know
where to save it and which model and photo it belongs to (``LayerSource``). A prediction's
labels layer also keeps the model's ``Prediction`` (probability and boundary maps) under
``PREDICTION_KEY``: splitting it into stones then uses them, as the app does.

No Qt and no napari here: napari takes the ``(data, kwargs, layer_type)`` tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.images import read_image, read_instance_labels, read_mask, to_uint8
from stoneseg_core.io.project import Project

KEY = "stoneseg"
PREDICTION_KEY = "stoneseg_prediction"
PHOTO, MASK, PREDICTION, STONES = "photo", "mask", "prediction", "stones"

LayerData = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class LayerSource:
    """Where a layer came from; every field None or "" for a layer the plugin did not make."""

    project: Path | None = None
    image: Path | None = None
    kind: str = ""

    def metadata(self) -> dict[str, Any]:
        return {
            KEY: {
                "project": str(self.project) if self.project else "",
                "image": str(self.image) if self.image else "",
                "kind": self.kind,
            }
        }

    def as_kind(self, kind: str) -> LayerSource:
        return LayerSource(self.project, self.image, kind)


def source_of(layer) -> LayerSource:
    """The ``LayerSource`` a layer's metadata holds (an empty one when it holds none)."""
    tag = (getattr(layer, "metadata", None) or {}).get(KEY) or {}
    project, image = tag.get("project") or None, tag.get("image") or None
    return LayerSource(
        Path(project) if project else None, Path(image) if image else None, tag.get("kind", "")
    )


def mask_name(stem: str) -> str:
    return f"{stem} mask"


def stones_name(stem: str) -> str:
    return f"{stem} stones"


def prediction_name(stem: str) -> str:
    return f"{stem} prediction"


def photo_layers(project: Project, image: Path, visible: bool = True) -> list[LayerData]:
    """One photo of a project: the photo (RGB, display orientation, as the app reads it),
    its mask (labels, 1 = stone; kind PREDICTION while it is a model's unreviewed mask) when
    there is one, and its per-stone labels from ``instances/`` when there are some."""
    rgb = read_image(image)
    size = rgb.shape[:2]
    source = LayerSource(project.root, image, PHOTO)
    layers: list[LayerData] = [
        (rgb, {"name": image.stem, "rgb": True, "visible": visible, **_meta(source)}, "image")
    ]
    mask_path = project.mask_path(image)
    if mask_path.is_file():
        kind = PREDICTION if image.stem in project.predicted_stems() else MASK
        mask = (read_mask(mask_path, size) > 0).view(np.uint8)
        style = {"name": mask_name(image.stem), "opacity": 0.5, "visible": visible}
        layers.append((mask, {**style, **_meta(source.as_kind(kind))}, "labels"))
    instances = project.instances_path(image)
    if instances.is_file():
        stones = read_instance_labels(instances, size)
        style = {"name": stones_name(image.stem), "opacity": 0.6, "visible": False}
        layers.append((stones, {**style, **_meta(source.as_kind(STONES))}, "labels"))
    return layers


def _meta(source: LayerSource) -> dict[str, Any]:
    return {"metadata": source.metadata()}


def rgb_of(data) -> np.ndarray:
    """An image layer's pixels as the RGB uint8 photo the network takes: grey repeated three
    times, alpha dropped, 16-bit or float data stretched as the app reads such files; the
    finest level of a multiscale layer."""
    if isinstance(data, (list, tuple)):  # a multiscale layer: its finest level first
        data = data[0]
    arr = to_uint8(np.asarray(data))
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.ascontiguousarray(arr[:, :, :3])
    if arr.ndim == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    raise StonesegError(
        f"StoneSeg segments 2-D photos (grey or RGB); this layer's data is {arr.shape}."
    )
