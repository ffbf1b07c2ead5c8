"""The napari plugin's tests (tests/napari), run for real in a process of their own on a
virtual X screen.

napari draws its canvas with OpenGL (vispy), which Qt's offscreen platform, the one this
suite runs on, does not give; and a process has one Qt platform. So this test starts Xvfb
(the X server without a screen), runs ``python -m pytest tests/napari`` under it with the
xcb platform and napari's pytest plugin, and passes only when all of them passed: none may
be skipped. Without Xvfb or napari it fails, saying how to install them (.ci/run does).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what Xvfb, Mesa's software OpenGL and Qt's xcb platform need on Debian/Ubuntu (.ci/run)
X_PACKAGES = (
    "xvfb libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 "
    "libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 "
    "libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3"
)
INSTALL_X = f"install them with: sudo apt-get install {X_PACKAGES}"

# napari 0.9 and npe2 0.10 still use pydantic 1's json_encoders and Field arguments: a
# deprecation warning per model and field as they load, none of them ours
QUIET = [
    f"-Wignore:{start}"
    for start in (
        "`json_encoders` is deprecated",
        "Using extra keyword arguments on `Field`",
        "`allow_mutation` is deprecated",
    )
]


@contextmanager
def virtual_screen(log: Path) -> Iterator[str]:
    """A fresh Xvfb on a display number it picks itself (-displayfd): its DISPLAY."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail(f"The napari tests need Xvfb (a virtual X screen): {INSTALL_X}")
    read_end, write_end = os.pipe()
    with log.open("wb") as err:
        server = subprocess.Popen(
            [
                xvfb,
                "-displayfd",
                str(write_end),
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        number = os.read(read_end, 32).decode().strip() if ready else ""
        if not number.isdigit():
            server.kill()
            pytest.fail(f"Xvfb did not start ({INSTALL_X}):\n{log.read_text(errors='replace')}")
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.timeout(900)
def test_napari_plugin_tests_pass_under_xvfb(trained_model, onnx_cache, tmp_path):
    try:
        import napari  # noqa: F401
    except ImportError as exc:
        pytest.fail(f'The napari tests need napari: pip install -e ".[test]" ({exc})')
    with virtual_screen(tmp_path / "xvfb.log") as display:
        env = {
            **os.environ,
            "DISPLAY": display,
            "QT_QPA_PLATFORM": "xcb",
            "STONESEG_NAPARI_TESTS": "1",  # tests/conftest.py collects tests/napari
            "STONESEG_TEST_MODEL": str(trained_model),  # this session's tiny U-Net
            "STONESEG_TEST_CACHE": str(onnx_cache),  # and its ONNX export, if made already
            # napari's settings and caches, and ours, in this test's folder
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "STONESEG_DATA_DIR": str(tmp_path / "stoneseg-data"),
        }
        command = [sys.executable, "-m", "pytest", "tests/napari", "-q", "-p", "napari"]
        run = subprocess.run(
            command + ["-p", "no:cacheprovider", *QUIET],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
        )
    output = run.stdout + run.stderr
    print(output)  # shown with -rP, and on failure
    assert run.returncode == 0, f"{' '.join(command)} failed (DISPLAY {display}):\n{output}"
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), output
    assert not re.search(r"skipped|xfail|deselected|error", summary), output


def test_without_xvfb_the_napari_test_fails_saying_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install xvfb libgl1"):
        with virtual_screen(tmp_path / "xvfb.log"):
            pass


def test_triton_is_kept_out_only_where_a_system_llvm_is_loaded(monkeypatch, tmp_path):
    from stoneseg_gui.napari_plugin.jobs import keep_triton_out

    maps = tmp_path / "maps"
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libGLX_mesa.so.0\n")
    assert not keep_triton_out(maps) and "triton" not in sys.modules
    assert not keep_triton_out(tmp_path / "no-such-file")  # no /proc: nothing done
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n")
    assert keep_triton_out(maps)
    assert sys.modules["triton"] is None  # import triton fails as if it were not installed
    with pytest.raises(ImportError):
        import triton  # noqa: F401
    assert not keep_triton_out(maps)  # already decided


def test_image_layers_become_the_rgb_uint8_photo_the_network_takes():
    import numpy as np

    from stoneseg_core.errors import StonesegError
    from stoneseg_gui.napari_plugin.layers import rgb_of

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert rgb_of(grey).shape == (3, 4, 3) and (rgb_of(grey)[..., 2] == grey).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert rgb_of(rgba).shape == (3, 4, 3) and rgb_of(rgba).max() == 0
    deep = np.linspace(0, 4095, 12).reshape(3, 4).astype(np.uint16)  # 12-bit camera data
    out = rgb_of([deep, deep[::2, ::2]])  # a multiscale layer: its finest level
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3) and out.max() == 255
    with pytest.raises(StonesegError, match="2-D photos"):
        rgb_of(np.zeros((2, 3, 4, 3), np.uint8))
