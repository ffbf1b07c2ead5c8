"""The stone model installed with StoneSeg: a U-Net that already knows stones.

A project's first Predict uses it when the project has no model of its own, and a project's
first Train fine-tunes it instead of starting from ImageNet (docs/stones.md, "The installed
stone model", has the figures that decided this). It was trained only on licensed data
(conveyor-train, CC BY 4.0; gravel-fh-train, BSD-3) by ``tests/benchmarks/make_stone_model.py``;
its ``config.json`` records the data, the licences, the attribution and the tiles held out.

Its weights are stored in float16 (``network.to_float16``): half the size, loaded into a
float32 network as any model (``load_state_dict`` converts). No torch here.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from stoneseg_core.errors import ModelFileError, StonesegError
from stoneseg_core.model.info import CONFIG_FILE, WEIGHTS_FILE, read_model_info

log = logging.getLogger(__name__)

STONE_MODEL = "stones-lite2"  # the folder's name, and how the command line names it
PACKAGE = "stoneseg_core.bundled"  # resources/models, installed as package data
STONES = "stones"  # TrainConfig.weights: start from the installed stone model

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


def model_encoder(folder: Path | None) -> str | None:
    """The encoder of the model in ``folder`` (the installed stone model's, as a start); None
    when there is none or its config cannot be read: then it is simply not offered."""
    if folder is None:
        return None
    try:
        return read_model_info(folder).encoder
    except StonesegError as exc:
        log.warning("the stone model in %s cannot be read: %s", folder, exc)
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


def starting_model(
    weights: str, encoder: str, from_model: str | Path | None, root: Path | None = None
) -> Path | None:
    """The model a training run fine-tunes: ``from_model`` when given; the installed stone
    model when ``weights`` is ``stones`` and it has the run's encoder; else None (the
    run starts from the encoder's ImageNet weights, said in the log)."""
    if from_model is not None or weights != STONES:
        return Path(from_model) if from_model is not None else None
    folder = installed_stone_model(root)
    if folder is None:
        log.warning("no installed stone model: starting from ImageNet weights")
        return None
    own = read_model_info(folder).encoder
    if own != encoder:
        log.info(
            "the installed stone model is a %s, not a %s: starting from ImageNet", own, encoder
        )
        return None
    return folder
