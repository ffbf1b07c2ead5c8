"""Training under torchrun: two Gloo processes on the CPU train one model (distributed.py)."""

import os
import re
import socket
import subprocess
import sys

from synthetic import make_dataset

from stoneseg_core import distributed
from stoneseg_core.model import load_model, read_model_info


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


def test_torchrun_two_gloo_processes_train_one_model(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=(96, 128))
    out = tmp_path / "models" / "model"
    cmd = [
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
        "1",
        "--crop",
        "64",
        "--work-size",
        "128",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STONESEG_DIST_TIMEOUT": "120"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
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
