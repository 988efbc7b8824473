"""report.md: the headline numbers, where the failures are, and a few of each failure to look at."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.evaluation.categories import CATEGORIES, CORRECT

EXAMPLES_PER_CATEGORY = 3


def _fenced(text: str, language: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside (predictions can contain backticks)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_report(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> str:
    n = metrics["n"]
    lines = [
        "# Evaluation report", "",
        "| metric | value |", "| --- | --- |",
        f"| execution accuracy | {metrics['execution_accuracy']:.4f} |",
        f"| logical-form accuracy | {metrics['logical_form_accuracy']:.4f} |",
        f"| valid SQL rate | {metrics['valid_sql_rate']:.4f} |",
        f"| examples | {n} |",
        f"| predictions for unknown ids (ignored) | {metrics['unknown_prediction_ids']} |",
        f"| evaluation time | {metrics['eval_seconds']:.2f} s |",
        "",
        "Execution accuracy: predicted and gold SQL run on the question's table and return the same rows "
        "(order-insensitive; text case-insensitive; numbers numerically). Logical-form accuracy: WikiSQL's "
        "official metric (same column, aggregation and set of conditions). Valid SQL rate: share of examples "
        "whose prediction ran without error (a missing prediction counts as invalid). `gold_error`: the gold "
        "SQL failed or returned nothing, so the example cannot be execution-matched; it still counts in n.",
        "", "## Categories", "", "| category | count | share |", "| --- | ---: | ---: |",
    ]
    counts = metrics["categories"]
    for category in CATEGORIES:
        if counts.get(category):
            lines.append(f"| {category} | {counts[category]} | {counts[category] / max(n, 1):.1%} |")
    by_category: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        if result["category"] != CORRECT:
            by_category.setdefault(result["category"], []).append(result)
    if by_category:
        lines += ["", "## Examples of failures"]
    for category in CATEGORIES:
        for i, result in enumerate(by_category.get(category, [])[:EXAMPLES_PER_CATEGORY]):
            if i == 0:
                lines += ["", f"### {category} ({counts[category]})"]
            predicted = result["pred_sql"] if result["pred_sql"] is not None else "(none)"
            lines += ["", f"**{result['id']}**: {_one_line(result['question'])}", "",
                      "gold:", _fenced(result["gold_sql"], "sql"), "",
                      "predicted:", _fenced(predicted, "sql")]
            if result["error"]:
                lines += ["", f"error: {_one_line(result['error'])}"]
    return "\n".join(lines) + "\n"


def write_report(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]], path: Path) -> None:
    Path(path).write_text(render_report(metrics, results), encoding="utf-8")
