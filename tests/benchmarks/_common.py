"""Shared helpers for the benchmarks: the data, a quickly trained model, fair timing, JSON out.

The benchmarks run on shared, noisy machines. Every speed figure is therefore a ratio
against a baseline measured in the same process, interleaved repetition by repetition
(ABAB..., alternating who goes first), and summarised by medians; the load average before
and after is printed with the figures so a reader can judge the noise.

Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from stoneseg_core.model.scale import ScalePolicy

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "stones-dev"
log = logging.getLogger("bench")


# ---------------------------------------------------------------------------------- data


def data_dir(arg: str | None) -> Path:
    """The labelled photos: --data, else $STONESEG_BENCH_DATA, else ../shared/data/stones-dev."""
    path = Path(arg or os.environ.get("STONESEG_BENCH_DATA") or DEFAULT_DATA)
    if not (path / "images").is_dir() or not (path / "masks").is_dir():
        sys.exit(f"No labelled data at {path} (needs images/ and masks/); pass --data DIR.")
    return path


def labelled_pairs(root: Path) -> list[tuple[Path, Path]]:
    from stoneseg_core.io.images import list_images

    pairs = []
    for img in list_images(root / "images"):
        mask = root / "masks" / f"{img.stem}.png"
        if mask.is_file():
            pairs.append((img, mask))
    return pairs


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with images/ and masks/ (default: stones-dev)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda or auto: where BOTH StoneSeg and the baseline run (default cpu)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def setup(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    global DEVICE
    from stoneseg_core.model.device import resolve_device

    DEVICE = resolve_device(args.device)


DEVICE = None  # set by setup(): the torch.device both sides of a benchmark run on


def device():
    import torch

    return DEVICE if DEVICE is not None else torch.device("cpu")


# --------------------------------------------------------------------------------- model


def bench_model(model_arg: str | None, data: Path, epochs: int = 3, seed: int = 0) -> Path:
    """A real trained model folder: --model, or a short default training on ``data``, cached.

    Random weights give near-constant outputs, which would make output agreement look
    better than it is; a few epochs of real training give a realistic network.
    """
    if model_arg:
        return Path(model_arg)
    from stoneseg_core.model.config import TrainConfig
    from stoneseg_core.model.network import CONFIG_FILE
    from stoneseg_core.training.train import run_training

    cache = Path(tempfile.gettempdir()) / f"stoneseg-bench-model-{data.name}-e{epochs}-s{seed}"
    if (cache / CONFIG_FILE).is_file():
        log.info("using cached benchmark model %s", cache)
        return cache
    log.info("training a %d-epoch benchmark model on %s (cached in %s)", epochs, data, cache)
    t = time.perf_counter()
    partial = Path(tempfile.mkdtemp(prefix=cache.name + ".partial-", dir=cache.parent))
    run_training(labelled_pairs(data), partial, TrainConfig(epochs=epochs, seed=seed))
    try:
        partial.rename(cache)  # whole or not at all: a run that stops midway is not reused
    except OSError:  # another run finished first
        log.info("%s already made by another run", cache)
    log.info("benchmark model trained in %.0f s", time.perf_counter() - t)
    return cache


# -------------------------------------------------------------------------------- timing


def interleaved(
    candidates: dict[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each candidate; candidates alternate within every repetition and
    the order is reversed on odd repetitions, so drifting background load hits all alike."""
    names = list(candidates)
    for _ in range(warmup):
        for n in names:
            candidates[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            candidates[n]()
            times[n].append(time.perf_counter() - t)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(base: list[float], cand: list[float]) -> float:
    """Median over repetitions of base/candidate time: the speed-up, robust to load drift."""
    return statistics.median(b / c for b, c in zip(base, cand))


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (
                platform.processor() or platform.machine()
            ):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                # the vector units the figures depend on (a VM's host can change between runs)
                flags = [
                    f
                    for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
                    if f in have
                ]
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": str(device()),
        "python": platform.python_version(),
    }


