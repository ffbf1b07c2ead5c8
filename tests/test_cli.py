"""The command line as scripts use it: real folders, real models, exit codes."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from synthetic import make_dataset, make_scene, write_rgb

from stoneseg_core.cli import main
from stoneseg_core.io.images import read_mask


def test_train_then_segment_then_evaluate(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=4, size=(96, 128))
    model = tmp_path / "model"
    args = [
        "train",
        str(data),
        "--out",
        str(model),
        "--epochs",
        "1",
        "--crop",
        "64",
        "--work-size",
        "128",
    ]
    assert main(args + ["--batch-size", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Best epoch 1" in out and "Validation on 1 unseen photos" in out
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["train_config"]["seed"] == 3 and cfg["train_config"]["crop"] == 64
    # training again into the same folder would destroy a model: refused unless asked
    assert main(args) == 2
    assert "already holds a model" in capsys.readouterr().err

    assert main(["segment", str(model), str(data / "images"), str(tmp_path / "out")]) == 0
    masks = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert masks == [f"img{i}.png" for i in range(4)]
    m = cv2.imread(str(tmp_path / "out" / "img0.png"), cv2.IMREAD_UNCHANGED)
    assert m.shape == (96, 128) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    capsys.readouterr()

    assert main(["evaluate", str(model), str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "iou", "f1", "precision", "recall"):
        assert 0.0 <= result[key] <= 1.0
    assert len(result["per_image"]) == 4
    splits = sorted(r["split"] for r in result["per_image"])
    assert splits == ["train", "train", "train", "validation"]
    assert result["not_trained_on"]["images"] == 1


def test_segment_names_bad_files_and_exits_1(trained_model, tmp_path, capsys):
    src = tmp_path / "in"
    write_rgb(src / "good.jpg", make_scene(np.random.default_rng(0), 64, 80)[0])
    (src / "bad.jpg").write_bytes(b"garbage")
    assert main(["segment", str(trained_model), str(src), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "bad.jpg" in captured.err and "1 written" in captured.out
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


def test_segment_runtime_option_same_masks_either_way(trained_model, tmp_path):
    src = tmp_path / "in"
    for i in range(2):
        write_rgb(src / f"p{i}.jpg", make_scene(np.random.default_rng(i), 64, 80)[0])
    for runtime in ("onnx", "torch"):
        out = tmp_path / runtime
        assert main(["segment", str(trained_model), str(src), str(out), "--runtime", runtime]) == 0
    for i in range(2):
        a, b = (read_mask(tmp_path / r / f"p{i}.png") for r in ("onnx", "torch"))
        assert a.shape == (64, 80) and (a != b).mean() < 0.005
    with pytest.raises(SystemExit):
        main(["segment", str(trained_model), str(src), str(tmp_path / "x"), "--runtime", "tvm"])


def test_user_mistakes_are_one_line_exit_2(trained_model, tmp_path, capsys):
    assert main(["segment", str(tmp_path / "no-model"), str(tmp_path), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("stoneseg: error:")
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "No labelled" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train"])  # argparse usage error
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(
            ["segment", str(trained_model), str(tmp_path), str(tmp_path / "o"), "--threshold", "7"]
        )
    assert exc.value.code == 2


def test_evaluate_with_instance_masks_reports_stones(trained_model, tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=2, size=(128, 160), seed=5)
    inst = tmp_path / "instances"
    inst.mkdir()
    for i in range(2):
        mask = cv2.imread(str(data / "masks" / f"img{i}.png"), cv2.IMREAD_GRAYSCALE)
        n, labels = cv2.connectedComponents((mask > 0).astype(np.uint8))
        cv2.imwrite(str(inst / f"img{i}.png"), labels.astype(np.uint16))
    assert (
        main(["evaluate", str(trained_model), str(data), "--json", "--instances", str(inst)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert {"precision", "recall", "f1"} <= set(result["stones"])
    assert all("stones" in row for row in result["per_image"])


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "stoneseg_core", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "segment" in out.stdout and "grains" in out.stdout


def test_amp_is_chosen_on_the_command_line(trained_model, tmp_path, monkeypatch):
    """--amp reaches the Segmenter; on a CPU without native bf16, auto and off give the same
    masks, and an unknown mode is a usage error."""
    import stoneseg_core.inference.segmenter as predict

    seen = []
    original = predict.Segmenter.__init__

    def spy(self, model, info, config=None, device=None):
        seen.append(config.amp if config else None)
        original(self, model, info, config, device)

    monkeypatch.setattr(predict.Segmenter, "__init__", spy)
    src = tmp_path / "in"
    write_rgb(src / "a.jpg", make_scene(np.random.default_rng(2), 96, 128)[0])
    for mode in ("off", "auto"):
        out = tmp_path / mode
        assert main(["segment", str(trained_model), str(src), str(out), "--amp", mode]) == 0
    assert seen == ["off", "auto"]
    a = cv2.imread(str(tmp_path / "off" / "a.png"), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(tmp_path / "auto" / "a.png"), cv2.IMREAD_GRAYSCALE)
    from stoneseg_core.model.device import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        assert np.array_equal(a, b)
    with pytest.raises(SystemExit):
        main(["segment", str(trained_model), str(src), str(tmp_path / "x"), "--amp", "int8"])


def test_amp_auto_is_float32_on_cuda():
    """Measured on an H200: bf16 autocast was slower than fp32 for this U-Net and changed
    the masks, so auto means fp32 there; bf16 and fp16 only when asked for."""
    import torch

    from stoneseg_core.model.device import autocast_dtype

    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, "auto") is None
    assert autocast_dtype(cuda, "off") is None
    assert autocast_dtype(cuda, "bf16") is torch.bfloat16
    assert autocast_dtype(cuda, "fp16") is torch.float16


def test_cpu_auto_precision_trains_in_bf16_only_where_native_and_infers_in_fp32(monkeypatch):
    import torch

    import stoneseg_core.model.device as dev

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda native=native: native)
        assert dev.autocast_dtype(cpu, "auto") is None  # inference: fp32 (ONNX Runtime)
        assert dev.autocast_dtype(cpu, "auto", training=True) is (
            torch.bfloat16 if native else None
        )
        assert dev.autocast_dtype(cpu, "off", training=True) is None
        assert dev.autocast_dtype(cpu, "bf16") is torch.bfloat16


def test_gui_command_reaches_the_app_through_its_entry_point(tmp_path, monkeypatch, capsys):
    """The library never imports the desktop app: `stoneseg gui` finds it through the
    installed "stoneseg.apps" entry point, and says so clearly when it is not installed."""
    import importlib.metadata

    import stoneseg_gui.app

    opened, left = [], []
    monkeypatch.setattr(stoneseg_gui.app, "main", lambda folder=None: opened.append(folder) or 0)
    # the real command ends the process at once after the window closed; not the test's
    monkeypatch.setattr(stoneseg_gui.app, "_leave", lambda code: left.append(code) or code)
    assert main(["gui", str(tmp_path)]) == 0
    assert opened == [str(tmp_path)] and left == [0]

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    assert main(["gui"]) == 2
    assert "desktop app is not installed" in capsys.readouterr().err
