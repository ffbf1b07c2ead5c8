"""``stoneseg segment --engine ray``: a local Ray cluster (one for the module) segments folders
into the local engine's masks, resumes, names bad photos; without Ray, a clear message."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic import make_scene, write_rgb

from stoneseg_core.cli import main
from stoneseg_core.io import geo
from stoneseg_core.model.config import InferenceConfig

HAS_RAY = (
    importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None
)
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray[data] is not installed (the 'ray' extra)")
UTM33_5MM = (0.005, 0.0, 500000.0, 0.0, -0.005, 5500000.0)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module, started as the engine starts its own (with a timeout)."""
    from stoneseg_core.jobs.ray_engine import RaySettings, ray_session

    with ray_session(RaySettings(workers=2, start_timeout=120)) as ray:
        yield ray
    assert not ray.is_initialized()  # shut down at the end


@pytest.fixture
def photos(tmp_path) -> Path:
    """Photos of three kinds and sizes: PNGs, a JPEG (decoded reduced), a GeoTIFF."""
    folder = tmp_path / "in"
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(96, 128), (150, 110), (64, 80), (200, 260)]):
        write_rgb(folder / f"p{i}.png", make_scene(rng, h, w)[0])
    write_rgb(folder / "big.jpg", make_scene(rng, 900, 1200, n_stones=20)[0])
    geo.write_tiff(
        folder / "ortho.tif", make_scene(rng, 128, 160)[0], geo.make_georeference(UTM33_5MM, 32633)
    )
    return folder