def peak_rss_mb() -> tuple[float, float]:
    """(VmHWM, VmRSS) of this process in MiB, from /proc/self/status (Linux)."""
    hwm = rss = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return hwm, rss


def emit(result: dict) -> None:
    """The figures as the last line of output: one JSON object."""
    print(json.dumps(result, default=_jsonable), flush=True)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x))


def r3(x: float) -> float:
    return float(round(x, 3))


# ------------------------------------------------------------------------ masks & scoring


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------- the notebook's way


NOTEBOOK_SIZE = 320
NOTEBOOK_COPIES = ("original", "hflip", "vflip", "rot90")


def notebook_copy(image: np.ndarray, kind: str) -> np.ndarray:
    if kind == "hflip":
        return np.ascontiguousarray(image[:, ::-1])
    if kind == "vflip":
        return np.ascontiguousarray(image[::-1])
    if kind == "rot90":
        return np.ascontiguousarray(np.rot90(image))
    return image


def write_notebook_copies(
    pairs: list[tuple[Path, Path]], out: Path, copies=NOTEBOOK_COPIES
) -> list[tuple[Path, Path]]:
    """The notebook's offline augmentation: full-size flipped/rotated copies written to disk
    (JPEG quality 95 for photos, PNG for masks), which its loader then decodes at every step."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for img_path, mask_path in pairs:
        image = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        for kind in copies:
            ip = out / f"{img_path.stem}_{kind}.jpg"
            mp = out / f"{img_path.stem}_{kind}_mask.png"
            cv2.imwrite(str(ip), notebook_copy(image, kind), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(mp), notebook_copy(mask, kind))
            written.append((ip, mp))
    return written


class NotebookDataset:
    """The notebook's loader: decode the full-size JPEG and mask from disk with cv2 at every
    step, squash to 320x320, scale to [0, 1] and normalise; nothing is cached."""

    def __init__(self, pairs: list[tuple[Path, Path]], size: int = NOTEBOOK_SIZE):
        self.pairs, self.size = pairs, size
        self.mean = np.array([0.485, 0.456, 0.406], np.float32)
        self.std = np.array([0.229, 0.224, 0.225], np.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        import torch

        img_path, mask_path = self.pairs[i]
        image = cv2.cvtColor(cv2.imread(str(img_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        image = cv2.resize(image, (self.size, self.size))
        mask = cv2.resize(mask, (self.size, self.size))
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        y = (mask > 127).astype(np.float32)[None]
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(y)


def notebook_model(bn_momentum: float | None = None):
    """The notebook's network: SMP's U-Net as it comes (efficientnet-b0, random weights here),
    optionally with another BatchNorm momentum (--notebook-bn-momentum)."""
    import segmentation_models_pytorch as smp
    import torch

    model = smp.Unet("efficientnet-b0", encoder_weights=None, in_channels=3, classes=1)
    if bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = bn_momentum
    return model


def add_notebook_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notebook-bn-momentum",
        type=float,
        default=None,
        help="give the notebook's U-Net this BatchNorm momentum (default: as SMP ships it)",
    )


class NotebookLoss:
    """Plain Dice + BCE on logits."""

    def __init__(self):
        import torch

        self.bce = torch.nn.BCEWithLogitsLoss()

    def __call__(self, logits, target):
        import torch

        p = torch.sigmoid(logits)
        inter = (p * target).sum()
        dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
        return dice + self.bce(logits, target)


def iter_notebook_training(
    model,
    dataset,
    epochs: int | None = None,
    samples: int | None = None,
    batch: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
):
    """The notebook's loop: shuffled batches of 16, Adam, fp32, NCHW, no loader workers.

    Runs ``epochs`` passes, or stops after ``samples`` samples; yields (samples seen, loss)
    after every optimisation step.
    """
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
    dev = device()
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = NotebookLoss()
    model.train()
    seen = 0
    epoch = 0
    while True:
        epoch += 1
        for x, y in loader:
            if samples is not None and seen + len(x) > samples:
                x, y = x[: samples - seen], y[: samples - seen]
            x, y = x.to(dev), y.to(dev)  # plain copies from pageable memory, as a notebook does
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            seen += len(x)
            yield seen, float(loss.detach())
            if samples is not None and seen >= samples:
                return
        if epochs is not None and epoch >= epochs:
            return


def notebook_predict(
    model,
    image: np.ndarray,
    size: int = NOTEBOOK_SIZE,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
) -> np.ndarray:
    """Probability at the photo's own size: squash to 320x320, predict in eval mode, resize back."""
    import torch

    mean = np.array(mean, np.float32)
    std = np.array(std, np.float32)
    h, w = image.shape[:2]
    x = (cv2.resize(image, (size, size)).astype(np.float32) / 255.0 - mean) / std
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(x.transpose(2, 0, 1).copy())[None]
        logits = model(x.to(next(model.parameters()).device))
    prob = torch.sigmoid(logits)[0, 0].cpu().numpy()
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------ the network's reading
# network_reading: at most this many photos, kept within READ_RATIO_LIMIT times the masks'
# own figure either way
READING_PHOTOS = 16
READ_RATIO_LIMIT = 4.0


