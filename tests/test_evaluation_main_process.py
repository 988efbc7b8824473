"""Hostile predictions, second battery (issue 24): the evaluator's own process around the sandbox. Every parse of a
prediction is bounded, and the analysis of megabyte predictions takes no time."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from experiments.analysis.breakdown import analyze, predicted_query, unknown_columns
from experiments.data.model import Example, Query, Table
from experiments.evaluation import EvalError, parse_logical_form
from experiments.evaluation.safe_sql import parse_single_query
from experiments.evaluation.sql_parse import MAX_SQL_CHARS, SQLTooLarge, parse_sql

TABLE = Table(id="1-10015132-11", header=("Player", "No.", "School/Club Team"), types=("text", "real", "text"),
              rows=(("Antonio Lang", 21, "Duke"), ("Voshon Lenard", 2, "Minnesota"), ("Martin Lewis", 32, "Butler")))
QUERY = Query(sel=1, agg=0, conds=((0, 0, "Antonio Lang"),))
ONE_MB = "SELECT " + "1+" * 500_000 + "1"  # the issue's: 17 s and 1 GB in the analysis step, unbounded
UNDER_THE_CAP = "SELECT \"No.\" FROM t WHERE Player = '" + "x" * (MAX_SQL_CHARS - 60) + "'"  # parsed, runs

PAST_THE_BOUNDS = {
    "1 MB": ONE_MB,
    "9,000 additions in 18,000 characters": "SELECT " + "+".join(["1"] * 9_000),
    "parentheses 25 deep": "SELECT " + "(" * 25 + "1" + ")" * 25,
    "a chain of 150 conditions": "SELECT Player FROM t WHERE " + " AND ".join(['"No." = 1'] * 150),
    "400 NOTs": "SELECT " + "NOT " * 400 + "1",
}


@pytest.mark.parametrize("sql", PAST_THE_BOUNDS.values(), ids=PAST_THE_BOUNDS.keys())
def test_every_parse_of_a_prediction_is_bounded(sql: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SQLTooLarge):
        parse_sql(sql)
    with pytest.raises(EvalError) as raised:  # scoring and execution-guided decoding
        parse_single_query(sql)
    assert raised.value.category == "other"
    assert parse_logical_form(sql, TABLE) is None  # logical-form accuracy
    assert predicted_query(sql, TABLE) is None  # the analysis
    assert unknown_columns(sql, "no such column: Jersey", TABLE) == ["Jersey"]  # only the error's name
    assert time.perf_counter() - start < 1.0  # ~0.1 s at most here


def test_sql_within_the_bounds_parses_as_before() -> None:
    (tree,) = parse_sql('SELECT "No." FROM t WHERE Player = \'Antonio Lang\' AND "No." > 3;')
    assert tree.sql(dialect="sqlite") == 'SELECT "No." FROM t WHERE Player = \'Antonio Lang\' AND "No." > 3'
    assert parse_logical_form(UNDER_THE_CAP, TABLE) is not None


def test_the_analysis_of_megabyte_predictions_takes_no_time_and_little_memory() -> None:
    examples = [Example(f"test-{i}", TABLE.id, "What number did Antonio Lang wear?", QUERY) for i in range(3)]
    rows = [{"id": e.id, "question": e.question, "gold_sql": "SELECT 1", "pred_sql": sql, "exec_match": False,
             "lf_match": False, "error": f"SQL is {len(sql)} characters long", "category": "other",
             "valid_sql": False} for e, sql in zip(examples, (ONE_MB, ONE_MB + " ", UNDER_THE_CAP), strict=True)]
    tracemalloc.start()
    start = time.perf_counter()
    try:
        analysis = analyze(rows, examples, {TABLE.id: TABLE})
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2.0  # 0.01 s here (the 1 MB ones are refused unparsed; before: 17 s each)
    assert peak < 64 << 20  # 0.4 MiB here (before: 1 GB)
    assert len(analysis["invalid_sql"]) == 3

