"""Training throughput and validation IoU: StoneSeg's training against the notebook's loop.

StoneSeg: ``iter_training`` with the default TrainConfig (crops of 256 px from photos
decoded once and cached at the default working scale (384), batch 8, AdamW, warm-up + cosine, Dice+BCE),
for ``--epochs`` epochs. The notebook's loop: every step decodes the full-size JPEGs from
disk with cv2 (its four offline copies per photo: original, h-flip, v-flip, 90-degree
turn), squashes them to 320x320, fp32 NCHW, batch 16, no loader workers, Dice+BCE, Adam
lr 3e-3, SMP's U-Net as it comes. Both get the same training photos and the same number of
optimisation samples (StoneSeg's epochs x samples per image x photos), and are scored the
same way on the same held-out photos (pooled IoU at each photo's own size).

The two loops run in this process in lock step (whichever has seen fewer samples takes the
next step), so background load hits both alike. "Loop" throughput counts only the time of
the training steps (data loading included, StoneSeg's per-epoch validation excluded);
"wall" counts everything from start to end.

    python tests/benchmarks/bench_training.py [--epochs 3] [--no-layout-check]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    NOTEBOOK_SIZE,
    NotebookDataset,
    add_common_args,
    add_notebook_args,
    data_dir,
    emit,
    interleaved,
    iter_notebook_training,
    labelled_pairs,
    load_average,
    machine,
    median,
    notebook_model,
    notebook_predict,
    paired_ratio,
    r3,
    read_rgb,
    setup,
    write_notebook_copies,
)

from stoneseg_core.io.images import read_mask
from stoneseg_core.io.project import split_by_image
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.scoring.pixels import confusion, pooled
from stoneseg_core.training.events import BatchProgress, EpochSummary
from stoneseg_core.training.train import iter_training

log = logging.getLogger("bench_training")


def score_notebook(model, val_pairs) -> dict:
    counts = []
    for img_path, mask_path in val_pairs:
        image = read_rgb(img_path)
        prob = notebook_predict(model, image)
        counts.append(confusion(prob >= 0.5, read_mask(mask_path, image.shape[:2])))
    return {k: r3(v) for k, v in pooled(counts).to_dict().items()}


def layout_check(crop: int, batch: int, reps: int) -> dict:
    """One training step of the default U-Net, NCHW against channels_last (what train.py uses on CPU)."""
    from stoneseg_core.model.network import build_model
    from stoneseg_core.training.train import DiceBCELoss

    torch.manual_seed(0)
    x = torch.randn(batch, 3, crop, crop)
    y = (torch.rand(batch, 1, crop, crop) > 0.5).float()
    loss_fn = DiceBCELoss()
    nets = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model = build_model().train().to(memory_format=fmt)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        nets[name] = (model, opt, x.contiguous(memory_format=fmt))

    def step(name):
        model, opt, inp = nets[name]

        def f():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(inp), y).backward()
            opt.step()

        return f

    times = interleaved({n: step(n) for n in nets}, reps, warmup=1)
    return {
        "batch": batch,
        "crop": crop,
        "ms_per_step": {k: round(median(v) * 1000) for k, v in times.items()},
        "channels_last_speedup_vs_nchw": r3(paired_ratio(times["nchw"], times["channels_last"])),
    }


def data_pipeline_cost(pairs, cfg: TrainConfig, n: int = 64) -> dict:
    """Seconds per sample of StoneSeg's cached crop + augmentation, and of the notebook's decode."""
    from stoneseg_core.model.network import IMAGENET_MEAN, IMAGENET_STD
    from stoneseg_core.training.dataset import CropDataset, load_samples

    samples = load_samples(pairs, cfg.work_size, keep_full_mask=False)
    ds = CropDataset(samples, cfg.crop, cfg.samples_per_image, IMAGENET_MEAN, IMAGENET_STD, seed=0)
    t = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    stoneseg = (time.perf_counter() - t) / n
    nb = NotebookDataset(pairs)
    t = time.perf_counter()
    for i in range(len(nb)):
        nb[i]
    notebook = (time.perf_counter() - t) / len(nb)
    return {
        "stoneseg_ms_per_sample": round(stoneseg * 1000, 1),
        "notebook_ms_per_sample": round(notebook * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument(
        "--epochs", type=int, default=3, help="StoneSeg epochs (the notebook gets as many samples)"
    )
    ap.add_argument("--seed", type=int, default=0)
    add_notebook_args(ap)
    ap.add_argument("--no-layout-check", action="store_true")
    ap.add_argument("--layout-reps", type=int, default=5)
    args = ap.parse_args()
    setup(args)
    load_before = load_average()
    root = data_dir(args.data)
    pairs = labelled_pairs(root)
    stems = [p.stem for p, _ in pairs]
    train_stems, val_stems = split_by_image(stems, 0.2, None, args.seed)
    by_stem = dict(zip(stems, pairs))
    train_pairs = [by_stem[s] for s in train_stems]
    val_pairs = [by_stem[s] for s in val_stems]
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, val_images=tuple(val_stems))
    per_epoch = (len(train_pairs) * cfg.samples_per_image // cfg.batch_size) * cfg.batch_size
    budget = per_epoch * cfg.epochs
    log.info("train %s, validate %s; %d samples each", train_stems, val_stems, budget)
    result: dict = {
        "benchmark": "training",
        "machine": machine(),
        "train_images": train_stems,
        "val_images": val_stems,
    }

    with tempfile.TemporaryDirectory(prefix="stoneseg-train-bench-") as tmp:
        tmp = Path(tmp)
        copies = write_notebook_copies(train_pairs, tmp / "notebook_copies")
        torch.manual_seed(args.seed)
        nb_model = notebook_model(args.notebook_bn_momentum)
        nb_ds = NotebookDataset(copies)
        gens = {
            "stoneseg": iter_training(pairs, tmp / "model", cfg),
            "notebook": iter_notebook_training(nb_model, nb_ds, samples=budget, seed=args.seed),
        }
        seen = {"stoneseg": 0, "notebook": 0}
        loop_s = {"stoneseg": 0.0, "notebook": 0.0}
        first_step_s = {}
        steps = {"stoneseg": 0, "notebook": 0}
        own_s = {"stoneseg": 0.0, "notebook": 0.0}  # all of each one's time slices
        val_s = 0.0
        wall0 = time.perf_counter()
        last: EpochSummary | None = None
        active = set(gens)
        while active:
            name = min(active, key=lambda n: (seen[n], n != "stoneseg"))
            t = time.perf_counter()
            try:
                event = next(gens[name])
            except StopIteration as stop:
                if name == "stoneseg":
                    result["stoneseg_model_seconds"] = r3(stop.value.seconds)
                active.discard(name)
                continue
            dt = time.perf_counter() - t
            own_s[name] += dt
            if name == "stoneseg" and isinstance(event, EpochSummary):
                val_s += dt
                last = event
                log.info(
                    "stoneseg epoch %d: loss %.3f, val IoU %.3f",
                    event.epoch,
                    event.train_loss,
                    event.val.iou,
                )
                continue
            steps[name] += 1
            if steps[name] == 1:
                first_step_s[name] = dt  # StoneSeg's includes decoding and caching the photos
            else:
                loop_s[name] += dt
            if name == "stoneseg":
                assert isinstance(event, BatchProgress)
                seen[name] += cfg.batch_size
            else:
                seen[name] = event[0]
            if steps[name] % 10 == 0:
                log.info("%s: %d samples, %.1f s in steps", name, seen[name], loop_s[name])
        t_nb_eval = time.perf_counter()
        nb_val = score_notebook(nb_model, val_pairs)
        nb_eval_s = time.perf_counter() - t_nb_eval

    def throughput(name: str, side: int, batch: int) -> dict:
        n = seen[name] - batch  # the first step is timed apart
        ips = n / loop_s[name]
        return {
            "samples": seen[name],
            "steps": steps[name],
            "batch": batch,
            "input_px": side,
            "loop_images_per_s": r3(ips),
            "loop_megapixels_per_s": r3(ips * side * side / 1e6),
            "first_step_s": r3(first_step_s[name]),
        }

    ss = throughput("stoneseg", cfg.crop, cfg.batch_size)
    ss.update(
        {
            "epochs": cfg.epochs,
            "validation_s": r3(val_s),
            "val_last_epoch": {k: r3(v) for k, v in last.val.to_dict().items()},
            "val_best_epoch": {"epoch": last.best_epoch, "iou": r3(last.best_iou)},
        }
    )
    ss["own_wall_s"] = r3(own_s["stoneseg"])
    ss["wall_images_per_s"] = r3(seen["stoneseg"] / own_s["stoneseg"])
    nb = throughput("notebook", NOTEBOOK_SIZE, 16)
    nb.update(
        {
            "epochs": r3(seen["notebook"] / len(nb_ds)),
            "copies": len(nb_ds),
            "bn_momentum": args.notebook_bn_momentum
            if args.notebook_bn_momentum is not None
            else "smp default",
            "val": nb_val,
            "eval_s": r3(nb_eval_s),
        }
    )
    nb["own_wall_s"] = r3(own_s["notebook"])
    nb["wall_images_per_s"] = r3(seen["notebook"] / own_s["notebook"])
    result["stoneseg"], result["notebook"] = ss, nb
    result["speedup_loop_images_per_s"] = r3(ss["loop_images_per_s"] / nb["loop_images_per_s"])
    result["speedup_wall_images_per_s"] = r3(ss["wall_images_per_s"] / nb["wall_images_per_s"])
    result["speedup_loop_megapixels_per_s"] = r3(
        ss["loop_megapixels_per_s"] / nb["loop_megapixels_per_s"]
    )
    result["wall_s"] = r3(time.perf_counter() - wall0)
    if not args.no_layout_check:
        result["data_pipeline"] = data_pipeline_cost(train_pairs, cfg)
        result["layout_check"] = layout_check(cfg.crop, cfg.batch_size, args.layout_reps)
    result["targets"] = {
        "images_per_s_ge_2x": result["speedup_loop_images_per_s"] >= 2.0,
        "val_iou_at_least_notebook": ss["val_last_epoch"]["iou"] >= nb["val"]["iou"],
    }
    result["load_average_before_after"] = [load_before, load_average()]
    emit(result)


if __name__ == "__main__":
    main()
