"""The order to label photos in: the ones the model is least sure of, but not many of one kind.

Ranking the unlabelled photos by the model's uncertainty alone (``inference.uncertainty``)
picks many photos of one kind when a young model is unsure of all of them: on conveyor-train
a model trained on four tiles was unsure over the bare belt, and the uncertainty order
labelled empty belt for 12 picks of 12 (docs/stones.md, "What to label next"). This module
spreads the picks over what the photos look like: each photo has a small **look** (colour and
texture statistics of the photo shrunk to 64 px, ``appearance``; the window measures it on the
thumbnail), the looks are grouped into **kinds** (k-means), and each pick goes to the kind with
the smallest share of its photos labelled, where it is the photo the model is least sure of
(``useful_order``). A photo the model is unsure of, of a kind nothing labelled covers, comes
first; the second photo of a kind waits until the other kinds had their turn.

No torch, no Qt: numbers in, an order out.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np

LOOK_SIZE = 64  # the photo is shrunk to this square before its look is measured
# the photos are grouped into kinds by their looks, at most KINDS and about PER_KIND photos
# to a kind (a folder of under 2 x PER_KIND photos is one kind: its order is by score); the
# first DIVERSE picks are spread over the kinds, the rest follow by score alone
KINDS = 24
PER_KIND = 5
DIVERSE = 12
# a photo the model is this sure of (under 5 % of its stone unsure) takes no place in the
# spread: it has little to teach by the model's own measure, and comes in the by-score rest
SURE_BELOW = 0.05
# texture: bins of the gradient magnitude of L (0..255 scale), log-spaced edges
_GRAD_EDGES = np.array([0, 2, 4, 8, 16, 32, 64, 1e9], np.float32)
_L_BINS = 8


def appearance(image: np.ndarray) -> np.ndarray:
    """The look of a photo (uint8 RGB (h, w, 3), or grey (h, w)): float32 vector of 21 numbers,
    the mean and spread of L, a and b (CIELAB), the share of L in 8 bins and of the gradient
    magnitude of L in 7 bins, measured on the photo shrunk to ``LOOK_SIZE`` px square."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3])
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    small = cv2.resize(img, (LOOK_SIZE, LOOK_SIZE), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    light = lab[:, :, 0]
    stats = np.concatenate([lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)]) / 255.0
    l_hist = np.histogram(light, bins=_L_BINS, range=(0, 256))[0] / light.size
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3) / 4
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3) / 4
    grad = np.hypot(gx, gy)
    g_hist = np.histogram(grad, bins=_GRAD_EDGES)[0] / grad.size
    return np.concatenate([stats, l_hist, g_hist]).astype(np.float32)


def useful_order(
    candidates: Sequence[tuple[Hashable, float, np.ndarray]],
    labelled: Sequence[np.ndarray] = (),
    n: int | None = None,
    seed: int = 0,
) -> list[Hashable]:
    """The ``candidates`` (key, uncertainty score 0..1, look) in the order to label them, the
    first ``n`` (all by default). ``labelled``: the looks of the photos labelled already.

    The looks of every photo (standardised feature by feature) are grouped into kinds
    (k-means, seeded by ``seed``; ``KINDS`` at most, about ``PER_KIND`` photos to a kind).
    Then, one pick at a time, the kind with the smallest share of its photos labelled or
    picked (on a tie the larger kind, then the kind whose best candidate has the higher
    score) gives its candidate the model is least sure of; candidates scoring under
    ``SURE_BELOW`` are left to the rest. After ``DIVERSE`` picks the rest follows by score
    alone: the user labels a few and trains again before then. Equal scores keep the order
    given."""
    if not candidates:
        return []
    count = len(candidates) if n is None else min(int(n), len(candidates))
    scores = np.array([max(0.0, float(c[1])) for c in candidates], np.float64)
    looks = np.array([np.asarray(c[2], np.float64) for c in candidates])
    done = np.array([np.asarray(v, np.float64) for v in labelled]).reshape(-1, looks.shape[1])
    kind, k = _kinds(np.concatenate([looks, done]), seed)
    size = np.bincount(kind, minlength=k)
    taken = np.bincount(kind[len(looks) :], minlength=k).astype(np.float64)
    by_score = sorted(range(len(looks)), key=lambda i: (-scores[i], i))
    members: dict[int, list[int]] = {c: [] for c in range(k)}
    for i in by_score:
        if scores[i] >= SURE_BELOW:
            members[int(kind[i])].append(i)

    def turn(c: int) -> tuple:  # the least covered kind; the larger; the least sure photo
        return (taken[c] / size[c], -size[c], -scores[members[c][0]], c)

    order: list[int] = []
    while len(order) < min(count, DIVERSE):
        open_kinds = [c for c in range(k) if members[c]]
        if not open_kinds:
            break
        c = min(open_kinds, key=turn)
        order.append(members[c].pop(0))
        taken[c] += 1
    chosen = set(order)
    order += [i for i in by_score if i not in chosen][: count - len(order)]
    return [candidates[i][0] for i in order]


def _kinds(looks: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Each look's kind (k-means over the standardised looks) and the number of kinds."""
    k = min(KINDS, len(looks) // PER_KIND)
    if k < 2:
        return np.zeros(len(looks), int), 1
    from scipy.cluster.vq import kmeans2

    spread = looks.std(0)
    spread[spread < 1e-9] = 1.0
    z = (looks - looks.mean(0)) / spread
    with warnings.catch_warnings():  # a kind left empty is no error: it has no member
        warnings.simplefilter("ignore")
        _, kind = kmeans2(z, k, minit="++", rng=np.random.default_rng(seed))
    return kind.astype(int), k
