"""Score predictions: execution match, logical-form match and a failure category for every example.

Tables materialised once, each gold query run once, every query in one SQL worker process (executor.py),
64 examples' queries per round trip to it; a prediction that fails in any way is recorded on its example and
never stops the run. Scoring writes no file: the eval stage writes its outputs, each once (stages/evaluate.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp
from tqdm import tqdm

from experiments.data.jsonl import iter_jsonl
from experiments.data.prompt import render_sql
from experiments.data.records import DataError, Example, Query, Table
from experiments.evaluation.categories import (
    CATEGORIES,
    CORRECT,
    GOLD_ERROR,
    MISSING_PREDICTION,
    OTHER,
    mismatch_category,
)
from experiments.evaluation.logical_form import column_index, logical_forms_match, parse_logical_form
from experiments.evaluation.results_compare import Normalised, is_empty, normalise_rows, results_match
from experiments.evaluation.shown_text import shortened
from experiments.sql.errors import EvalError
from experiments.sql.executor import MAX_RESULT_BYTES, Row, SafeExecutor, check_limits
from experiments.sql.safe_sql import parse_single_query, prepare_query
from experiments.sql.sqlite_tables import (
    fold_identifier,
    materialize_tables,
    sqlite_column_names,
    sqlite_table_name,
    sqlite_text,
)

log = logging.getLogger(__name__)

MAX_SHOWN_ID_CHARS = 100  # an id in a message; WikiSQL's are like "test-1234"
BATCH = 64  # examples whose queries go to the SQL worker in one request (one round trip per batch)


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


def read_predictions(path: Path, expected_ids: Collection[str] | None = None) -> dict[str, str | None]:
    """`{"id", "sql"}` JSON lines -> {id: sql}; `"sql": null` is a missing prediction for that id (None).

    Anything wrong with a line (not UTF-8, not JSON, nested too deeply, a number too long to read, a key given
    twice, an id that is not a string or integer, an id given before) is a DataError naming the file and line,
    raised before anything is scored or written. With `expected_ids` (the test examples' ids), a file of which
    no id is expected is a DataError too: scoring it would report a silent 0.0.
    """
    path = Path(path)
    predictions: dict[str, str | None] = {}
    first_line: dict[str, int] = {}
    for number, obj in iter_jsonl(path, unique_keys=True):
        where = f"{path} line {number}"
        if "id" not in obj or "sql" not in obj:
            raise DataError(f"{where}: expected an object with keys 'id' and 'sql'")
        if obj["sql"] is not None and not isinstance(obj["sql"], str):
            raise DataError(f"{where}: 'sql' must be a string (or null: no prediction), "
                            f"not {type(obj['sql']).__name__}")
        if isinstance(obj["id"], bool) or not isinstance(obj["id"], str | int):
            raise DataError(f"{where}: 'id' must be a string (or an integer), not {type(obj['id']).__name__}")
        pid = str(obj["id"])
        if pid in first_line:
            raise DataError(f"{where}: duplicate id {shown_id(pid)} (first seen on line {first_line[pid]})")
        first_line[pid] = number
        predictions[pid] = obj["sql"]
    if expected_ids is not None and not any(pid in expected_ids for pid in predictions):
        raise DataError(f"{path}: {no_match_message(predictions, expected_ids)}")
    return predictions


def no_match_message(prediction_ids: Collection[str], expected_ids: Collection[str]) -> str:
    """Why predictions that match no test example cannot be scored, with ids to compare."""
    if not prediction_ids:
        return f"no predictions (the test split has {len(expected_ids)} examples)"
    return (f"none of its {len(prediction_ids)} prediction ids is one of the {len(expected_ids)} test example ids "
            f"(expected e.g. {_sample(sorted(expected_ids))}, got e.g. {_sample(prediction_ids)}); were the "
            "predictions made for another split or data selection?")


def shown_id(pid: str) -> str:
    """An id as messages show it: quoted, shortened (with the reports' marker, evaluation/shown_text.py), non-ASCII as
    code points, so a look-alike (`t\\u0435st-0`, a Cyrillic е) is told apart from the real id (`'test-0'`)."""
    return ascii(shortened(pid, MAX_SHOWN_ID_CHARS))


def _sample(ids: Collection[str], k: int = 3) -> str:
    return ", ".join(shown_id(i) for i in list(ids)[:k]) or "none"


@dataclass(frozen=True)
class _TableInfo:
    """What scoring needs about one table, computed once per table."""

    table: Table
    name: str  # in the SQLite file
    columns: frozenset[str]  # SQLite column names, folded
    index: dict[str, int]  # for logical forms
    executable: Table  # header = SQLite column names, so gold SQL names the right one of duplicate columns
    unique_header: bool


@dataclass
class _Pending:
    """One example between preparing its queries (in this process) and reading their answers (from the worker)."""

    example: Example
    info: _TableInfo
    gold_sql: str  # as shown in results.jsonl
    gold: str | Normalised | EvalError  # the SQL to run for gold's rows, or its rows, or why it has none
    pred_sql: str | None
    verbatim: bool  # the prediction is gold's SQL: same rows, same logical form, no need to run it
    predicted: Query | None = None
    query: str | None = None  # the prediction, checked and bound to the example's table
    rows: Normalised | EvalError | None = None


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

    def score_many(self, batch: Sequence[tuple[Example, str | None]]) -> list[tuple[ExampleResult, Query | str]]:
        """Each example's result and its prediction's logical form (or why none) for the official files.

        Every query the batch needs (gold unless cached, and each prediction) goes to the worker in one request,
        so the cost of a round trip to it is paid once per batch, not once per query.
        """
        pending = [self._prepare(example, pred_sql) for example, pred_sql in batch]
        self._run([p for p in pending if isinstance(p, _Pending)])
        return [self._finish(p) if isinstance(p, _Pending) else p for p in pending]

    def _prepare(self, example: Example, pred_sql: str | None) -> _Pending | tuple[ExampleResult, str]:
        table = self.tables.get(example.table_id)
        if table is None:
            error = EvalError(GOLD_ERROR, f"table {example.table_id!r} is not among the tables")
            return self._result(example, "", pred_sql, None, error, None, False), "no table"
        info = self._info(table)
        try:
            gold_sql = render_sql(example.query, table)
        except Exception:
            gold_sql = ""
        gold: str | Normalised | EvalError
        try:
            gold = render_sql(example.query, info.executable, table_name=info.name)
            gold = self._gold.get((info.name, gold), gold)
        except Exception as error:
            gold = EvalError(GOLD_ERROR, f"cannot render gold SQL: {type(error).__name__}: {error}")
        if pred_sql is not None and not isinstance(pred_sql, str):
            pred_sql = str(pred_sql)
        verbatim = (info.unique_header and pred_sql is not None
                    and pred_sql.strip().rstrip(";").rstrip() == gold_sql)
        pending = _Pending(example, info, gold_sql, gold, pred_sql, verbatim)
        if pred_sql is not None and not verbatim:
            self._prepare_prediction(pending)
        return pending

    @staticmethod
    def _prepare_prediction(pending: _Pending) -> None:
        assert pending.pred_sql is not None
        info = pending.info
        try:
            sql = sqlite_text(pending.pred_sql)  # as the table's text is stored: lone surrogates replaced
            tree: exp.Query = parse_single_query(sql)
            pending.predicted = parse_logical_form(tree, info.table, info.index)
            pending.query = prepare_query(sql, tree, info.name, info.columns)
        except EvalError as error:
            pending.rows = error
        except Exception as error:  # a bug or an oddity in a dependency must not stop the run
            pending.rows = EvalError(OTHER, f"{type(error).__name__}: {error}")

    def _run(self, pending: Sequence[_Pending]) -> None:
        """Run the gold queries not yet known and the prepared predictions, all in one request."""
        queries: list[tuple[str, str]] = []
        golds: dict[tuple[str, str], int] = {}  # gold key -> its place in queries (run once per batch)
        predictions: list[tuple[_Pending, int]] = []
        for p in pending:
            if isinstance(p.gold, str) and (p.info.name, p.gold) not in golds:
                golds[(p.info.name, p.gold)] = len(queries)
                queries.append((p.gold, p.info.name))
            if p.query is not None:
                predictions.append((p, len(queries)))
                queries.append((p.query, p.info.name))
        answers = self.executor.execute_many(queries) if queries else []
        for key, i in golds.items():
            self._gold[key] = _gold_rows(answers[i])
        for p in pending:
            if isinstance(p.gold, str):
                p.gold = self._gold[(p.info.name, p.gold)]
        for p, i in predictions:
            answer = answers[i]
            p.rows = answer if isinstance(answer, EvalError) else _normalised(answer)

    def _finish(self, p: _Pending) -> tuple[ExampleResult, Query | str]:
        assert not isinstance(p.gold, str)
        example = p.example
        if p.pred_sql is None:
            return self._result(example, p.gold_sql, None, None, p.gold, None, False), "missing prediction"
        if p.verbatim:
            if not isinstance(p.gold, EvalError):
                return self._result(example, p.gold_sql, p.pred_sql, p.gold, p.gold, example.query, True), \
                    example.query
            self._prepare_prediction(p)  # gold failed: run the prediction itself, to say how it fares (rare)
            self._run([p])
        lf_match = logical_forms_match(p.predicted, example.query)
        official: Query | str = p.predicted if p.predicted is not None else (
            str(p.rows) if isinstance(p.rows, EvalError) else "no WikiSQL logical form")
        return self._result(example, p.gold_sql, p.pred_sql, p.rows, p.gold, p.predicted, lf_match), official

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
        elif isinstance(rows, EvalError):  # WikiSQL keeps its own taxonomy (unknown_table is multi-table's)
            category, error = rows.category if rows.category in CATEGORIES else OTHER, pred_error
        else:
            assert rows is not None
            exec_match = results_match(gold, rows)
            category = CORRECT if exec_match else mismatch_category(predicted, example.query)
            error = None
        return ExampleResult(id=example.id, question=example.question, gold_sql=gold_sql, pred_sql=pred_sql,
                             exec_match=exec_match, lf_match=lf_match, error=error, category=category,
                             valid_sql=valid)


def _gold_rows(answer: list[Row] | EvalError) -> Normalised | EvalError:
    if isinstance(answer, EvalError):
        return EvalError(GOLD_ERROR, f"gold SQL failed: {answer}")
    if is_empty(answer):
        return EvalError(GOLD_ERROR, "gold SQL returned no rows (or only NULL)")
    return normalise_rows(answer)


def _normalised(rows: list[Row]) -> Normalised | EvalError:
    try:
        return normalise_rows(rows)
    except Exception as error:  # a bug or an oddity in a dependency must not stop the run
        return EvalError(OTHER, f"{type(error).__name__}: {error}")


def _metrics(results: Sequence[ExampleResult], unknown_ids: int, warnings: list[str],
             seconds: float) -> dict[str, Any]:
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
        "warnings": warnings,
        "eval_seconds": seconds,
    }


def _unknown_ids_warning(unknown: Sequence[str], n_predictions: int) -> str:
    return (f"{len(unknown)} of {n_predictions} predictions have ids that are not test examples and were ignored "
            f"(e.g. {_sample(unknown)}): they may have been made for another split or data selection")


def check_prediction_ids(example_ids: Sequence[str], predictions: Collection[str]) -> tuple[list[str], list[str]]:
    """The ids of `predictions` that are no example's (ignored by scoring) and the warning about them (logged), if
    any; a ValueError when an example id occurs twice or no prediction is for an example (nothing to score)."""
    seen: set[str] = set()
    for example_id in example_ids:
        if example_id in seen:
            raise ValueError(f"example id {example_id!r} occurs more than once")
        seen.add(example_id)
    if not any(pid in seen for pid in predictions):
        raise ValueError(f"nothing to score: {no_match_message(list(predictions), list(seen))}")
    unknown = [pid for pid in predictions if pid not in seen]
    warnings = [_unknown_ids_warning(unknown, len(predictions))] if unknown else []
    for warning in warnings:
        log.warning(warning)
    return unknown, warnings


@dataclass
class Scored:
    """Every example's result, its prediction's logical form (or why none) for the official files, the metrics."""

    results: list[ExampleResult]
    official: list[Query | str]
    metrics: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        """The results as results.jsonl's rows."""
        return [dict(vars(r)) for r in self.results]


def score(examples: Sequence[Example], tables: Mapping[str, Table], predictions: Mapping[str, str | None],
          db_path: Path, *, timeout_s: float = 1.0, max_rows: int = 10_000, max_result_bytes: int = MAX_RESULT_BYTES,
          progress: bool = True) -> Scored:
    """Score `predictions` ({example id: SQL, or None for none}) on `examples`, writing nothing (validation during
    training scores this way; the eval stage writes the outputs, stages/evaluate.write_outputs).

    The tables the examples need are materialised into `db_path` if not there yet. An example without a
    prediction counts as wrong (`missing_prediction`). Predictions whose ids are not among the examples are
    ignored, counted (`unknown_prediction_ids`) and warned about (log, `warnings`, the report); if no prediction
    matches an example, there is nothing to score and a ValueError says so.
    """
    start = time.perf_counter()
    check_limits(timeout_s, max_rows, max_result_bytes)
    unknown, warnings = check_prediction_ids([e.id for e in examples], predictions)
    needed = [tables[tid] for tid in dict.fromkeys(e.table_id for e in examples) if tid in tables]
    materialize_tables(needed, Path(db_path))
    results: list[ExampleResult] = []
    official: list[Query | str] = []
    with SafeExecutor(Path(db_path), timeout_s=timeout_s, max_rows=max_rows,
                      max_result_bytes=max_result_bytes) as executor, \
            tqdm(total=len(examples), desc="evaluating", unit="ex", disable=not progress) as bar:
        scorer = _Scorer(executor, tables)
        for start_at in range(0, len(examples), BATCH):
            batch = [(e, predictions.get(e.id)) for e in examples[start_at:start_at + BATCH]]
            for result, logical_form in scorer.score_many(batch):
                results.append(result)
                official.append(logical_form)
            bar.update(len(batch))
    return Scored(results, official, _metrics(results, len(unknown), warnings, time.perf_counter() - start))
