"""report.md: the headline numbers, where the failures are, and a few of each failure to look at."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.shown_text import markdown_text, shortened, visible
from experiments.analysis.stats import format_interval
from experiments.data.jsonl import write_text
from experiments.evaluation.categories import CATEGORIES, CORRECT

EXAMPLES_PER_CATEGORY = 3


def _fenced(text: str, language: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside (predictions can contain backticks); the
    text shortened and its control characters visible."""
    text = visible(shortened(text))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _text(text: str) -> str:
    """Untrusted prose (questions, ids, model output) on one table-safe line, shortened, with HTML and Markdown
    syntax escaped: Markdown viewers render raw HTML, images and links. Code spans need less (see _code_cell)."""
    return markdown_text(shortened(text))


def render_report(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  analysis: Mapping[str, Any] | None = None, facts: Sequence[tuple[str, str]] = ()) -> str:
    """The report; with an `analysis` (experiments.analysis.breakdown.analyze) it also gives 95% intervals,
    accuracy by query shape, the aggregation confusion, hallucinated columns, invalid SQL and what differed."""
    n = metrics["n"]
    headline = (analysis or {}).get("headline", {})

    def metric_row(label: str, key: str) -> str:
        interval = f" {format_interval(headline[key])} |" if key in headline else ""
        return f"| {label} | {metrics[key]:.4f} |{interval}"

    extra = " |" if headline else ""
    lines = [
        "# Evaluation report", "",
        *[line for warning in metrics.get("warnings", ()) for line in (f"> **WARNING**: {_text(warning)}", "")],
        *(["| what was run | |", "| --- | --- |", *(f"| {_text(k)} | {_text(v)} |" for k, v in facts), ""]
          if facts else []),
        "| metric | value | 95% interval |" if headline else "| metric | value |",
        "| --- | --- | --- |" if headline else "| --- | --- |",
        metric_row("execution accuracy", "execution_accuracy"),
        metric_row("logical-form accuracy", "logical_form_accuracy"),
        metric_row("valid SQL rate", "valid_sql_rate"),
        f"| examples | {n} |{extra}",
        f"| predictions for unknown ids (ignored) | {metrics['unknown_prediction_ids']} |{extra}",
        f"| evaluation time | {metrics['eval_seconds']:.2f} s |{extra}",
        *([f"| execution-guided: another candidate kept | {metrics['guided_changed']} (fixed "
           f"{metrics['guided_fixed']}, broke {metrics['guided_broke']}, both wrong {metrics['guided_both_wrong']}, "
           f"both right {metrics['guided_both_right']}) |{extra}"] if "guided_changed" in metrics else []),
        "",
        "Execution accuracy: predicted and gold SQL run on the question's table and return the same rows "
        "(order-insensitive; text case-insensitive; numbers numerically). Logical-form accuracy: WikiSQL's "
        "official metric (same column, aggregation and set of conditions). Valid SQL rate: share of examples "
        "whose prediction ran without error (a missing prediction counts as invalid). `gold_error`: the gold "
        "SQL failed or returned nothing, so the example cannot be execution-matched; it still counts in n. "
        "`timeout`, `too_many_rows`, `memory_limit`: the prediction ran past the time limit, returned more rows "
        "than the row cap, or its result (or SQLite's working memory) passed the memory cap; its error says which.",
        *(["", "95% intervals: Wilson score intervals; on a few hundred examples a difference of a few points "
           "between two runs can be noise (compare runs scored on the same examples with McNemar's test)."]
          if headline else []),
        "", "## Categories", "", "| category | count | share |", "| --- | ---: | ---: |",
    ]
    counts = metrics["categories"]
    for category in CATEGORIES:
        if counts.get(category):
            lines.append(f"| {category} | {counts[category]} | {counts[category] / max(n, 1):.1%} |")
    if analysis is not None:
        lines += _analysis_sections(analysis)
    differed = {e["id"]: e["what_differed"] for found in (analysis or {}).get("examples", {}).values()
                for e in found}
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
            lines += ["", f"**{_text(result['id'])}**: {_text(result['question'])}", "",
                      "gold:", _fenced(result["gold_sql"], "sql"), "",
                      "predicted:", _fenced(predicted, "sql")]
            if result["error"]:
                lines += ["", f"error: {_code_cell(result['error'])}"]  # a code span: errors quote predictions
            if result["id"] in differed and not (result["error"] and result["error"] in differed[result["id"]]):
                # it quotes predicted values: &, <, > as entities, so no renderer takes them for HTML
                lines += ["", f"what differed: {_text(differed[result['id']])}"]
    return "\n".join(lines) + "\n"


