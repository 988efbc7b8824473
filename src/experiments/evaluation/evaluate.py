"""Score predictions: execution match, logical-form match and a failure category for every example.

One read-only connection per evaluation, tables materialised once, each gold query run once; a
prediction that fails in any way is recorded on its example and never stops the run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp
from tqdm import tqdm

from experiments.data.model import DataError, Example, Query, Table
from experiments.evaluation.categories import (
    CATEGORIES,
    CORRECT,
    GOLD_ERROR,
    MISSING_PREDICTION,
    OTHER,
    EvalError,
    mismatch_category,
)
from experiments.evaluation.executor import SafeExecutor
from experiments.evaluation.logical_form import column_index, logical_forms_match, parse_logical_form
from experiments.evaluation.official import write_official_files
from experiments.evaluation.report import write_report
from experiments.evaluation.results_compare import Normalised, is_empty, normalise_rows, results_match
from experiments.evaluation.safe_sql import parse_single_query, prepare_query
from experiments.evaluation.sqlite_tables import (
    fold_identifier,
    materialize_tables,
    sqlite_column_names,
    sqlite_table_name,
)
from experiments.prompt import render_sql

RESULTS_FILE = "results.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


@dataclass
class ExampleResult:
    id: str
    question: str
    gold_sql: str
    pred_sql: str | None
    exec_match: bool
    lf_match: bool
    error: str | None
    category: str
    valid_sql: bool  # the prediction ran without error (what valid_sql_rate counts)


def read_predictions(path: Path) -> dict[str, str]:
    """`{"id", "sql"}` JSON lines -> {id: sql}; a malformed line or a repeated id is a DataError naming it."""
    path = Path(path)
    predictions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(obj, dict) or "id" not in obj or "sql" not in obj:
                raise DataError(f"{where}: expected an object with keys 'id' and 'sql'")
            if not isinstance(obj["sql"], str):
                raise DataError(f"{where}: 'sql' must be a string, not {type(obj['sql']).__name__}")
            pid = str(obj["id"])
            if pid in first_line:
                raise DataError(f"{where}: duplicate id {pid!r} (first seen on line {first_line[pid]})")
            first_line[pid] = number
            predictions[pid] = obj["sql"]
    return predictions


@dataclass(frozen=True)
class _TableInfo:
    """What scoring needs about one table, computed once per table."""

    table: Table
    name: str  # in the SQLite file
    columns: frozenset[str]  # SQLite column names, folded
    index: dict[str, int]  # for logical forms
    executable: Table  # header = SQLite column names, so gold SQL names the right one of duplicate columns
    unique_header: bool


class _Scorer:
    def __init__(self, executor: SafeExecutor, tables: Mapping[str, Table]):
        self.executor = executor
        self.tables = tables
        self._infos: dict[str, _TableInfo] = {}
        self._gold: dict[tuple[str, str], Normalised | EvalError] = {}

    def _info(self, table: Table) -> _TableInfo:
        info = self._infos.get(table.id)
        if info is None:
            names = sqlite_column_names(table.header)
            info = _TableInfo(table=table, name=sqlite_table_name(table.id),
                              columns=frozenset(fold_identifier(n) for n in names), index=column_index(table),
                              executable=Table(id=table.id, header=names, types=table.types, rows=()),
                              unique_header=names == table.header)
            self._infos[table.id] = info
        return info

    def _gold_rows(self, query: Query, info: _TableInfo) -> Normalised | EvalError:
        try:
            sql = render_sql(query, info.executable, table_name=info.name)
        except Exception as error:
            return EvalError(GOLD_ERROR, f"cannot render gold SQL: {type(error).__name__}: {error}")
        key = (info.name, sql)
        if key not in self._gold:
            try:
                rows = self.executor.execute(sql, info.name)
                self._gold[key] = (EvalError(GOLD_ERROR, "gold SQL returned no rows (or only NULL)")
                                   if is_empty(rows) else normalise_rows(rows))
            except EvalError as error:
                self._gold[key] = EvalError(GOLD_ERROR, f"gold SQL failed: {error}")
        return self._gold[key]

    def score(self, example: Example, pred_sql: str | None) -> tuple[ExampleResult, Query | str]:
        """The example's result, and its prediction's logical form (or why none) for the official files."""
        table = self.tables.get(example.table_id)
        if table is None:
            error = EvalError(GOLD_ERROR, f"table {example.table_id!r} is not among the tables")
            return self._result(example, "", pred_sql, None, error, None, False), "no table"
        info = self._info(table)
        try:
            gold_sql = render_sql(example.query, table)
        except Exception:
            gold_sql = ""
        gold = self._gold_rows(example.query, info)
        if pred_sql is None:
            return self._result(example, gold_sql, None, None, gold, None, False), "missing prediction"
        if not isinstance(pred_sql, str):
            pred_sql = str(pred_sql)
        if (info.unique_header and not isinstance(gold, EvalError)
                and pred_sql.strip().rstrip(";").rstrip() == gold_sql):  # verbatim gold: same rows, same form
            return self._result(example, gold_sql, pred_sql, gold, gold, example.query, True), example.query
        predicted: Query | None = None
        try:
            tree: exp.Query = parse_single_query(pred_sql)
            predicted = parse_logical_form(tree, table, info.index)
            bound = prepare_query(pred_sql, tree, info.name, info.columns)
            rows: Normalised | EvalError = normalise_rows(self.executor.execute(bound, info.name))
        except EvalError as error:
            rows = error
        except Exception as error:  # a bug or an oddity in a dependency must not stop the run
            rows = EvalError(OTHER, f"{type(error).__name__}: {error}")
        lf_match = logical_forms_match(predicted, example.query)
        official: Query | str = predicted if predicted is not None else (
            str(rows) if isinstance(rows, EvalError) else "no WikiSQL logical form")
        return self._result(example, gold_sql, pred_sql, rows, gold, predicted, lf_match), official

    @staticmethod
    def _result(example: Example, gold_sql: str, pred_sql: str | None, rows: Normalised | EvalError | None,
                gold: Normalised | EvalError, predicted: Query | None, lf_match: bool) -> ExampleResult:
        valid = rows is not None and not isinstance(rows, EvalError)
        pred_error = str(rows) if isinstance(rows, EvalError) else None
        exec_match = False
        if isinstance(gold, EvalError):
            category = GOLD_ERROR
            error: str | None = str(gold) + (f"; prediction: {pred_error}" if pred_error else "")
            if pred_sql is None:
                category, error = MISSING_PREDICTION, "no prediction for this example; " + str(gold)
        elif pred_sql is None:
            category, error = MISSING_PREDICTION, "no prediction for this example"
        elif isinstance(rows, EvalError):
            category, error = rows.category, pred_error
        else:
            assert rows is not None
            exec_match = results_match(gold, rows)
            category = CORRECT if exec_match else mismatch_category(predicted, example.query)
            error = None
        return ExampleResult(id=example.id, question=example.question, gold_sql=gold_sql, pred_sql=pred_sql,
                             exec_match=exec_match, lf_match=lf_match, error=error, category=category,
                             valid_sql=valid)


def _metrics(results: Sequence[ExampleResult], unknown_ids: int, seconds: float) -> dict[str, Any]:
    n = len(results)
    counts = Counter(r.category for r in results)
    categories = {c: counts.get(c, 0) for c in CATEGORIES}
    categories.update({c: k for c, k in counts.items() if c not in categories})
    return {
        "execution_accuracy": sum(r.exec_match for r in results) / n if n else 0.0,
        "logical_form_accuracy": sum(r.lf_match for r in results) / n if n else 0.0,
        "valid_sql_rate": sum(r.valid_sql for r in results) / n if n else 0.0,
        "n": n,
        "categories": categories,
        "missing_predictions": categories[MISSING_PREDICTION],
        "gold_errors": categories[GOLD_ERROR],
        "unknown_prediction_ids": unknown_ids,
        "eval_seconds": seconds,
    }


def evaluate(examples: Sequence[Example], tables: Mapping[str, Table], predictions: Mapping[str, str | None],
             db_path: Path, out_dir: Path, *, timeout_s: float = 1.0, max_rows: int = 10_000,
             progress: bool = True) -> dict[str, Any]:
    """Score `predictions` ({example id: SQL}) on `examples`; write results, metrics, report and the
    official-format files into `out_dir`; return the metrics.

    The tables the examples need are materialised into `db_path` if not there yet. An example without a
    prediction counts as wrong (`missing_prediction`); predictions for ids not among the examples are
    ignored and counted (`unknown_prediction_ids`).
    """
    start = time.perf_counter()
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise ValueError(f"example id {example.id!r} occurs more than once")
        seen.add(example.id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    needed = [tables[tid] for tid in dict.fromkeys(e.table_id for e in examples) if tid in tables]
    materialize_tables(needed, Path(db_path))
    results: list[ExampleResult] = []
    official: list[Query | str] = []
    with SafeExecutor(Path(db_path), timeout_s=timeout_s, max_rows=max_rows) as executor:
        scorer = _Scorer(executor, tables)
        for example in tqdm(examples, desc="evaluating", unit="ex", disable=not progress):
            result, logical_form = scorer.score(example, predictions.get(example.id))
            results.append(result)
            official.append(logical_form)
    rows = [dict(vars(r)) for r in results]
    with (out_dir / RESULTS_FILE).open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_official_files(examples, tables, official, out_dir)
    unknown = sum(1 for pid in predictions if pid not in seen)
    metrics = _metrics(results, unknown, time.perf_counter() - start)
    write_report(metrics, rows, out_dir / REPORT_FILE)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
