"""Training under torchrun: two Gloo processes on the CPU train one model (distributed.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import make_dataset

from stoneseg_core.model.network import load_model, read_model_info
from stoneseg_core.training import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alone_nothing_is_distributed(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun()
    assert distributed.init_from_env("cpu") is None and distributed.current() is None
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: as alone
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.init_from_env("cpu") is None


def _torchrun_train(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "stoneseg_core",
        "-v",
        "train",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--crop",
        "64",
        "--work-size",
        "128",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "STONESEG_DIST_TIMEOUT": "120"}


def test_torchrun_two_gloo_processes_train_one_model(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=(96, 128))
    out = tmp_path / "models" / "model"
    cmd = _torchrun_train(data, out, epochs=1)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone reports, and says how many processes trained
    assert proc.stdout.count("Best epoch 1 of 1") == 1
    assert "2 processes x batch 2 = global batch 4 (gloo)" in proc.stderr
    # the ranks trained on disjoint shares of the epoch's crops, together all of them
    shares = {
        int(rank): set(map(int, re.findall(r"\d+", crops)))
        for rank, crops in re.findall(r"rank (\d) of 2, epoch 1: crops \[([\d, ]*)\]", proc.stderr)
    }
    assert set(shares) == {0, 1}
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(range(3 * 8))  # 3 training photos x 8 crops each
    # one valid model folder, loadable by the project's loader, one epoch in its history
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["model"]
    net, info = load_model(out, "cpu")
    assert info.work_size == 128 and len(read_model_info(out).history) == 1
    assert sum(p.numel() for p in net.parameters()) > 0


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The worker of torchrun ``launcher_pid`` whose environment says RANK=``rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher_pid and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank in /proc")
def test_a_rank_that_dies_ends_the_job_and_the_best_model_stays(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=(96, 128))
    out = tmp_path / "model"
    proc = subprocess.Popen(
        _torchrun_train(data, out, epochs=50),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 180
        while not (out / "config.json").is_file():  # the first best model is saved
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)  # torchrun ends rank 0 too, at once
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "rank      : 1" in err and "SIGKILL" in err  # torchrun names the rank that died
    net, info = load_model(out, "cpu")  # what was saved is whole
    assert info.metrics["best_epoch"] >= 1


def test_a_stop_on_rank_0_stops_every_rank_after_the_same_batch(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=(96, 128))
    worker = Path(__file__).with_name("ddp_stop_worker.py")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(worker),
        str(data),
        str(tmp_path / "model"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # both stopped after batch 3 of epoch 1 and kept the partial epoch's model (best epoch 1)
    assert reports[0] == reports[1] == {"batches": 3, "cancelled": True, "best_epoch": 1}
    assert load_model(tmp_path / "model", "cpu")[1].metrics["cancelled"] is True