def _same(a, b) -> bool:
    """Equal JSON values, floats to 12 significant digits."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


@needs_ray
def test_ray_masks_are_byte_identical_to_the_local_engine(
    ray_cluster, trained_model, photos, tmp_path, capsys
):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["segment", str(trained_model), str(photos), str(local)]) == 0
    assert main(["segment", str(trained_model), str(photos), str(on_ray), "--engine", "ray"]) == 0
    assert "6 written, 0 skipped" in capsys.readouterr().out
    want = _files(local)
    assert sorted(want) == ["big.png", "ortho.tif", "p0.png", "p1.png", "p2.png", "p3.png"]
    assert _files(on_ray) == want
    assert geo.georeference_or_none(on_ray / "ortho.tif") is not None
    # --shard works on Ray too: shard 2 of 4 of the sorted list (big, ortho, p0, ..., p3)
    shard = tmp_path / "shard"
    args = ["segment", str(trained_model), str(photos), str(shard), "--engine", "ray"]
    assert main([*args, "--shard", "2/4", "--workers", "1"]) == 0
    assert _files(shard) == {n: want[n] for n in ("ortho.tif", "p3.png")}


@needs_ray
def test_a_rerun_redoes_only_the_deleted_outputs(ray_cluster, trained_model, photos, tmp_path):
    from stoneseg_core.io.images import list_images
    from stoneseg_core.jobs.ray_engine import RaySettings
    from stoneseg_core.jobs.ray_segment import iter_segment_ray

    out = tmp_path / "out"
    paths, config = list_images(photos), InferenceConfig(threshold=0.5)
    events, summary = _run(iter_segment_ray(trained_model, paths, out, config, RaySettings()))
    assert summary.written == 6 and not summary.failed and not summary.cancelled
    assert sorted(e.index for e in events) == list(range(1, 7))
    first = _files(out)
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    for name in ("p1.png", "ortho.tif"):
        (out / name).unlink()
        del kept[name]
    time.sleep(0.05)
    events, summary = _run(iter_segment_ray(trained_model, paths, out, config, RaySettings()))
    status = {e.image.name: e.status for e in events}
    assert status == {
        "big.jpg": "skipped",
        "p0.png": "skipped",
        "p2.png": "skipped",
        "p3.png": "skipped",
        "p1.png": "written",
        "ortho.tif": "written",
    }
    assert summary.written == 2 and summary.skipped == 4
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # untouched
    assert _files(out) == first
    assert not [p for p in out.iterdir() if p.name not in first]  # no temporary files left


@needs_ray
def test_a_corrupt_photo_is_named_and_exits_1(
    ray_cluster, trained_model, photos, tmp_path, capsys, monkeypatch
):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (photos / "cut.jpg").write_bytes((photos / "big.jpg").read_bytes()[:300])
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # folders relative to here: the actors run elsewhere
    rc = main(["segment", str(trained_model), "in", "out", "--engine", "ray"])
    captured = capsys.readouterr()
    assert rc == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert sorted(line.split()[1] for line in failed) == ["in/broken.png:", "in/cut.jpg:"]
    assert "6 written, 0 skipped (already there), 2 failed" in captured.out
    assert not (out / "broken.png").exists() and not (out / "cut.png").exists()


@needs_ray
def test_stopping_ends_the_ray_run_cancelled(ray_cluster, trained_model, photos, tmp_path):
    from stoneseg_core.io.images import list_images
    from stoneseg_core.jobs.ray_engine import RaySettings
    from stoneseg_core.jobs.ray_segment import iter_segment_ray

    out = tmp_path / "out"
    gen = iter_segment_ray(
        trained_model,
        list_images(photos),
        out,
        InferenceConfig(threshold=0.5),
        RaySettings(workers=1),
        should_stop=lambda: True,
    )
    events, summary = _run(gen)
    assert summary.cancelled and len(events) == summary.written >= 1
    # the photos already handed to the worker finish, whole; the rest are not started
    present = {p.name for p in out.iterdir()}
    assert len(events) <= len(present) < 6
    assert all(p.suffix in (".png", ".tif") for p in out.iterdir())  # no temporary files
    # a rerun keeps what was written and does the rest
    again = iter_segment_ray(
        trained_model, list_images(photos), out, InferenceConfig(threshold=0.5), RaySettings()
    )
    _, summary = _run(again)
    assert summary.skipped == len(present) and summary.written == 6 - len(present)


@needs_ray
def test_grains_on_ray_writes_the_local_engines_files(
    ray_cluster, trained_model, photos, tmp_path, capsys
):
    (photos / "broken.png").write_bytes(b"not a photo")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    args = ["grains", str(trained_model), str(photos)]
    assert main([*args, str(local), "--mm-per-px", "0.2"]) == 1
    assert main([*args, str(on_ray), "--mm-per-px", "0.2", "--engine", "ray"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("FAILED") == 2 and "broken.png" in captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert failed[0] == failed[1]  # named alike by both engines
    want = _files(local)
    assert {"stones_pooled.csv", "percentiles.json", "p0_stones.csv", "big_instances.png"} <= set(
        want
    )
    assert "ortho_stones.geojson" in want and "broken_stones.csv" not in want
    got = _files(on_ray)  # the tables of every photo, the pooled ones, the report
    assert set(got) == set(want)
    for name in want:
        if name.endswith((".json", ".geojson")):
            # floats in full precision: the last digit may differ with the BLAS threads of
            # the process (this one's are set by earlier tests), so parsed and compared
            assert _same(json.loads(got[name]), json.loads(want[name])), name
        else:
            assert got[name] == want[name], name


@needs_ray
def test_a_cluster_nobody_answers_times_out_with_a_message(trained_model, photos, tmp_path):
    # a process of its own: a hung ray.init is left behind on its thread
    cmd = [sys.executable, "-m", "stoneseg_core", "segment", str(trained_model), str(photos)]
    cmd += [str(tmp_path / "out"), "--engine", "ray", "--address", "127.0.0.1:9"]
    cmd += ["--ray-timeout", "5"]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - t < 90


def test_without_ray_the_message_says_how_to_install_it(
    monkeypatch, trained_model, photos, tmp_path, capsys
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    out = tmp_path / "out"
    rc = main(["segment", str(trained_model), str(photos), str(out), "--engine", "ray"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "stoneseg[ray]" in err and "--engine local" in err and "Traceback" not in err
    assert not out.exists()  # nothing made


def test_ray_options_need_the_ray_engine(trained_model, photos, tmp_path, capsys):
    rc = main(["segment", str(trained_model), str(photos), str(tmp_path / "o"), "--workers", "2"])
    assert rc == 2 and "--engine ray" in capsys.readouterr().err
