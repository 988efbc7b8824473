"""Execution match: gold and predicted results as multisets of rows, compared the way a person reads them.

Text compares case-insensitively; numbers compare numerically, and numeric text counts as a number, so
`3`, `3.0` and `'3'` are the same answer. Row order is ignored (WikiSQL queries have no ORDER BY), but
how often each row occurs is not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

Normalised = Counter[tuple[object, ...]]


def _number(value: float) -> object:
    if math.isnan(value):
        return "nan"
    return float(f"{value:.12g}")  # ignore float noise from summing in a different order


def normalise_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        return _number(float(value))
    if isinstance(value, int | float):
        return _number(float(value))
    if isinstance(value, bytes):
        return ("blob", value)
    text = str(value)
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return _number(float(stripped))
    return text.casefold()


def normalise_rows(rows: Iterable[Sequence[object]]) -> Normalised:
    """The order-insensitive multiset of rows with every value normalised."""
    return Counter(tuple(normalise_value(v) for v in row) for row in rows)


def is_empty(rows: Sequence[Sequence[object]]) -> bool:
    """No rows, or only NULLs (what MAX/MIN/SUM/AVG give over no rows): nothing to compare against."""
    return all(v is None for row in rows for v in row)


def results_match(gold: Normalised, predicted: Normalised) -> bool:
    return gold == predicted
