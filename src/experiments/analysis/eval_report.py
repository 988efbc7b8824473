"""A run's evaluation report as one document (analysis/document.py), written as report.md and as the self-contained
report.html: what was run, the headline numbers with their intervals, where the failures are, the figures, and a few
of each failure to look at.

Categories come in the taxonomy's order (analysis.json's, or else metrics.json's from the scorer), and a failure
is a result that did not execution-match (exactly those the scorer does not call `correct`), so this module needs
nothing from experiments.evaluation, which imports it for report.md of `evaluate()` alone.

Texts that come whole from results.jsonl (questions, gold SQL, predictions, errors, warnings) are shortened here
(evaluation/shown_text.py); those of analysis.json come shortened already. The document's renderers escape all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.document import (
    Alert,
    Block,
    Box,
    Code,
    CodeBlock,
    Document,
    Heading,
    Image,
    Paragraph,
    Plain,
    Strong,
    TableBlock,
)
from experiments.analysis.stats import format_interval
from experiments.evaluation.shown_text import shortened

EXAMPLES_PER_CATEGORY = 3  # without an analysis; with one, its examples (as many per category)
LISTED = 20  # hallucinated-column and invalid-SQL entries shown; analysis.json has them all
TITLE = "Evaluation report"
HEADLINE_LABELS = {"execution_accuracy": "execution accuracy", "logical_form_accuracy": "logical-form accuracy",
                   "valid_sql_rate": "valid SQL rate"}
PLOT_TITLES = {"categories": "Outcome by category", "accuracy_breakdown": "Execution accuracy by query shape",
               "aggregation_confusion": "Aggregation confusion", "loss_curves": "Training and eval loss"}


def report_document(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                    analysis: Mapping[str, Any] | None = None, plots: Mapping[str, Path] | None = None,
                    facts: Sequence[tuple[str, str]] = (), title: str = TITLE) -> Document:
    """The report; with an `analysis` (experiments.analysis.breakdown.analyze) it also gives 95% intervals, accuracy
    by query shape, the aggregation confusion, hallucinated columns, invalid SQL and what differed; with `plots`
    (name -> PNG path, from analysis/plots.py), the figures."""
    doc = Document(title)
    doc.add(*(Alert(shortened(warning)) for warning in metrics.get("warnings", ())))
    if facts:
        doc.add(TableBlock(("what was run", ""), tuple((shortened(k), shortened(v)) for k, v in facts)))
    doc.add(*_headline(metrics, (analysis or {}).get("headline", {})))
    doc.add(Heading("Categories"), _categories(metrics, analysis))
    if analysis is not None:
        doc.add(*_analysis_sections(analysis))
    if plots:
        doc.add(Heading("Figures"))
        doc.add(*(Image(path, PLOT_TITLES.get(name, name), href=f"{path.parent.name}/{path.name}")
                  for name, path in plots.items()))
    if analysis is not None:
        doc.add(*_listings(analysis))
    doc.add(*_failure_examples(metrics, results, analysis))
    return doc


GUIDED_LABEL = "execution-guided: another candidate kept"


def guided_counts(metrics: Mapping[str, Any]) -> Plain:
    """What execution-guided decoding changed (evaluation/guidance_counts.py), as every report shows it."""
    return Plain(f"{metrics['guided_changed']} (fixed {metrics['guided_fixed']}, broke {metrics['guided_broke']}, "
                 f"both wrong {metrics['guided_both_wrong']}, both right {metrics['guided_both_right']})")


def _headline(metrics: Mapping[str, Any], headline: Mapping[str, Any]) -> list[Block]:
    headers = ("metric", "value", "95% interval", "count") if headline else ("metric", "value")
    pad = ("", "") if headline else ()
    rows: list[tuple[Any, ...]] = []
    for key, label in HEADLINE_LABELS.items():
        value = Plain(f"{metrics[key]:.4f}")
        if headline and key in headline:
            h = headline[key]
            rows.append((label, value, Plain(format_interval(h)), Plain(f"{h['successes']} / {h['n']}")))
        else:
            rows.append((label, value, *pad))
    rows += [("examples", metrics["n"], *pad),
             ("predictions for unknown ids (ignored)", metrics.get("unknown_prediction_ids", 0), *pad),
             ("evaluation time", Plain(f"{metrics.get('eval_seconds', 0.0):.2f} s"), *pad)]
    if "guided_changed" in metrics:
        rows.append((GUIDED_LABEL, guided_counts(metrics), *pad))
    blocks: list[Block] = [TableBlock(headers, tuple(rows), numeric=(1,)), Paragraph(
        "Execution accuracy: predicted and gold SQL run on the question's table and return the same rows "
        "(order-insensitive; text case-insensitive; numbers numerically). Logical-form accuracy: WikiSQL's official "
        "metric (same column, aggregation and set of conditions). Valid SQL rate: share of examples whose prediction "
        "ran without error (a missing prediction counts as invalid). ", Code("gold_error"),
        ": the gold SQL failed or returned nothing, so the example cannot be execution-matched; it still counts in "
        "n. ", Code("timeout"), ", ", Code("too_many_rows"), ", ", Code("memory_limit"),
        ": the prediction ran past the time limit, returned more rows than the row cap, or its result (or SQLite's "
        "working memory) passed the memory cap; its error says which.", note=True)]
    if headline:
        blocks.append(Paragraph(
            "95% intervals: Wilson score intervals; on a few hundred examples a difference of a few points between "
            "two runs can be noise (compare runs scored on the same examples with McNemar's test).", note=True))
    return blocks


def _categories(metrics: Mapping[str, Any], analysis: Mapping[str, Any] | None) -> TableBlock:
    """metrics.json's counts, in the analysis's order of the categories (the taxonomy's) when there is one."""
    n, counts = metrics["n"], metrics["categories"]
    order = [*(analysis["categories"] if analysis is not None else ()), *counts]
    rows = tuple((category, counts[category], Plain(f"{counts[category] / max(n, 1):.1%}"))
                 for category in dict.fromkeys(order) if counts.get(category))
    return TableBlock(("category", "count", "share"), rows, numeric=(1, 2))


def _accuracy_by(title: str, key: str, groups: Sequence[Mapping[str, Any]]) -> list[Block]:
    """Execution accuracy per group of examples (per gold aggregation, condition count or operator)."""
    rows = tuple((Plain(str(g["group"])), g["n"], g["successes"], Plain(f"{g['value']:.4f}"),
                  Plain(format_interval(g))) for g in groups)
    return [Heading(f"Execution accuracy by {title}"),
            TableBlock((key, "n", "correct", "accuracy", "95% interval"), rows, numeric=(1, 2, 3))]


def _analysis_sections(analysis: Mapping[str, Any]) -> list[Block]:
    blocks = [*_accuracy_by("gold aggregation", "aggregation", analysis["by_aggregation"]),
              *_accuracy_by("number of conditions", "conditions", analysis["by_condition_count"]),
              *_accuracy_by("operator", "operator", analysis["by_operator"]),
              Paragraph("An example counts once for each operator its gold conditions use.", note=True)]
    confusion = analysis["aggregation_confusion"]
    rows = tuple((Plain(label), *row) for label, row in zip(confusion["gold"], confusion["counts"], strict=True))
    blocks += [Heading("Aggregation confusion"),
               Paragraph("Rows: gold aggregation; columns: the aggregation of the predicted SQL parsed back into a "
                         "logical form (", Code("unparsed"), ": no prediction, or not a WikiSQL-shaped query).",
                         note=True),
               TableBlock(("gold / predicted", *confusion["predicted"]), rows,
                          numeric=tuple(range(1, len(confusion["predicted"]) + 1)))]
    return blocks


def _more(total: int) -> list[Block]:
    return [Paragraph(f"... and {total - LISTED} more (analysis.json lists them all)", note=True)] \
        if total > LISTED else []


def _listings(analysis: Mapping[str, Any]) -> list[Block]:
    """Hallucinated columns and invalid SQL, the first LISTED of each."""
    hallucinated = analysis["hallucinated_columns"]
    blocks: list[Block] = [Heading(f"Hallucinated columns ({len(hallucinated)} predictions)")]
    if hallucinated:
        blocks.append(TableBlock(("column", "predictions"), tuple(analysis["hallucinated_column_counts"].items()),
                                 numeric=(1,)))
        blocks.append(TableBlock(("id", "columns not in the table", "predicted SQL", "error"), tuple(
            (h["id"], ", ".join(h["columns"]) or "(not found in the SQL)", Code(h["pred_sql"]), Code(h["error"]))
            for h in hallucinated[:LISTED])))
        blocks += _more(len(hallucinated))
    else:
        blocks.append(Paragraph("None."))
    invalid = analysis["invalid_sql"]
    blocks.append(Heading(f"Invalid SQL ({len(invalid)} predictions)"))
    if invalid:
        blocks.append(TableBlock(("id", "category", "error", "predicted SQL"), tuple(
            (item["id"], item["category"], Code(item["error"]), Code(item["pred_sql"])) for item in invalid[:LISTED])))
        blocks += _more(len(invalid))
    else:
        blocks.append(Paragraph("None."))
    return blocks


def _examples_from_results(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                           ) -> dict[str, list[dict[str, Any]]]:
    """The first few failures of each category, as analysis.json's `examples` (shortened; nothing on what
    differed)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        chosen = found.setdefault(result["category"], [])
        if not result.get("exec_match") and len(chosen) < EXAMPLES_PER_CATEGORY:
            chosen.append({key: shortened(result[key]) if isinstance(result.get(key), str) else result.get(key)
                           for key in ("id", "question", "gold_sql", "pred_sql", "error")})
    return {c: found[c] for c in [*metrics["categories"], *sorted(found)] if found.get(c)}


def _failure_examples(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                      analysis: Mapping[str, Any] | None) -> list[Block]:
    examples = analysis["examples"] if analysis is not None else _examples_from_results(metrics, results)
    blocks: list[Block] = [Heading("Examples of failures")] if examples else []
    for category, found in examples.items():
        blocks.append(Heading(f"{category} ({metrics['categories'].get(category, len(found))})", 3))
        for example in found:
            parts: list[Block] = [Paragraph(Strong(str(example["id"])), ": ", example["question"] or ""),
                                  Paragraph("gold:"), CodeBlock(example["gold_sql"]),
                                  Paragraph("predicted:"), CodeBlock(example["pred_sql"])]
            error, differed = example.get("error"), example.get("what_differed")
            if error:
                parts.append(Paragraph("error: ", Code(error)))  # a code span: errors quote predictions
            if differed and not (error and error in differed):
                parts.append(Paragraph("what differed: ", differed))
            blocks.append(Box(tuple(parts)))
    return blocks