LISTED = 20  # hallucinated-column and invalid-SQL entries shown; analysis.json has them all


def _group_table(title: str, key: str, groups: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["", f"## Execution accuracy by {title}", "", f"| {key} | n | correct | accuracy | 95% interval |",
             "| --- | ---: | ---: | ---: | --- |"]
    for g in groups:
        lines.append(f"| {_one_line(str(g['group']))} | {g['n']} | {g['successes']} | {g['value']:.4f} | "
                     f"{format_interval(g)} |")
    return lines


def _analysis_sections(analysis: Mapping[str, Any]) -> list[str]:
    lines = _group_table("gold aggregation", "aggregation", analysis["by_aggregation"])
    lines += _group_table("number of conditions", "conditions", analysis["by_condition_count"])
    lines += _group_table("operator", "operator", analysis["by_operator"])
    lines += ["", "An example counts once for each operator its gold conditions use."]
    confusion = analysis["aggregation_confusion"]
    lines += ["", "## Aggregation confusion", "",
              "Rows: gold aggregation; columns: the aggregation of the predicted SQL parsed back into a logical "
              "form (`unparsed`: no prediction, or not a WikiSQL-shaped query).", "",
              "| gold / predicted | " + " | ".join(confusion["predicted"]) + " |",
              "| --- |" + " ---: |" * len(confusion["predicted"])]
    for label, row in zip(confusion["gold"], confusion["counts"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(c) for c in row) + " |")
    hallucinated = analysis["hallucinated_columns"]
    lines += ["", f"## Hallucinated columns ({len(hallucinated)} predictions)"]
    if hallucinated:
        lines += ["", "| column | predictions |", "| --- | ---: |"]
        lines += [f"| {_text(name)} | {count} |" for name, count in analysis["hallucinated_column_counts"].items()]
        lines += ["", "| id | columns not in the table | predicted SQL |", "| --- | --- | --- |"]
        for h in hallucinated[:LISTED]:
            columns = ", ".join(h["columns"]) or "(not found in the SQL)"
            lines.append(f"| {_text(h['id'])} | {_text(columns)} | {_code_cell(h['pred_sql'])} |")
        if len(hallucinated) > LISTED:
            lines.append(f"\n... and {len(hallucinated) - LISTED} more (analysis.json lists them all)")
    else:
        lines += ["", "None."]
    invalid = analysis["invalid_sql"]
    lines += ["", f"## Invalid SQL ({len(invalid)} predictions)"]
    if invalid:
        lines += ["", "| id | category | error | predicted SQL |", "| --- | --- | --- | --- |"]
        for item in invalid[:LISTED]:
            lines.append(f"| {_text(item['id'])} | {_text(item['category'])} | {_code_cell(item['error'])} | "
                         f"{_code_cell(item['pred_sql'])} |")
        if len(invalid) > LISTED:
            lines.append(f"\n... and {len(invalid) - LISTED} more (analysis.json lists them all)")
    else:
        lines += ["", "None."]
    return lines


def _code_cell(sql: str | None) -> str:
    """SQL in a table cell: shortened, controls visible, one line, pipes escaped, in a code span longer than any
    backtick run inside (Markdown's other syntax means nothing in a code span)."""
    if sql is None:
        return "(none)"
    text = _one_line(visible(shortened(sql)))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def write_report(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]], path: Path,
                 analysis: Mapping[str, Any] | None = None, facts: Sequence[tuple[str, str]] = ()) -> None:
    write_text(Path(path), render_report(metrics, results, analysis, facts))
