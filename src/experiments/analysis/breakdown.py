"""Where one run's failures are: headline rates with Wilson intervals, accuracy by query shape, the aggregation
confusion, hallucinated columns, invalid SQL, and a few real failures per category with what differed.

A single accuracy over a few hundred examples hides whether a model cannot count, cannot add a second condition
or invents columns; these breakdowns say which, with intervals, so a 5-example group is not over-read. The
result is a plain JSON-able dict (written to `analysis.json`), so reports, plots and later comparisons read the
same numbers. Texts in it (predictions, errors, questions, column names) are shortened (shown_text.py): results.jsonl
holds them whole.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlglot import exp

from experiments.analysis.stats import wilson_interval
from experiments.data.records import AGG_OPS, COND_OPS, Example, Query, Table
from experiments.evaluation.categories import (
    CATEGORIES,
    CORRECT,
    GOLD_ERROR,
    MISSING_PREDICTION,
    UNKNOWN_COLUMN,
)
from experiments.evaluation.logical_form import canonical_value, parse_logical_form
from experiments.evaluation.shown_text import shortened
from experiments.sql.sql_parse import parse_sql
from experiments.sql.sqlite_tables import ROWID_NAMES, fold_identifier, sqlite_column_names

EXAMPLES_PER_CATEGORY = 3
MAX_CONDITIONS = 4  # WikiSQL questions have 0..4 conditions; larger counts get their own rows if they occur
UNPARSED = "unparsed"  # confusion-matrix column: no WikiSQL logical form (unparseable, not that shape, or none)
AGG_LABELS: tuple[str, ...] = tuple(a or "none" for a in AGG_OPS)
OPERATORS: tuple[str, ...] = COND_OPS[:3]  # "OP" is never used by WikiSQL questions
HEADLINE = (("execution_accuracy", "exec_match"), ("logical_form_accuracy", "lf_match"),
            ("valid_sql_rate", "valid_sql"))
_NO_SUCH_COLUMN = re.compile(r"(?:no such column|ambiguous column name):\s*(.+?)\s*(?:;|$)", re.IGNORECASE)


def rate(successes: int, n: int) -> dict[str, Any]:
    """A proportion with its 95% Wilson interval (n = 0 gives value 0 and the uninformative interval (0, 1))."""
    low, high = wilson_interval(successes, n)
    return {"successes": successes, "n": n, "value": successes / n if n else 0.0, "ci_low": low, "ci_high": high}


def _group(name: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"group": name, **rate(sum(bool(r["exec_match"]) for r in rows), len(rows))}


def _column_name(table: Table | None, index: int) -> str:
    if table is not None and 0 <= index < len(table.header):
        return table.header[index]
    return f"column {index}"


def _quoted(name: str) -> str:
    return '"' + name + '"'


def _value_text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def predicted_query(pred_sql: str | None, table: Table | None) -> Query | None:
    """The prediction's WikiSQL logical form, or None (no prediction, no table, not that shape, past the parser's
    bounds, or a parser oddity: analysis must never stop on one odd prediction)."""
    if pred_sql is None or table is None:
        return None
    try:
        return parse_logical_form(pred_sql, table)
    except Exception:
        return None


def describe_difference(gold: Query, predicted: Query | None, table: Table | None,
                        row: Mapping[str, Any]) -> str:
    """One line saying how a failed prediction differs from gold: the error when it did not run, else which of
    column, aggregation and conditions differ (read off the two logical forms)."""
    category = row.get("category")
    if category == MISSING_PREDICTION:
        return "no prediction for this example"
    if category == GOLD_ERROR:
        return f"gold SQL unusable: {row.get('error') or 'no rows'}"
    if not row.get("valid_sql") and row.get("error"):
        return f"did not run: {row['error']}"
    if predicted is None:
        return "ran, but is not a WikiSQL query (no single column/aggregation/AND-of-conditions logical form)"
    differences: list[str] = []
    if predicted.sel != gold.sel:
        differences.append(f"selected column {_quoted(_column_name(table, predicted.sel))} instead of "
                           f"{_quoted(_column_name(table, gold.sel))}")
    if predicted.agg != gold.agg:
        differences.append(f"aggregation {AGG_LABELS[predicted.agg]} instead of {AGG_LABELS[gold.agg]}")
    differences += _condition_differences(gold, predicted, table)
    if not differences:
        return "same logical form as gold, but the results differed"
    return "; ".join(differences)


def _condition_differences(gold: Query, predicted: Query, table: Table | None) -> list[str]:
    gold_by_col: dict[int, list[tuple[int, Any]]] = {}
    pred_by_col: dict[int, list[tuple[int, Any]]] = {}
    for col, op, value in gold.conds:
        gold_by_col.setdefault(col, []).append((op, value))
    for col, op, value in predicted.conds:
        pred_by_col.setdefault(col, []).append((op, value))
    out: list[str] = []
    for col in dict.fromkeys([*gold_by_col, *pred_by_col]):
        name = _quoted(_column_name(table, col))
        gold_conds, pred_conds = gold_by_col.get(col, []), pred_by_col.get(col, [])
        same = {(op, canonical_value(v)) for op, v in gold_conds} == {(op, canonical_value(v)) for op, v in pred_conds}
        if same:
            continue
        if not pred_conds:
            out.append(f"condition on {name} missing")
        elif not gold_conds:
            out.append(f"extra condition on {name}")
        elif len(gold_conds) == len(pred_conds) == 1:
            (gold_op, gold_value), (pred_op, pred_value) = gold_conds[0], pred_conds[0]
            if gold_op != pred_op:
                out.append(f"operator {COND_OPS[pred_op]} instead of {COND_OPS[gold_op]} on {name}")
            if canonical_value(gold_value) != canonical_value(pred_value):
                out.append(f"value {_value_text(pred_value)} instead of {_value_text(gold_value)} on {name}")
        else:
            out.append(f"conditions on {name} differ")
    return out


def unknown_columns(pred_sql: str | None, error: str | None, table: Table | None) -> list[str]:
    """Column names a prediction used that its table does not have: the one named in the error message
    ("no such column: X"), then any others found in the SQL (the checker stops at the first)."""
    names: list[str] = []
    match = _NO_SUCH_COLUMN.search(error or "")
    if match:
        names.append(match.group(1))
    if pred_sql and table is not None:
        known = {fold_identifier(n) for n in (*sqlite_column_names(table.header), *table.header)} | ROWID_NAMES
        try:
            trees = parse_sql(pred_sql)  # bounded: predictions are untrusted, and this runs in the main process
        except Exception:
            trees = []
        for tree in trees:
            defined = {fold_identifier(a.alias) for a in tree.find_all(exp.Alias) if a.alias}
            for column in tree.find_all(exp.Column):
                if isinstance(column.this, exp.Star):
                    continue
                name = column.name
                if fold_identifier(name) not in known and fold_identifier(name) not in defined:
                    names.append(name)
    return list(dict.fromkeys(names))


def analyze(results: Sequence[Mapping[str, Any]], examples: Iterable[Example],
            tables: Mapping[str, Table]) -> dict[str, Any]:
    """The breakdown of one run's results rows (results.jsonl) against its test examples and tables."""
    by_id = {e.id: e for e in examples}
    n = len(results)
    headline = {name: rate(sum(bool(r.get(key)) for r in results), n) for name, key in HEADLINE}
    counts = Counter(r["category"] for r in results)
    categories = {c: {"count": counts.get(c, 0), "share": counts.get(c, 0) / n if n else 0.0} for c in CATEGORIES}
    categories.update({c: {"count": k, "share": k / n} for c, k in counts.items() if c not in categories})

    joined: list[tuple[Mapping[str, Any], Example, Table | None, Query | None]] = []
    for row in results:
        example = by_id.get(row["id"])
        if example is not None:
            table = tables.get(example.table_id)
            joined.append((row, example, table, predicted_query(row.get("pred_sql"), table)))

    by_agg: dict[int, list[Mapping[str, Any]]] = {i: [] for i in range(len(AGG_OPS))}
    by_nconds: dict[int, list[Mapping[str, Any]]] = {i: [] for i in range(MAX_CONDITIONS + 1)}
    by_op: dict[int, list[Mapping[str, Any]]] = {i: [] for i in range(len(OPERATORS))}
    pred_labels = [*AGG_LABELS, UNPARSED]
    confusion = [[0] * len(pred_labels) for _ in AGG_LABELS]
    for row, example, _, predicted in joined:
        gold = example.query
        by_agg.setdefault(gold.agg, []).append(row)
        by_nconds.setdefault(len(gold.conds), []).append(row)
        for op in sorted({op for _, op, _ in gold.conds}):  # once per operator the question uses
            by_op.setdefault(op, []).append(row)
        column = predicted.agg if predicted is not None else len(AGG_LABELS)
        if 0 <= gold.agg < len(AGG_LABELS):
            confusion[gold.agg][column] += 1

    hallucinated: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    examples_by_category: dict[str, list[dict[str, Any]]] = {}
    for row, example, table, predicted in joined:
        category = row["category"]
        pred_sql, error = _shown(row.get("pred_sql")), _shown(row.get("error"))
        if category == UNKNOWN_COLUMN:
            columns = unknown_columns(row.get("pred_sql"), row.get("error"), table)
            hallucinated.append({"id": row["id"], "columns": [shortened(c) for c in columns], "pred_sql": pred_sql,
                                 "error": error})
        elif (row.get("pred_sql") is not None and not row.get("valid_sql")
              and category not in (GOLD_ERROR, MISSING_PREDICTION)):
            invalid.append({"id": row["id"], "category": category, "pred_sql": pred_sql, "error": error})
        if category == CORRECT:
            continue
        chosen = examples_by_category.setdefault(category, [])
        if len(chosen) < EXAMPLES_PER_CATEGORY:
            chosen.append({"id": row["id"], "question": _shown(row.get("question", example.question)),
                           "gold_sql": _shown(row.get("gold_sql")), "pred_sql": pred_sql, "error": error,
                           "what_differed": shortened(describe_difference(example.query, predicted, table, row))})
    column_counts = Counter(name for h in hallucinated for name in h["columns"])

    def label(names: Sequence[str], i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    return {
        "n": n,
        "examples_joined": len(joined),  # results rows whose id is among the test examples
        "headline": headline,
        "categories": categories,
        "by_aggregation": [_group(label(AGG_LABELS, k), v) for k, v in sorted(by_agg.items())],
        "by_condition_count": [_group(str(k), v) for k, v in sorted(by_nconds.items())],
        "by_operator": [_group(label(OPERATORS, k), v) for k, v in sorted(by_op.items())],
        "aggregation_confusion": {"gold": list(AGG_LABELS), "predicted": pred_labels, "counts": confusion},
        "hallucinated_columns": hallucinated,
        "hallucinated_column_counts": dict(column_counts.most_common()),
        "invalid_sql": invalid,
        "examples": {c: examples_by_category[c] for c in [*CATEGORIES, *sorted(examples_by_category)]
                     if c in examples_by_category},
    }


def _shown(text: Any) -> Any:
    return shortened(text) if isinstance(text, str) else text


def interval_metrics(analysis: Mapping[str, Any]) -> dict[str, float]:
    """Headline interval bounds as flat metrics (`execution_accuracy_ci_low`, ...) for MLflow."""
    out: dict[str, float] = {}
    for name, value in analysis["headline"].items():
        out[f"{name}_ci_low"] = value["ci_low"]
        out[f"{name}_ci_high"] = value["ci_high"]
    return out
