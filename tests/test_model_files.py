import json
import pickle
import subprocess
import sys

import pytest
import torch

from stoneseg_core.errors import ModelFileError, WeightsUnavailableError
from stoneseg_core.model.network import (
    ModelInfo,
    build_model,
    load_encoder_weights,
    load_model,
    save_model,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("efficientnet-b0", "none").eval()
    info = ModelInfo(
        encoder="efficientnet-b0", work_size=96, threshold=0.4, train_images=["a"], val_images=["b"]
    )
    folder = save_model(model, info, tmp_path_factory.mktemp("m") / "model")
    return model, folder


def test_round_trip_gives_identical_outputs_and_config(saved):
    model, folder = saved
    loaded, info = load_model(folder)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert info.work_size == 96 and info.threshold == 0.4 and info.val_images == ["b"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["format"] == "stoneseg-model" and cfg["encoder"] == "efficientnet-b0"
    assert cfg["versions"]["torch"] == torch.__version__ and cfg["created"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_damaged_weights_are_a_clear_error(saved, tmp_path):
    _, folder = saved
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((folder / "config.json").read_bytes())
    data = (folder / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(bad)


def test_foreign_and_broken_configs_are_refused(saved, tmp_path):
    _, folder = saved
    for name, text, words in [
        ("foreign", json.dumps({"model_type": "bert"}), "not a StoneSeg model"),
        ("garbage", "{not json", "damaged"),
        ("newer", json.dumps({"format": "stoneseg-model", "format_version": 99}), "newer StoneSeg"),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(text)
        (d / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        with pytest.raises(ModelFileError, match=words):
            load_model(d)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="config.json"):
        load_model(empty)


def test_weights_of_another_architecture_are_refused(saved, tmp_path):
    _, folder = saved
    d = tmp_path / "mismatch"
    d.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder"] = "resnet18"
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(d)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_in_a_weights_file_is_never_run(tmp_path):
    path = tmp_path / "encoder.pth"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    model = build_model("efficientnet-b0", "none")
    with pytest.raises(WeightsUnavailableError):
        load_encoder_weights(model, path)


def test_local_encoder_weights_file_is_loaded(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    donor = build_model("efficientnet-b0", "none")
    save_file(
        {k: v.contiguous() for k, v in donor.encoder.state_dict().items()},
        str(tmp_path / "enc.safetensors"),
    )
    model = build_model("efficientnet-b0", str(tmp_path / "enc.safetensors"))
    for (k, a), b in zip(donor.encoder.state_dict().items(), model.encoder.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model("efficientnet-b0", str(tmp_path / "missing.safetensors"))


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch):
    import segmentation_models_pytorch as smp

    def offline(*args, **kwargs):
        if kwargs.get("encoder_weights"):
            raise OSError("Temporary failure in name resolution")
        return original(*args, **kwargs)

    original = smp.Unet
    monkeypatch.setattr(smp, "Unet", offline)
    with pytest.raises(WeightsUnavailableError, match="offline"):
        build_model("efficientnet-b0", "imagenet")


def test_core_imports_no_qt():
    code = (
        "import sys, stoneseg_core, stoneseg_core.cli, stoneseg_core.training.train, stoneseg_core.inference.segmenter, "
        "stoneseg_core.io.project, stoneseg_core.io.images, stoneseg_core.scoring.pixels, stoneseg_core.model.network\n"
        "import importlib.util\n"
        "for m in ('stoneseg_core.editing.mask_document', 'stoneseg_core.grains', 'stoneseg_core.cli.grains'):\n"
        "    importlib.util.find_spec(m) and __import__(m)\n"
        "stoneseg_core.cli.build_parser().parse_args(['gui', 'somewhere'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'stoneseg_gui')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_weights_written_chunk_by_chunk_are_a_valid_safetensors_file(tmp_path):
    """safetensors_chunks writes the format by hand (so the window keeps running while a
    model is saved); the safetensors library must read back every tensor exactly."""
    import torch
    from safetensors.torch import load_file

    from stoneseg_core.io.images import atomic_write_bytes
    from stoneseg_core.model.network import safetensors_chunks

    g = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "bn.num_batches_tracked": torch.tensor(17),  # a 0-d int64, as BatchNorm has
        "half": torch.randn(5, generator=g).half(),
        "brain": torch.randn(3, 7, generator=g).bfloat16(),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
    }
    path = tmp_path / "w.safetensors"
    atomic_write_bytes(path, safetensors_chunks(state))
    back = load_file(str(path))
    assert set(back) == set(state)
    for name, t in state.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name
