"""Deterministic subsets: the same config draws the same examples on any machine.

Indices are shuffled once per (seed, split) with Python's `random.Random` (Mersenne Twister, seeded from an int,
stable across platforms and versions) and the first `size` are kept, so a smaller subset is always a prefix of a
larger one: scaling sweeps train on nested sets and score on identical val/test examples.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import TypeVar

from experiments.data.records import DataError

T = TypeVar("T")

# Our subset name -> the source split it is drawn from. Val comes from dev and test from test, so no table
# (WikiSQL's splits are table-disjoint) is shared between validation and test.
SUBSET_SOURCES: dict[str, str] = {"train": "train", "val": "dev", "test": "test"}


def draw_subset(items: Sequence[T], size: int | None, seed: int, subset: str, source: str = "the source") -> list[T]:
    """`size` items (None = all), in source order. Asking for more than there are is an error, never a silent
    smaller subset: a run must train and score on what its config says."""
    if size is None:
        return list(items)
    if size < 0:
        raise DataError(f"data_size.{subset}={size}: must be >= 0, or null for all examples")
    if size > len(items):
        raise DataError(f"data_size.{subset}={size}: {source} has only {len(items)} usable examples for the "
                        f"{subset} subset; ask for at most {len(items)}, or set data_size.{subset}=null for all of "
                        "them")
    if size == len(items):
        return list(items)
    rng = random.Random(seed * 1_000_003 + zlib.crc32(subset.encode()))
    order = list(range(len(items)))
    rng.shuffle(order)
    return [items[i] for i in sorted(order[:size])]
