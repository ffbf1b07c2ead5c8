"""How unsure a model is of a photo: a map (where) and a score (how much), to choose what to
label next.

Two definitions, measured against how wrong the predictions really were on held-out belt
tiles (``tests/benchmarks/bench_uncertainty_score.py``; figures in docs/stones.md, "What to
label next"):

- ``"threshold"`` (the default): closeness of the stone probability to the model's threshold,
  1 at the threshold and 0 at 0 or 1 (``threshold_closeness``). It needs no network pass
  beyond the prediction's own: it is measured on the probability at the model's working scale,
  where the prediction was made.
- ``"flips"``: disagreement of the photo's predictions flipped left-right and upside down
  (each un-flipped): twice the per-pixel standard deviation of the stone probability
  (``flip_disagreement``). It costs two more network passes.

A pixel is "unsure" where its map is at least ``UNSURE`` (for the threshold definition and a
threshold of 0.5: a probability between 0.25 and 0.75). A photo's score is its unsure pixels
over the pixels that are stone or unsure, but over no less than ``MIN_STONE_SHARE`` of the
photo: the share of what the model calls stone, or hesitates over, that it is unsure of (an
estimate of its 1 - IoU). The floor keeps a photo of almost empty belt, where a few unsure
pixels are all there is, from scoring 1 (without it the score ranked belt tiles against
their error at Spearman -0.44 instead of +0.72). A photo of empty belt the model is sure of
scores 0. Scores are comparable between photos predicted by one model, at any working scale.

No torch, no Qt: the map and score come from arrays; ``flip_disagreement`` is given the
network as a function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STATE_KEY = "uncertainty"  # stoneseg.json: {photo stem: UncertaintyScore.to_dict()}
DEFINITIONS = ("threshold", "flips")
DEFAULT_DEFINITION = "threshold"
UNSURE = 0.5  # a pixel whose uncertainty (0..1) is at least this is counted as unsure
# the score's denominator (stone or unsure pixels) is at least this share of the photo
MIN_STONE_SHARE = 0.1
# the flips a "flips" measure adds to the photo as it is: left-right, upside down (array axes)
FLIP_AXES: tuple[tuple[int, ...], ...] = ((1,), (0,))


@dataclass(frozen=True)
class UncertaintyScore:
    """A photo's uncertainty in a few numbers (what the project's state keeps of it)."""

    score: float  # unsure / max(stone or unsure, MIN_STONE_SHARE x photo) pixels, 0..1
    unsure_px: int  # pixels at working scale whose uncertainty is >= UNSURE
    stone_px: int  # pixels the prediction calls stone, at working scale
    either_px: int = 0  # pixels that are stone or unsure
    area_px: int = 0  # the photo's pixels at working scale (0: unknown)
    definition: str = DEFAULT_DEFINITION  # one of DEFINITIONS
    model: str = ""  # the model folder's name that predicted the photo ("" unknown)

    @property
    def little_stone(self) -> bool:
        """Stone or unsure pixels cover less than ``MIN_STONE_SHARE`` of the photo (the score
        is then over that share of the photo)."""
        return self.area_px > 0 and self.either_px < MIN_STONE_SHARE * self.area_px

    def short_words(self) -> str:
        """The score in a few words, for a line of the photo list."""
        if self.little_stone:
            return f"little stone, unsure on {_pct(self.unsure_px / self.area_px)} % of the photo"
        pct = _pct(self.score)
        return "model sure of it" if pct == "0" else f"model unsure on {pct} % of its stone"

    def in_words(self) -> str:
        """Why the photo is (or is not) worth labelling next, in a geologist's words."""
        by = f"The model {self.model}" if self.model else "The model"
        if self.unsure_px == 0:
            return f"{by} was sure of every pixel of this photo."
        how = "contradicted itself (photo flipped)" if self.definition == "flips" else "was unsure"
        if self.little_stone:
            where = (
                f"on {_pct(self.unsure_px / self.area_px)} % of this photo, which it finds "
                "almost bare of stone"
            )
        else:
            where = f"on {_pct(self.score)} % of what it took for stone (or hesitated over) here"
        return f"{by} {how} {where}. Where it is unsure, its prediction is likeliest to be wrong."

    def to_dict(self) -> dict:
        return {
            "score": float(self.score),
            "unsure_px": int(self.unsure_px),
            "stone_px": int(self.stone_px),
            "either_px": int(self.either_px),
            "area_px": int(self.area_px),
            "definition": self.definition,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: object) -> UncertaintyScore | None:
        """The score a state file holds, or None when it holds none that can be read (an
        older or damaged file)."""
        if not isinstance(data, dict):
            return None
        try:
            score = float(data["score"])
            return cls(
                score=min(1.0, max(0.0, score)),
                unsure_px=int(data.get("unsure_px", 0)),
                stone_px=int(data.get("stone_px", 0)),
                either_px=int(data.get("either_px", 0)),
                area_px=int(data.get("area_px", 0)),
                definition=str(data.get("definition", DEFAULT_DEFINITION)),
                model=str(data.get("model", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Uncertainty:
    """A prediction's uncertainty: the map at working scale and the photo's score."""

    map: np.ndarray  # uint8 (h, w) at the model's working scale: 0 sure .. 255 most unsure
    score: UncertaintyScore

    def map_at(self, height: int, width: int) -> np.ndarray:
        """The map resized to (``height``, ``width``) (the photo's size, for display)."""
        import cv2

        if self.map.shape == (height, width):
            return self.map
        return cv2.resize(self.map, (width, height), interpolation=cv2.INTER_LINEAR)


def threshold_closeness(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """float32 map of how close ``prob`` is to ``threshold``: 1 at the threshold, falling
    linearly to 0 at 0 and at 1 (for a threshold of 0.5 it is 1 - |2p - 1|)."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    p = np.asarray(prob, dtype=np.float32)
    below = p / np.float32(t)
    above = (1 - p) / np.float32(1 - t)
    return np.clip(np.where(p < t, below, above), 0, 1).astype(np.float32, copy=False)


def score_map(
    unsure_map: np.ndarray,
    stone: np.ndarray,
    definition: str = DEFAULT_DEFINITION,
    min_share: float = MIN_STONE_SHARE,
) -> UncertaintyScore:
    """The photo's score from its uncertainty map (float 0..1, uint8 0..255, or bool: unsure
    or not) and its predicted stone (bool, same shape); ``min_share``: the floor of the
    score's denominator, as a share of the photo."""
    limit = UNSURE * 255 if unsure_map.dtype == np.uint8 else UNSURE
    unsure = unsure_map >= limit
    stone = np.asarray(stone, dtype=bool)
    either = int(np.count_nonzero(unsure | stone))
    n_unsure = int(np.count_nonzero(unsure))
    over = max(either, min_share * unsure.size)
    return UncertaintyScore(
        score=n_unsure / over if over else 0.0,
        unsure_px=n_unsure,
        stone_px=int(np.count_nonzero(stone)),
        either_px=either,
        area_px=int(unsure.size),
        definition=definition,
    )


def to_uint8(unsure_map: np.ndarray) -> np.ndarray:
    """A 0..1 map as 0..255 bytes (rounded)."""
    return np.clip(np.rint(unsure_map * 255), 0, 255).astype(np.uint8)


def measure_uncertainty(probs: np.ndarray, threshold: float = 0.5) -> Uncertainty:
    """The ``"threshold"`` uncertainty of a prediction: ``probs`` (C, h, w) at working scale
    (channel 0 the stone probability; a boundary channel, if any, is not used: see
    docs/stones.md), or a stone probability (h, w)."""
    prob = probs[0] if probs.ndim == 3 else probs
    closeness = threshold_closeness(prob, threshold)
    score = score_map(closeness, prob >= threshold, "threshold")
    return Uncertainty(to_uint8(closeness), score)


def flip_disagreement(
    forward: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    threshold: float = 0.5,
    prob: np.ndarray | None = None,
) -> Uncertainty:
    """The ``"flips"`` uncertainty of ``image`` (an image at working scale, (h, w, 3)):
    ``forward`` (image -> stone probability (h, w), or (C, h, w)) runs on the image flipped
    left-right and upside down; each is flipped back. The map is twice the per-pixel standard
    deviation of the stone probability over the views (1: as far apart as two views can be);
    a pixel is unsure where the views disagree on stone or not. ``prob``: the stone
    probability of the image as it is, when already made (else one more pass)."""
    views = [_stone(forward(image)) if prob is None else np.asarray(prob, np.float32)]
    for axes in FLIP_AXES:
        flipped = np.ascontiguousarray(np.flip(image, axes))
        views.append(np.flip(_stone(forward(flipped)), axes))
    stack = np.stack(views)
    spread = np.clip(2 * stack.std(axis=0), 0, 1)
    masks = stack >= threshold
    disagree = masks.any(axis=0) & ~masks.all(axis=0)
    stone = masks[0]
    # unsure where the views disagree, whatever their spread: the map shows at least UNSURE
    shown = np.where(disagree, np.maximum(spread, UNSURE), np.minimum(spread, UNSURE - 1e-3))
    return Uncertainty(to_uint8(shown), score_map(disagree, stone, "flips"))


def _pct(share: float) -> str:
    """A share as a whole percentage, "<1" for a little above 0."""
    pct = round(100 * share)
    return "<1" if pct == 0 and share > 0 else str(pct)


def _stone(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float32)
    return probs[0] if probs.ndim == 3 else probs


# ------------------------------------------------------------------ the project's state file
def stored_scores(state: dict) -> dict[str, UncertaintyScore]:
    """The scores a project's state (``Project.state``) keeps, by photo stem; entries that
    cannot be read (an older or damaged file) are left out."""
    table = state.get(STATE_KEY)
    if not isinstance(table, dict):
        return {}
    scores = {str(stem): UncertaintyScore.from_dict(entry) for stem, entry in table.items()}
    return {stem: score for stem, score in scores.items() if score is not None}


def store_score(state: dict, stem: str, score: UncertaintyScore | None) -> bool:
    """Keep ``score`` as photo ``stem``'s in ``state`` (None: forget it); True when that
    changed the state (the caller saves it: ``Project.save_state``, merged per photo with
    what another window wrote)."""
    table = state.get(STATE_KEY)
    table = dict(table) if isinstance(table, dict) else {}
    entry = score.to_dict() if score is not None else None
    if table.get(stem) == entry:
        return False
    if entry is None:
        table.pop(stem, None)
    else:
        table[stem] = entry
    if table:
        state[STATE_KEY] = table
    else:
        state.pop(STATE_KEY, None)
    return True