def network_reading(
    policy: ScalePolicy,
    photos: list[tuple[np.ndarray, np.ndarray]],
    stone_mask_at: Callable[[np.ndarray], np.ndarray],
) -> float | None:
    """The typical stone the network reads on ``photos`` where their masks read
    ``policy.stone_px``: ``stone_px`` times the median ratio of the network's typical stone
    to the mask's (at most READ_RATIO_LIMIT either way), or None when no photo has stones in
    both.

    ``photos``: (image, mask) at the scale the network saw them (working pixels);
    ``stone_mask_at(image)`` -> the network's stone mask of it. Each photo is measured on the
    windows the estimate would use (``sample_windows`` at factor 1), over up to
    READING_PHOTOS photos spread over the list.

    Measured as a target for the estimate (a network that merges touching stones reads
    every stone bigger than its mask, the standard one too), and not used as one: on 4x
    mosaics of the conveyor tiles it halved the estimate's distance from the masks' scale,
    but on the dev photos, whose network-to-mask ratios differ from photo to photo (0.67 to
    2.54 on one fold), it lost 0.05 of mean IoU by stone size (docs/scale.md, "Scale by stone
    size"), so it lives here, for ``bench_scale.py --reading`` and ``bench_accuracy.py
    --also-scale stone-size``."""
    from stoneseg_core.model.scale import sample_windows, typical_stone_px, window_side

    if not photos or policy.stone_px <= 0:
        return None
    pick = np.unique(np.linspace(0, len(photos) - 1, min(len(photos), READING_PHOTOS)).round())
    side = window_side(policy)
    ratios = []
    for i in pick.astype(int):
        image, mask = photos[i]
        windows = sample_windows(image.shape[0], image.shape[1], 1.0, side)
        seen = typical_stone_px([stone_mask_at(image[y0:y1, x0:x1]) for y0, x0, y1, x1 in windows])
        truth = typical_stone_px([mask[y0:y1, x0:x1] for y0, x0, y1, x1 in windows])
        if seen is not None and truth is not None:
            ratios.append(seen / truth)
    if not ratios:
        return None
    ratio = float(np.clip(np.median(ratios), 1 / READ_RATIO_LIMIT, READ_RATIO_LIMIT))
    return policy.stone_px * ratio


def reading_of(seg, pairs) -> float | None:
    """``network_reading`` of ``seg`` on the photos of ``pairs`` (image, mask paths), each at
    the scale its policy trains on it."""
    from stoneseg_core.io.images import read_mask
    from stoneseg_core.model.scale import mask_by, resize_by

    policy = seg.scale_policy
    photos = []
    for image_path, mask_path in pairs:
        image = read_rgb(image_path)
        mask = read_mask(mask_path, image.shape[:2])
        f = policy.for_training(mask)
        photos.append((resize_by(image, f), mask_by(mask, f)))
    threshold = seg.config.threshold
    return network_reading(policy, photos, lambda x: seg.probability_at_work_scale(x) >= threshold)
