"""The installed stone model's plumbing: float16 weights that keep the masks, provenance in
config.json, where the app finds it, how the command line names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthetic import make_scene

from stoneseg_core.cli.common import model_arg
from stoneseg_core.errors import ModelFileError
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.info import WEIGHTS_FILE, read_model_info
from stoneseg_core.model.network import to_float16
from stoneseg_core.model.stone_model import (
    PROVENANCE,
    STONE_MODEL,
    installed_stone_model,
    resolve_model_arg,
    starting_model,
)


def test_float16_weights_keep_the_masks_and_record_provenance(trained_model, tmp_path):
    half = tmp_path / STONE_MODEL
    shutil.copytree(trained_model, half)
    before = (half / WEIGHTS_FILE).stat().st_size
    size = to_float16(half, {**PROVENANCE, "held_out": {"gravel": ["tile0"]}})
    assert size < 0.6 * before  # about half: only BatchNorm's statistics stay float32

    from safetensors.numpy import load_file

    state = load_file(str(half / WEIGHTS_FILE))
    convs = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
    assert convs and all(v.dtype == np.float16 for v in convs)
    assert all(v.dtype == np.float32 for k, v in state.items() if k.endswith("running_var"))

    info = read_model_info(half)
    assert info.provenance["held_out"] == {"gravel": ["tile0"]}
    licences = {d["name"]: d["licence"] for d in info.provenance["datasets"]}
    assert licences == {"conveyor-train": "CC BY 4.0", "gravel-fh-train": "BSD-3-Clause"}
    # written back as it was read (the field survives a re-save of the config)
    assert json.loads(json.dumps(info.to_json()))["provenance"] == info.provenance

    image, _truth = make_scene(np.random.default_rng(7), 128, 160)
    cfg = InferenceConfig(runtime="torch", amp="off")
    a = Segmenter.load(trained_model, cfg).predict(image)
    b = Segmenter.load(half, cfg).predict(image)
    agree = np.mean((a.mask > 0) == (b.mask > 0))
    assert agree > 0.995, agree
    assert np.abs(a.probability - b.probability).max() < 0.02


def test_float16_refuses_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFileError):
        to_float16(tmp_path)


def test_installed_stone_model_is_found_only_when_complete(tmp_path, trained_model):
    assert installed_stone_model(tmp_path) is None
    folder = tmp_path / STONE_MODEL
    folder.mkdir()
    shutil.copy(trained_model / "config.json", folder)
    assert installed_stone_model(tmp_path) is None  # weights missing
    shutil.copy(trained_model / WEIGHTS_FILE, folder)
    assert installed_stone_model(tmp_path) == folder


def test_the_installed_stone_model_ships_in_float16_with_its_provenance(tmp_path):
    installed = installed_stone_model()
    assert installed is not None and installed.name == STONE_MODEL
    assert resolve_model_arg("stones") == installed
    assert resolve_model_arg(tmp_path) == Path(tmp_path)
    # the command line's MODEL_DIR and --from-model take it by that name
    assert model_arg("stones") == installed
    info = read_model_info(installed)
    assert info.target == "mask+boundary" and info.encoder == "tu-tf_efficientnet_lite2"
    names = {d["name"] for d in info.provenance["datasets"]}
    assert names == {"conveyor-train", "gravel-fh-train"}
    # never the unlicensed dev photos, never the bundled sample's tiles (a new user's first
    # Predict on them is of photos the model never saw)
    sample = {p.stem for p in (Path(__file__).parents[1] / "resources/sample/images").iterdir()}
    assert sample <= set(info.provenance["held_out"]["conveyor"])
    assert not sample & set(info.lineage_train_images)
    from safetensors.numpy import load_file

    state = load_file(str(installed / WEIGHTS_FILE))
    assert all(v.dtype == np.float16 for k, v in state.items() if v.ndim == 4)
    assert (installed / WEIGHTS_FILE).stat().st_size < 15_000_000


def test_training_starts_from_the_stone_model_only_when_asked_and_it_fits(tmp_path, trained_model):
    root = tmp_path / "bundled"
    folder = root / STONE_MODEL
    shutil.copytree(trained_model, folder)
    encoder = read_model_info(folder).encoder
    assert starting_model("stones", encoder, None, root) == folder
    assert starting_model("imagenet", encoder, None, root) is None
    # an explicit model to fine-tune always wins
    assert starting_model("stones", encoder, tmp_path / "other", root) == tmp_path / "other"
    # another encoder (the seed's b0): the stone model does not fit, ImageNet it is
    assert starting_model("stones", "efficientnet-b0", None, root) is None
    assert starting_model("stones", encoder, None, tmp_path / "none") is None


def test_without_an_installed_stone_model_the_command_line_says_so(monkeypatch):
    import argparse

    from stoneseg_core.model import stone_model

    monkeypatch.setattr(stone_model, "_default_root", lambda: Path("/nonexistent"))
    with pytest.raises(argparse.ArgumentTypeError, match="no installed stone model"):
        model_arg("stones")


def test_the_command_lines_stone_start_takes_the_stone_models_encoder(
    tmp_path, trained_model, monkeypatch
):
    """``stoneseg train --weights stones`` fine-tunes the stone model with its own encoder
    (whatever the core's default); an --encoder given wins; ImageNet keeps the default."""
    import json

    from stoneseg_core.cli import build_parser
    from stoneseg_core.cli import train as cli_train
    from stoneseg_core.model.config import TrainConfig
    from stoneseg_core.model.stone_model import model_encoder

    folder = tmp_path / "bundled" / STONE_MODEL
    shutil.copytree(trained_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["encoder"] = other = "tu-tf_efficientnet_lite2"
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(cli_train, "installed_stone_model", lambda: folder)

    def config_of(*options: str) -> TrainConfig:
        args = build_parser().parse_args(["train", str(tmp_path), "--out", "m", *options])
        return cli_train._train_config(args)

    assert config_of("--weights", "stones").encoder == other
    assert config_of("--weights", "stones", "--encoder", "efficientnet-b0").encoder == (
        "efficientnet-b0"
    )
    assert config_of().encoder == TrainConfig.encoder
    # a damaged stone model is not a start: no encoder from it
    (folder / "config.json").write_text("{not json")
    assert model_encoder(folder) is None and model_encoder(None) is None
    assert config_of("--weights", "stones").encoder == TrainConfig.encoder
