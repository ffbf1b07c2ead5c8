"""A torchrun worker for test_distributed.py: trains with a stop asked on rank 0 alone,
after its third batch, and writes how many batches each rank trained (not a test itself)."""

import json
import sys
from pathlib import Path

from stoneseg_core.io.project import Project
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.training import distributed
from stoneseg_core.training.train import run_training

data, out, report = (Path(a) for a in sys.argv[1:4])
run_dist = distributed.init_from_env("cpu")
asked = 0


def should_stop() -> bool:
    global asked
    asked += 1  # once per batch, on every rank
    return run_dist.rank == 0 and asked >= 3


cfg = TrainConfig(epochs=5, crop=64, work_size=128, batch_size=2, device="cpu")
result = run_training(Project.open(data).labelled_pairs(), out, cfg, should_stop=should_stop)
(report / f"rank{run_dist.rank}.json").write_text(
    json.dumps({"batches": asked, "cancelled": result.cancelled, "best_epoch": result.best_epoch})
)
distributed.shutdown()
