"""One share of a folder's photos, for array jobs (``--shard K/N``): no torch, no I/O.

Photo ``i`` (0-based, in the folder's sorted order, ``imageio.list_images``) goes to shard
``(i mod N) + 1``, so the N shards are disjoint, together they are the whole folder, and
their sizes differ by at most one. The same folder gives every job the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

Shard = tuple[int, int]  # (K, N), 1 <= K <= N


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> ``(K, N)``; ValueError with a one-line reason otherwise."""
    k_text, sep, n_text = text.strip().partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"must be K/N with whole numbers, e.g. 2/8, got {text!r}") from None
    if not sep or not 1 <= k <= n:
        raise ValueError(f"must be K/N with 1 <= K <= N, got {text!r}")
    return k, n


def take_shard(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The items of shard ``K`` of ``N`` (all of them when ``shard`` is None)."""
    if shard is None:
        return list(items)
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: must have 1 <= K <= N")
    return list(items)[k - 1 :: n]


def shard_suffix(shard: Shard | None) -> str:
    """``".shard-K-of-N"`` (empty without a shard), for the names of a shard's pooled files."""
    return "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
