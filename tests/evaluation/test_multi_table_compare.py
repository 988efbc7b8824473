"""Multi-table result comparison: Spider's and BIRD's official verdicts (each expectation below is what
test-suite-sql-eval's `result_eq` / BIRD's `set(...) == set(...)` answer; benchmarks/parity_multi_table.py checks
them against the official code), WikiSQL's comparison unchanged, and the gold query's top-level ORDER BY."""

from __future__ import annotations

import logging
import random
import time

import pytest

from experiments.evaluation import multi_table_compare
from experiments.evaluation.multi_table_compare import gold_orders, results_equal, spider_executed_sql

Case = tuple[list[tuple[object, ...]], list[tuple[object, ...]], bool]


def verdicts(gold: list, predicted: list, *, orders: bool = False) -> dict[str, bool]:
    return {s: results_equal(gold, predicted, semantics=s, gold_orders=orders) for s in ("spider", "bird", "wikisql")}


# (gold, predicted, gold orders): expected verdicts {spider, bird, wikisql}
CASES: dict[str, tuple[Case, dict[str, bool]]] = {
    "both empty": (([], [], False), {"spider": True, "bird": True, "wikisql": True}),
    "both empty, ordered": (([], [], True), {"spider": True, "bird": True, "wikisql": True}),
    "gold empty": (([], [(1,)], False), {"spider": False, "bird": False, "wikisql": False}),
    "predicted empty": (([(1,)], [], False), {"spider": False, "bird": False, "wikisql": False}),
    "rows swapped, gold unordered": (([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], False),
                                     {"spider": True, "bird": True, "wikisql": True}),
    "rows swapped, gold ordered": (([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], True),
                                   {"spider": False, "bird": True, "wikisql": True}),
    "same order, gold ordered": (([(1, "a"), (2, "b")], [(1, "a"), (2, "b")], True),
                                 {"spider": True, "bird": True, "wikisql": True}),
    "duplicates: same set, other multiset": (([(1,), (1,), (2,)], [(1,), (2,), (2,)], False),
                                             {"spider": False, "bird": True, "wikisql": False}),
    "duplicates: one copy fewer": (([(1,), (1,)], [(1,)], False), {"spider": False, "bird": True, "wikisql": False}),
    "duplicates: ordered, moved": (([(1,), (1,), (2,)], [(1,), (2,), (1,)], True),
                                   {"spider": False, "bird": True, "wikisql": True}),
    "columns swapped": (([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False),
                        {"spider": True, "bird": False, "wikisql": False}),
    "columns swapped, gold ordered, rows in order": (([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True),
                                                     {"spider": True, "bird": False, "wikisql": False}),
    "columns swapped, gold ordered, rows not": (([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True),
                                                {"spider": False, "bird": False, "wikisql": False}),
    "five columns permuted": (([(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)], [(5, 3, 1, 4, 2), (10, 8, 6, 9, 7)], False),
                              {"spider": True, "bird": False, "wikisql": False}),
    "swap within one row only": (([(1, 2), (3, 4)], [(2, 1), (3, 4)], False),
                                 {"spider": False, "bird": False, "wikisql": False}),
    "column values re-paired": (([(1, "a"), (2, "b")], [(1, "b"), (2, "a")], False),
                                {"spider": False, "bird": False, "wikisql": False}),
    "fewer predicted columns": (([(1, 2)], [(1,)], False), {"spider": False, "bird": False, "wikisql": False}),
    "more predicted columns": (([(1,)], [(1, 2)], False), {"spider": False, "bird": False, "wikisql": False}),
    "NULL vs NULL": (([(None,)], [(None,)], False), {"spider": True, "bird": True, "wikisql": True}),
    "NULL vs 0": (([(None,)], [(0,)], False), {"spider": False, "bird": False, "wikisql": False}),
    "NULL vs empty text": (([(None,)], [("",)], False), {"spider": False, "bird": False, "wikisql": False}),
    "NULLs in permuted columns": (([(None, 1), (2, None)], [(1, None), (None, 2)], False),
                                  {"spider": True, "bird": False, "wikisql": False}),
    "1 vs 1.0": (([(1,)], [(1.0,)], False), {"spider": True, "bird": True, "wikisql": True}),
    # Spider's quick check sorts each row's values by str(value) + str(type(value)): '1.5...' sorts before
    # '1<class...', '1.0...' before '1.5...', so the sorted rows differ and the official verdict is a mismatch.
    "(1, 1.5) vs (1.0, 1.5)": (([(1, 1.5)], [(1.0, 1.5)], False), {"spider": False, "bird": True, "wikisql": True}),
    "(1, 'a') vs (1.0, 'a')": (([(1, "a")], [(1.0, "a")], False), {"spider": True, "bird": True, "wikisql": True}),
    "0.1 + 0.2 vs 0.3": (([(0.1 + 0.2,)], [(0.3,)], False), {"spider": False, "bird": False, "wikisql": True}),
    "'1' vs 1": (([("1",)], [(1,)], False), {"spider": False, "bird": False, "wikisql": True}),
    "'a' vs 'A'": (([("a",)], [("A",)], False), {"spider": False, "bird": False, "wikisql": True}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_official_verdicts(name: str) -> None:
    (gold, predicted, orders), expected = CASES[name]
    assert verdicts(gold, predicted, orders=orders) == expected


def test_wikisql_is_results_match() -> None:
    from experiments.evaluation.results_compare import normalise_rows, results_match

    gold, predicted = [(1, "Abc"), (2.0, None)], [("2", None), (1.0, "abc ")]
    assert results_equal(gold, predicted, semantics="wikisql", gold_orders=True) == results_match(
        normalise_rows(gold), normalise_rows(predicted))


def test_rows_as_lists() -> None:
    """Results loaded from JSON come as lists of lists."""
    assert results_equal([[1, "a"], [2, "b"]], [["b", 2], ["a", 1]], semantics="spider", gold_orders=False)
    assert results_equal([[1, "a"]], [[1, "a"], [1, "a"]], semantics="bird", gold_orders=False)


def test_unknown_semantics() -> None:
    with pytest.raises(ValueError, match="unknown comparison semantics"):
        results_equal([], [], semantics="sparc", gold_orders=False)  # type: ignore[arg-type]


def test_big_result_permuted_and_shuffled() -> None:
    rng = random.Random(3)
    gold = [(i, f"name {i % 97}", rng.random(), i % 3, None) for i in range(20_000)]
    predicted = [(row[4], row[2], row[0], row[3], row[1]) for row in gold]
    rng.shuffle(predicted)
    started = time.perf_counter()
    assert results_equal(gold, predicted, semantics="spider", gold_orders=False)
    assert not results_equal(gold, predicted, semantics="spider", gold_orders=True)
    predicted[5] = (None, predicted[5][1], -1, predicted[5][3], predicted[5][4])
    assert not results_equal(gold, predicted, semantics="spider", gold_orders=False)
    assert time.perf_counter() - started < 10


def test_many_columns_with_the_same_values_stay_bounded() -> None:
    """16 columns holding the same values (each column a shuffle of one base column): the official code's search
    space is 16^16 candidate tuples; ours prunes on the columns assigned so far."""
    rng = random.Random(5)
    base = [i % 2 for i in range(400)]
    columns = [rng.sample(base, len(base)) for _ in range(16)]
    gold = list(zip(*columns, strict=True))
    perm = list(range(16))
    rng.shuffle(perm)
    predicted = [tuple(row[j] for j in perm) for row in gold]
    started = time.perf_counter()
    assert results_equal(gold, predicted, semantics="spider", gold_orders=False)
    broken = [row[:8] + tuple(reversed(row[8:])) if i % 2 else row for i, row in enumerate(predicted)]
    assert not results_equal(gold, broken, semantics="spider", gold_orders=False)
    assert time.perf_counter() - started < 10


def test_search_cap_counts_as_mismatch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    gold = [(1, 0, 0, 1, 1, 0), (0, 1, 1, 0, 0, 1), (1, 1, 0, 0, 1, 0)]
    predicted = [(0, 1, 1, 1, 0, 0), (1, 0, 0, 0, 1, 1), (0, 1, 1, 0, 1, 0)]  # a column permutation of gold
    assert results_equal(gold, predicted, semantics="spider", gold_orders=False)
    monkeypatch.setattr(multi_table_compare, "MAX_SEARCH_CELLS", 10)
    with caplog.at_level(logging.WARNING, logger=multi_table_compare.__name__):
        assert not results_equal(gold, predicted, semantics="spider", gold_orders=False)
    assert "reached its cap" in caplog.text


@pytest.mark.parametrize(("sql", "orders"), [
    ("SELECT a FROM t ORDER BY a", True),
    ("select a from t order by a desc limit 3;", True),
    ("SELECT a FROM t", False),
    ("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 2)", False),
    ("SELECT a FROM t WHERE b IN (SELECT b FROM s ORDER BY b LIMIT 1)", False),
    ("WITH c AS (SELECT a FROM t ORDER BY a) SELECT a FROM c", False),
    ("WITH c AS (SELECT a FROM t) SELECT a FROM c ORDER BY a", True),
    ("SELECT a FROM t UNION SELECT b FROM s ORDER BY 1", True),
    ("SELECT a FROM t UNION SELECT b FROM s", False),
    ("(SELECT a FROM t ORDER BY a)", True),
    ("SELECT a FROM t WHERE b = 'order by'", False),
    ("SELECT a FROM t ORDER  BY a", True),
    ("SELECT FROM WHERE ORDER BY (", True),  # does not parse: the text decides
    ("SELECT FROM WHERE (", False),
])
def test_gold_orders(sql: str, orders: bool) -> None:
    assert gold_orders(sql) is orders


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT DISTINCT name FROM t", "SELECT  name FROM t"),
    ("select count( distinct b), DISTINCT(a) from t", "select count(  b), (a) from t"),
    # never inside a string or a quoted name
    ("SELECT a FROM t WHERE b = 'DISTINCT' AND \"distinct\" = 1",
     "SELECT a FROM t WHERE b = 'DISTINCT' AND \"distinct\" = 1"),
    ("SELECT a FROM t WHERE b > = 3 AND c < = 2 AND d ! = 1", "SELECT a FROM t WHERE b >= 3 AND c <= 2 AND d != 1"),
    ("SELECT DISTINCT 'unterminated", "SELECT DISTINCT 'unterminated"),  # the tokenizer cannot read it: unchanged
])
def test_spider_executed_sql_is_what_the_official_evaluator_runs(sql: str, expected: str) -> None:
    assert spider_executed_sql(sql) == expected
    assert "DISTINCT" in spider_executed_sql("SELECT DISTINCT a FROM t", keep_distinct=True)


def test_spider_executed_sql_is_bounded() -> None:
    huge = "SELECT DISTINCT " + "1+" * 20_000 + "1"
    assert spider_executed_sql(huge) == huge  # past sql_parse's bounds: not tokenized, so its DISTINCT stays
