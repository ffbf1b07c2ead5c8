"""Build the stone model installed with StoneSeg (``resources/models/stones-lite2``).

Trained only on the licensed shared sets: conveyor-train (CC BY 4.0) and gravel-fh-train
(BSD-3); never stones-dev (no licence). Held out, so the model can be measured on tiles it
never saw: the belt tiles of ``bench_stones.py``'s conveyor fold 0 (every third tile with
stones), the 12 tiles of the bundled sample (``resources/sample``) and gravel tile 0 (``bench_stones.py --set gravel`` fold 0). Validation (the best
epoch and the threshold): gravel tile 1 and every sixth remaining belt tile with stones. The
five remaining gravel tiles are listed ``--gravel-copies`` times (linked under other names in
a scratch folder) so that 5 river-gravel tiles are not drowned by ~120 belt tiles.

EfficientNet-Lite2 from ImageNet (``--encoder``; the installed model's since session 15: it
fine-tunes better on both held-out sets, docs/stones.md), the app's defaults otherwise
(mask+boundary, long side 384, lr 5e-4). The
weights are stored as float16 (half the size; ``--fp32`` keeps them as trained, and
``bench_stones.py --targets stones-as-is --stone-model DIR`` scores either).

    python tests/benchmarks/make_stone_model.py --out /tmp/stones-lite2 [--epochs 12]

Prints one JSON line last: what was trained on, the held-out tiles, seconds, best epoch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, emit, machine, setup
from bench_stones import SETS, folds_of, triples

from stoneseg_core.io.images import read_mask
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.network import to_float16
from stoneseg_core.model.stone_model import PROVENANCE
from stoneseg_core.training.events import EpochSummary
from stoneseg_core.training.train import run_training

log = logging.getLogger("make_stone_model")

STONE_ENCODER = "tu-tf_efficientnet_lite2"  # the installed stone model's encoder


def split_sets(gravel_copies: int, scratch: Path) -> tuple[list, list[str], dict]:
    """(training triples, validation stems, what was held out)."""
    belt = triples(SETS["conveyor"])
    _, test_b = folds_of("conveyor", belt, 3, len(belt))[0]
    # the bundled sample's tiles too: a new user's first Predict on them must be honest
    sample = {p.stem for p in (REPO / "resources" / "sample" / "images").iterdir()}
    held_b = {t[0].stem for t in test_b} | sample
    rest = [t for t in belt if t[0].stem not in held_b]
    gravel = triples(SETS["gravel"])
    val_g, held_g = gravel[1], gravel[0]
    stony = [t for t in rest if read_mask(t[1]).any()]
    val_b = stony[::6]
    val_stems = [t[0].stem for t in val_b] + [val_g[0].stem]
    pairs = [*rest, val_g]
    for k in range(gravel_copies):
        for img, mask, inst in gravel[2:]:
            if k == 0:
                pairs.append((img, mask, inst))
                continue
            stem = f"{img.stem}~{k}"
            for sub, src, suffix in (
                ("images", img, img.suffix),
                ("masks", mask, ".png"),
                ("instances", inst, ".png"),
            ):
                (scratch / sub).mkdir(parents=True, exist_ok=True)
                (scratch / sub / f"{stem}{suffix}").symlink_to(src)
            pairs.append(
                (
                    scratch / "images" / f"{stem}{img.suffix}",
                    scratch / "masks" / f"{stem}.png",
                    scratch / "instances" / f"{stem}.png",
                )
            )
    held = {"conveyor": sorted(held_b), "gravel": [held_g[0].stem]}
    return pairs, val_stems, held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--gravel-copies", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32", action="store_true", help="keep the float32 weights")
    ap.add_argument(
        "--encoder",
        default=STONE_ENCODER,
        help=f"default {STONE_ENCODER} (the installed model's; its ImageNet weights come with "
        "the lite extra); e.g. tu-tf_efficientnet_lite0",
    )
    add_common_args(ap)
    args = ap.parse_args()
    setup(args)
    with tempfile.TemporaryDirectory(prefix="stone-model-") as scratch:
        pairs, val_stems, held = split_sets(args.gravel_copies, Path(scratch))
        cfg = TrainConfig(
            epochs=args.epochs,
            seed=args.seed,
            val_images=tuple(val_stems),
            device=args.device,
            encoder=args.encoder,
        )
        t0 = time.perf_counter()

        def progress(ev) -> None:
            if isinstance(ev, EpochSummary):
                log.info(
                    "epoch %d/%d: loss %.3f, validation IoU %.3f (%.0f s)",
                    ev.epoch,
                    ev.epochs,
                    ev.train_loss,
                    ev.val.iou,
                    ev.seconds,
                )

        result = run_training(pairs, args.out, cfg, on_event=progress)
    provenance = {**PROVENANCE, "held_out": held, "validation": val_stems}
    size = to_float16(args.out, provenance) if not args.fp32 else None
    emit(
        {
            "benchmark": "make-stone-model",
            "photos": len(pairs),
            "validation": val_stems,
            "held_out": held,
            "best_epoch": result.best_epoch,
            "best_val_iou": round(result.best.iou, 4) if result.best else None,
            "seconds": round(time.perf_counter() - t0),
            "weights_bytes": size,
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
