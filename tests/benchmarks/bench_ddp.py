"""``stoneseg train`` alone against ``torchrun --nproc_per_node=2`` on Gloo (the CPU): the
training seconds of an epoch (the model's history, validation not counted), interleaved
repetition by repetition, on synthetic scenes.

Both runs see the same crops per epoch; ``--batch-size`` is per process, so with the same
value the 2-process run takes half the steps per process at twice the global batch.

    .venv/bin/python tests/benchmarks/bench_ddp.py [--reps 2] [--epochs 2] [--batch-size 4]
        [--batch-size-alone 8]

On a 2-core machine the two processes share the cores (OMP_NUM_THREADS=1 each, torchrun's
default, against the 1-process run's own threads): the figure says what data parallelism
costs or gains there, not on a multi-GPU workstation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from synthetic import make_dataset  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_seconds(data: Path, out: Path, nproc: int, args: argparse.Namespace) -> float:
    train = ["train", str(data), "--out", str(out), "--epochs", str(args.epochs)]
    batch = args.batch_size if nproc > 1 else args.batch_size_alone or args.batch_size
    train += ["--crop", "64", "--work-size", "128", "--batch-size", str(batch)]
    train += ["--device", "cpu", "--seed", "0"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "stoneseg_core", *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        cmd += ["--master_addr=127.0.0.1", f"--master_port={_port()}", "-m", "stoneseg_core"]
        cmd += train
    subprocess.run(
        cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    info = json.loads((out / "config.json").read_text())
    args.train_photos = len(info["train_images"])
    history = info["history"]
    return sum(h["seconds"] for h in history[1:] or history) / max(1, len(history[1:] or history))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--photos", type=int, default=9)
    p.add_argument(
        "--batch-size-alone",
        type=int,
        default=None,
        help="the 1-process run's batch (default --batch-size; 2 x it = the same global batch)",
    )
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", n=args.photos, size=(96, 128))
        times: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(args.reps):
            for nproc in (1, 2) if rep % 2 == 0 else (2, 1):  # ABBA: who goes first alternates
                out = Path(tmp) / f"m{nproc}-{rep}"
                times[nproc].append(train_seconds(data, out, nproc, args))
                print(f"rep {rep} nproc {nproc}: {times[nproc][-1]:.2f} s/epoch", file=sys.stderr)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    crops = args.train_photos * 8  # 8 crops of each training photo an epoch
    print(
        json.dumps(
            {
                "epoch_seconds": {"1_process": one, "2_gloo_processes": two},
                "crops_per_second": {"1_process": crops / one, "2_gloo_processes": crops / two},
                "speedup_2_vs_1": one / two,
                "batch_size_per_process": args.batch_size,
                "batch_size_alone": args.batch_size_alone or args.batch_size,
                "epochs": args.epochs,
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                "load_before": load_before,
                "load_after": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
