"""Which source examples each subset (train / val / test) of a multi-table data set is drawn from.

With a test split (Spider with test.json): train <- train, val <- dev, test <- test, as for WikiSQL (SUBSET_SOURCES).
With only train and dev (BIRD; Spider without test.json): val and test both come from dev, split by database so
that they share none (a model is never scored on a database it was validated on): the dev databases, sorted by id,
are shuffled with `random.Random` seeded from `seed` (stable across machines and Python versions) and dealt out
greedily, each to the half that has fewer questions so far (val on a tie), so the halves hold about as many
questions each. Examples keep their source order in each half.

The result is the pools `draw_subset` (subsets.py) draws the seeded nested subsets from.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.data.records import DataError
from experiments.data.schema import MultiTableSplit, SqlExample
from experiments.data.subsets import draw_subset

DEV_SPLIT_SALT = "val/test by database"


@dataclass(frozen=True)
class SubsetPool:
    """The examples a subset is drawn from, where they come from (in words, for draw_subset's errors), and the
    release's split that holds them (for data/report.json)."""

    subset: str
    source: str
    examples: list[SqlExample]
    source_split: str


def split_dev_by_database(examples: Sequence[SqlExample], seed: int) -> tuple[list[SqlExample], list[SqlExample]]:
    """(val, test): `examples` split by database, the halves sharing no db_id and holding about as many questions
    each. Deterministic in (the examples, seed). Fewer than two databases cannot be split: a DataError."""
    counts = Counter(example.db_id for example in examples)
    if len(counts) < 2:
        raise DataError(f"dev has {len(counts)} database(s); splitting it into val and test by database needs at "
                        "least 2")
    order = sorted(counts)
    random.Random(seed * 1_000_003 + zlib.crc32(DEV_SPLIT_SALT.encode())).shuffle(order)
    val_dbs: set[str] = set()
    sizes = [0, 0]  # questions in val, in test
    for db_id in order:
        half = 0 if sizes[0] <= sizes[1] else 1
        sizes[half] += counts[db_id]
        if half == 0:
            val_dbs.add(db_id)
    return ([e for e in examples if e.db_id in val_dbs], [e for e in examples if e.db_id not in val_dbs])


def subset_pools(splits: dict[str, MultiTableSplit], seed: int) -> dict[str, SubsetPool]:
    """The pool of each subset: "train" (where a train split was loaded), "val" and "test" (see the module)."""
    if "dev" not in splits:
        raise DataError(f"no dev split loaded (only {', '.join(sorted(splits)) or 'nothing'}); val and test are "
                        "drawn from dev (and test, where there is one)")
    pools: dict[str, SubsetPool] = {}
    if "train" in splits:
        pools["train"] = SubsetPool("train", "the train split", list(splits["train"].examples), "train")
    if "test" in splits:
        pools["val"] = SubsetPool("val", "the dev split", list(splits["dev"].examples), "dev")
        pools["test"] = SubsetPool("test", "the test split", list(splits["test"].examples), "test")
    else:
        val, test = split_dev_by_database(splits["dev"].examples, seed)
        pools["val"] = SubsetPool("val", "the val half of the dev split (split by database)", val, "dev")
        pools["test"] = SubsetPool("test", "the test half of the dev split (split by database)", test, "dev")
    return pools


def draw_multi_table_subsets(splits: dict[str, MultiTableSplit], sizes: dict[str, int | None],
                             seed: int) -> dict[str, list[SqlExample]]:
    """Each subset named in `sizes` (size None = all), drawn by draw_subset from its pool (subset_pools)."""
    pools = subset_pools(splits, seed)
    drawn: dict[str, list[SqlExample]] = {}
    for subset, size in sizes.items():
        if subset not in pools:
            raise DataError(f"data_size.{subset}: no {subset} examples loaded (have {', '.join(sorted(pools))})")
        pool = pools[subset]
        drawn[subset] = draw_subset(pool.examples, size, seed, subset, pool.source)
    return drawn
