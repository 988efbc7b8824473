"""A multi-table evaluation (Spider, BIRD) read and reported: analysis.json (the headline rates with 95% Wilson
intervals, test-suite accuracy among them when the run had a test suite, accuracy by Spider hardness, by BIRD
difficulty and by database, the categories), report.md and the self-contained report.html, both from one document
(analysis/document.py).

The WikiSQL analysis (breakdown.py) reads logical forms and table headers, which multi-table data has not; this one
reads only the scorer's rows (evaluation/multi_table_scoring.py), so it needs no database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.document import (
    Alert,
    Box,
    CodeBlock,
    Document,
    Heading,
    Paragraph,
    Plain,
    TableBlock,
    write_html,
    write_markdown,
)
from experiments.analysis.eval_report import GUIDED_LABEL, guided_counts
from experiments.analysis.stats import format_interval, wilson_interval
from experiments.evaluation.shown_text import shortened
from experiments.fileio import write_json
from experiments.runs.files import RunFiles

EXAMPLES_PER_CATEGORY = 3
HEADLINE = (("execution_accuracy", "exec_match", "execution accuracy"),
            ("valid_sql_rate", "valid_sql", "valid SQL rate"))
TEST_SUITE = ("test_suite_accuracy", "test_suite_match", "test-suite accuracy")  # with eval.test_suite_path only


def _headline(metrics: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """The headline rates (metric name, results key, label) this run has."""
    return (*HEADLINE, TEST_SUITE) if TEST_SUITE[0] in metrics else HEADLINE


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"value": successes / n if n else 0.0, "ci_low": low, "ci_high": high, "successes": successes, "n": n}


def _by(results: Sequence[Mapping[str, Any]], key: str, order: Sequence[str] = ()) -> dict[str, Any]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in results:
        if row.get(key) is not None:
            groups.setdefault(str(row[key]), []).append(row)
    ordered = [k for k in order if k in groups] + sorted(k for k in groups if k not in order)
    return {k: _rate(sum(bool(r.get("exec_match")) for r in groups[k]), len(groups[k])) for k in ordered}


def analyze_multi_table(results: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The breakdown of one multi-table run's results rows."""
    n = len(results)
    counts = Counter(r["category"] for r in results)
    order = list(metrics.get("categories") or {})
    categories = {c: {"count": counts.get(c, 0), "share": counts.get(c, 0) / n if n else 0.0}
                  for c in [*order, *sorted(set(counts) - set(order))]}
    return {
        "semantics": metrics.get("semantics"),
        "headline": {name: _rate(sum(bool(r.get(key)) for r in results), n) for name, key, _ in _headline(metrics)},
        "categories": categories,
        "by_hardness": _by(results, "hardness", ("easy", "medium", "hard", "extra")),
        "by_difficulty": _by(results, "difficulty", ("simple", "moderate", "challenging")),
        "by_database": _by(results, "db_id"),
    }


def _rates_table(label: str, rates: Mapping[str, Mapping[str, Any]]) -> TableBlock:
    return TableBlock((label, "n", "execution accuracy", "95% interval"),
                      tuple((k, v["n"], Plain(f"{v['value']:.4f}"), Plain(format_interval(v)))
                            for k, v in rates.items()), numeric=(1, 2))


def multi_table_document(metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                         analysis: Mapping[str, Any], facts: Sequence[tuple[str, str]] = (),
                         title: str = "Evaluation report") -> Document:
    """What was run, the headline with intervals, the breakdowns, the categories and a few failures of each."""
    doc = Document(title)
    doc.add(*(Alert(shortened(w)) for w in metrics.get("warnings", ())))
    if facts:
        doc.add(TableBlock(("what was run", ""), tuple((shortened(k), shortened(v)) for k, v in facts)))
    rows = [(label, Plain(f"{h['value']:.4f}"), Plain(format_interval(h)), Plain(f"{h['successes']} / {h['n']}"))
            for name, _, label in _headline(metrics) for h in (analysis["headline"][name],)]
    rows += [("examples", metrics.get("n", 0), "", ""),
             ("gold queries that failed", metrics.get("gold_errors", 0), "", "")]
    if TEST_SUITE[0] in metrics:
        rows += [("test-suite databases (variants of the test databases)", metrics.get("test_suite_databases", 0),
                  "", ""),
                 ("gold queries that failed on a test-suite database", metrics.get("test_suite_gold_errors", 0),
                  "", "")]
    rows += [("predictions for unknown ids (ignored)", metrics.get("unknown_prediction_ids", 0), "", ""),
             ("evaluation time", Plain(f"{metrics.get('eval_seconds', 0.0):.2f} s"), "", "")]
    if "guided_changed" in metrics:
        rows.append((GUIDED_LABEL, guided_counts(metrics), "", ""))
    doc.add(TableBlock(("metric", "value", "95% interval", "count"), tuple(rows), numeric=(1,)),
            Paragraph(Plain(f"Results compared with {analysis.get('semantics')}'s semantics "
                            "(evaluation/multi_table_compare.py)."
                            + (" Test-suite accuracy: the prediction matched on its own database and on every "
                               "test-suite variant of it (evaluation/multi_table_scoring.py)."
                               if TEST_SUITE[0] in metrics else "")), note=True))
    for key, heading, label in (("by_hardness", "By Spider hardness", "hardness"),
                                ("by_difficulty", "By BIRD difficulty", "difficulty"),
                                ("by_database", "By database", "database")):
        if analysis.get(key):
            doc.add(Heading(heading), _rates_table(label, analysis[key]))
    doc.add(Heading("Categories"),
            TableBlock(("category", "count", "share"),
                       tuple((c, v["count"], Plain(f"{v['share']:.3f}")) for c, v in analysis["categories"].items()),
                       numeric=(1, 2)))
    failures: dict[str, list[Mapping[str, Any]]] = {}
    for row in results:
        if not row.get("exec_match") and len(failures.setdefault(row["category"], [])) < EXAMPLES_PER_CATEGORY:
            failures[row["category"]].append(row)
    if failures:
        doc.add(Heading("Failures to look at"))
    for category, rows_ in failures.items():
        doc.add(Heading(category, level=3))
        for row in rows_:
            blocks = [Paragraph(Plain(f"{row['id']} ({row.get('db_id')}): "), shortened(str(row.get("question")))),
                      Paragraph(Plain("gold:")), CodeBlock(shortened(str(row.get("gold_sql")))),
                      Paragraph(Plain("predicted:")),
                      CodeBlock(None if row.get("pred_sql") is None else shortened(str(row["pred_sql"])))]
            if row.get("error"):
                blocks.append(Paragraph(Plain("error: "), shortened(str(row["error"]))))
            doc.add(Box(tuple(blocks)))
    return doc


def write_multi_table_analysis(run_dir: Path, metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                               facts: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """analysis.json, report.md and report.html of a multi-table run; not metrics.json (the eval stage's, last)."""
    files = RunFiles(run_dir)
    analysis = analyze_multi_table(results, metrics)
    write_json(files.analysis_json, analysis)
    doc = multi_table_document(metrics, results, analysis, facts, title=f"Evaluation report: {files.root.name}")
    write_markdown(doc, files.report_md)
    write_html(doc, files.report_html)
    return {"analysis": analysis, "analysis_json": files.analysis_json, "plots": {},
            "report_md": files.report_md, "report_html": files.report_html}
