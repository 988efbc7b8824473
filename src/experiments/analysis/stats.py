"""Intervals and paired tests for accuracies measured on a few hundred examples, where a 2-point difference can
be noise: Wilson score intervals for one run, McNemar's test for two runs scored on the same examples."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z_95 = 1.959963984540054
EXACT_BELOW = 25  # discordant pairs under which McNemar's test uses the exact binomial distribution


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (well-behaved at 0, 1 and small n; (0, 1) when n = 0)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def format_interval(value: Mapping[str, float]) -> str:
    """An interval held as `ci_low` / `ci_high` (analysis.json's shape) for reports: `[low, high]`."""
    return f"[{value['ci_low']:.4f}, {value['ci_high']:.4f}]"


@dataclass(frozen=True)
class McNemarResult:
    fixed: int  # wrong in A, right in B
    broken: int  # right in A, wrong in B
    statistic: float | None  # chi-square with continuity correction (None for the exact test)
    p_value: float
    method: str  # "exact" | "chi2"


def mcnemar(fixed: int, broken: int) -> McNemarResult:
    """Two-sided McNemar test on the discordant pairs: exact binomial below EXACT_BELOW, else chi-square with
    Edwards' continuity correction."""
    if fixed < 0 or broken < 0:
        raise ValueError(f"mcnemar: counts must be >= 0, got {fixed}, {broken}")
    n = fixed + broken
    if n == 0:
        return McNemarResult(fixed, broken, None, 1.0, "exact")
    if n < EXACT_BELOW:
        k = min(fixed, broken)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        return McNemarResult(fixed, broken, None, min(1.0, 2 * tail), "exact")
    statistic = max(0, abs(fixed - broken) - 1) ** 2 / n
    return McNemarResult(fixed, broken, statistic, math.erfc(math.sqrt(statistic / 2)), "chi2")
