"""The stone model installed with StoneSeg: a U-Net that already knows stones.

A project's first Predict uses it when the project has no model of its own, and a project's
first Train fine-tunes it instead of starting from ImageNet (docs/stones.md, "The installed
stone model", has the figures that decided this). It was trained only on licensed data
(conveyor-train, CC BY 4.0; gravel-fh-train, BSD-3) by ``tests/benchmarks/make_stone_model.py``;
its ``config.json`` records the data, the licences, the attribution and the tiles held out.

Its weights are stored in float16 (``to_float16``): half the size, loaded into a float32
network as any model (``load_state_dict`` converts). No torch here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stoneseg_core.errors import ModelFileError
from stoneseg_core.model.info import CONFIG_FILE, WEIGHTS_FILE, read_model_info

STONE_MODEL = "stones-lite0"  # the folder's name, and how the command line names it
PACKAGE = "stoneseg_core.bundled"  # resources/models, installed as package data

# what make_stone_model.py writes into config.json's "provenance"
PROVENANCE: dict[str, Any] = {
    "kind": "installed stone model",
    "built_by": "tests/benchmarks/make_stone_model.py",
    "datasets": [
        {
            "name": "conveyor-train",
            "licence": "CC BY 4.0",
            "attribution": (
                '"CDM" rock dataset, Roboflow Universe project object-detection/cdm-b4yrh, '
                "CC BY 4.0; published in the public repository guillermoecn/Mask_RCNN_TF2.4 "
                "(datasets/rocks-test2-250imgs, labels/train.json)"
            ),
        },
        {
            "name": "gravel-fh-train",
            "licence": "BSD-3-Clause",
            "attribution": (
                "(c) 2023 David Mair, BSD 3-Clause, from the public repository "
                "dmair1989/imagegrains (demo_data/FH/train); Mair et al. (2023), Earth Surface "
                "Processes and Landforms, doi:10.1002/esp.5755"
            ),
        },
    ],
    "never_trained_on": ["stones-dev (no licence)"],
}

# tensors kept in float32 in the float16 file: BatchNorm's statistics (a running variance
# can fall below float16's normal range) and every integer counter
_KEEP_FLOAT32 = ("running_mean", "running_var")


def _default_root() -> Path:
    try:
        return Path(str(resources.files(PACKAGE)))
    except (ModuleNotFoundError, TypeError):
        # a checkout used without installing: resources/models beside the packages
        return Path(__file__).resolve().parents[2] / "resources" / "models"


def installed_stone_model(root: Path | None = None) -> Path | None:
    """The installed stone model's folder, or None when this installation has none."""
    folder = (root if root is not None else _default_root()) / STONE_MODEL
    if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        return folder
    return None


def resolve_model_arg(value: str | Path) -> Path:
    """A model folder as the command line names it: a path, or ``stones`` for the installed
    stone model."""
    if str(value) in ("stones", STONE_MODEL):
        folder = installed_stone_model()
        if folder is None:
            raise ModelFileError("This installation of StoneSeg has no installed stone model.")
        return folder
    return Path(value)


def to_float16(folder: str | Path, provenance: dict[str, Any] | None = None) -> int:
    """Rewrite a model folder's weights in float16 (BatchNorm statistics and integers kept)
    and add ``provenance`` to its config. Returns the weights file's new size in bytes."""
    from safetensors.numpy import load_file, save_file

    folder = Path(folder)
    read_model_info(folder)  # refuses what is not a StoneSeg model
    state = load_file(str(folder / WEIGHTS_FILE))
    half = {
        k: v.astype(np.float16) if v.dtype == np.float32 and not k.endswith(_KEEP_FLOAT32) else v
        for k, v in state.items()
    }
    save_file(half, str(folder / WEIGHTS_FILE))
    if provenance:
        cfg = folder / CONFIG_FILE
        data = json.loads(cfg.read_text(encoding="utf-8"))
        data["provenance"] = {**provenance, "weights": "float16 (BatchNorm statistics float32)"}
        cfg.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return (folder / WEIGHTS_FILE).stat().st_size
