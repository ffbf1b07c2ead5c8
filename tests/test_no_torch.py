"""The CPU path without PyTorch: ``stoneseg segment`` on a model whose ONNX export is cached
never imports torch (nor torchvision, SMP, timm, albumentations, onnx), nor does the command
line's start-up; the GPU check needs no torch. Each run is a real subprocess (sys.modules of a
fresh interpreter), on the tiny trained model of conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from synthetic import make_scene, write_rgb

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "albumentations", "onnx")

# runs the code given, then prints which heavy packages the interpreter has loaded
PROBE = """
import json, sys
{code}
print("HEAVY=" + json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def _run(code: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    return proc, json.loads(line.removeprefix("HEAVY="))


def _photos(folder: Path) -> list[Path]:
    rng = np.random.default_rng(11)
    paths = [folder / f"p{i}.jpg" for i in range(2)]
    for p in paths:
        write_rgb(p, make_scene(rng, 120, 150)[0])
    return paths


def test_segment_with_a_cached_export_never_imports_torch(trained_model, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photos = _photos(src)
    from stoneseg_core.io.images import read_image

    # a first use exports the network (or finds it) and notes it for the model folder
    seg = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    want = {p.stem: seg.predict_mask(read_image(p)) for p in photos}
    assert seg.runtime_in_use == "onnxruntime"

    code = (
        "from stoneseg_core.cli import main\n"
        f"rc = main(['segment', {str(trained_model)!r}, {str(src)!r}, {str(out)!r}])\n"
        "assert rc == 0, rc"
    )
    proc, heavy = _run(code)
    assert heavy == [], heavy
    assert "2 written" in proc.stdout
    for stem, mask in want.items():  # the same masks as the segmenter with torch loaded
        got = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, mask)

    # device auto, and the window's way in (Segmenter.load + predict): no torch either
    code = (
        "from stoneseg_core.inference.segmenter import Segmenter\n"
        "from stoneseg_core.io.images import read_image\n"
        f"seg = Segmenter.load({str(trained_model)!r})\n"
        f"p = seg.predict(read_image({str(photos[0])!r}))\n"
        "assert seg.runtime_in_use == 'onnxruntime' and seg.device_type == 'cpu'\n"
        "assert p.mask.shape == (120, 150)"
    )
    assert _run(code)[1] == []


def test_without_a_cached_export_torch_builds_and_exports_it(trained_model, tmp_path):
    """A fresh cache: the model is built in PyTorch, exported and noted; the next run is torch-free."""
    src = tmp_path / "in"
    _photos(src)
    env = {"STONESEG_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "from stoneseg_core.cli import main\n"
        f"assert main(['segment', {str(trained_model)!r}, {str(src)!r}, {str(tmp_path / 'a')!r}]) == 0"
    )
    heavy = _run(code, env)[1]
    assert "torch" in heavy and "segmentation_models_pytorch" in heavy
    assert list((tmp_path / "cache" / "onnx").glob("*.folder"))
    code = code.replace(repr(str(tmp_path / "a")), repr(str(tmp_path / "b")))
    assert _run(code, env)[1] == []
    for p in (tmp_path / "a").iterdir():
        a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(
            a, cv2.imread(str(tmp_path / "b" / p.name), cv2.IMREAD_UNCHANGED)
        )


def test_command_line_start_up_and_parsing_never_import_torch():
    code = (
        "from stoneseg_core.cli import build_parser\n"
        "p = build_parser()\n"
        "a = p.parse_args(['segment', 'm', 'i', 'o', '--runtime', 'onnx', '--device', 'auto'])\n"
        "assert a.command == 'segment' and a.runtime == 'onnx'\n"
        "p.parse_args(['train', 'project', '--out', 'm', '--epochs', '2'])\n"
        "p.parse_args(['grains', 'm', 'i', 'o'])"
    )
    assert _run(code)[1] == []


def test_gpu_check_needs_no_torch_and_agrees_with_torch():
    code = (
        "from stoneseg_core.inference.networks import pytorch\n"
        "from stoneseg_core.model import hardware\n"
        "auto = hardware.resolve_device_name('auto', pytorch.cuda_available)\n"
        "print('GPU=' + json.dumps([hardware.gpu_may_be_present(), auto]))"
    )
    proc, heavy = _run(code)
    assert heavy == []
    line = [x for x in proc.stdout.splitlines() if x.startswith("GPU=")][-1]
    maybe, auto = json.loads(line.removeprefix("GPU="))
    import torch

    if torch.cuda.is_available():  # never a false "no GPU": torch then decides
        assert maybe is True and auto == "cuda"
    else:
        assert auto == "cpu"
        if not Path("/dev/kfd").exists() and not Path("/proc/driver/nvidia").exists():
            assert maybe is False  # this machine: no driver, so torch is not even imported
