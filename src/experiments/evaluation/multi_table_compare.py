"""Execution match for multi-table datasets: a predicted result against the gold one, under the comparison rules of
the dataset's official evaluator (Spider, BIRD), or this project's WikiSQL rule.

`results_equal` is the one entry point; `gold_orders` decides from the gold SQL whether row order counts;
`spider_executed_sql` is the SQL Spider's evaluator runs for a query (DISTINCT removed, by default).

Spider (the verdicts of test-suite-sql-eval's `exec_eval.result_eq`):
- Two empty results match; otherwise the row counts and the column counts (of the first rows) must be equal.
- Rows are a multiset: duplicates count. Order counts only when the gold query orders (`gold_orders`).
- Columns match up to a permutation: the predicted result matches if reordering its columns makes it equal.
- Values compare with Python's `==` on what SQLite returned, exactly, with no tolerance and no case folding:
  NULL (None) equals NULL, 1 equals 1.0, 0.1 + 0.2 does not equal 0.3, '1' does not equal 1, 'A' does not equal 'a'.
- Before the column search the official code rejects a pair whose rows differ once each row's values are sorted by
  `str(value) + str(type(value))` (as a list when order counts, as a set otherwise). For same-typed values that is
  only a faster necessary condition, but where equal values differ in type (1 and 1.0) the sort can place them
  differently and reject a pair the column search would accept: (1, 1.5) against (1.0, 1.5) is a mismatch.
  `_quick_check` reproduces that check, so the verdicts stay the official ones.
- The column search. The official code tries every column permutation (n^n tuples, the non-permutations skipped)
  for up to 3 columns and, past 3, prunes with the values of 20 randomly drawn predicted rows; with many columns of
  similar values that still explodes (10 columns of 0/1 flags: up to 10^10 candidates). Here a predicted column is a
  candidate for a gold column only when the two hold the same values (as multisets; as sequences when order
  counts), the identity permutation is tried first, and then a depth-first search assigns gold columns one at a
  time, dropping an assignment as soon as the rows projected onto the columns assigned so far differ. Every step
  of that search is sound (it never drops a permutation that works), so the verdict is the official one; its work
  is capped at MAX_SEARCH_CELLS cells, and a search that reaches the cap is logged and counted as a mismatch.
  The cap takes adversarial results (many columns holding the same values, no permutation fitting) to reach.

BIRD (its `evaluation.py`: `set(predicted_res) == set(ground_truth_res)`): set equality of the row tuples, so order
and duplicates are ignored; columns are positional; values compare with Python's `==` as above.

WikiSQL: this project's comparison (results_compare: rows as multisets, numbers numerically, text case-folded).

NaN never comes back from SQLite (it stores NULL), so none of the above considers it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from experiments.evaluation.results_compare import normalise_rows, results_match
from experiments.sql.sql_parse import parse_sql, tokenize_sql

log = logging.getLogger(__name__)

Semantics = Literal["spider", "bird", "wikisql"]
SEMANTICS: tuple[Semantics, ...] = ("spider", "bird", "wikisql")

# Cells (row values) the column-permutation search may look at beyond its first candidates; ~1 s of Python.
MAX_SEARCH_CELLS = 2_000_000

Row = tuple[object, ...]


def results_equal(gold_rows: Iterable[Sequence[object]], predicted_rows: Iterable[Sequence[object]], *,
                  semantics: Semantics, gold_orders: bool) -> bool:
    """Whether the predicted result matches the gold one under `semantics`; `gold_orders` (see `gold_orders`) says
    whether the gold query orders its rows, which only Spider's rule reads."""
    gold = [tuple(row) for row in gold_rows]
    predicted = [tuple(row) for row in predicted_rows]
    if semantics == "spider":
        return spider_results_equal(gold, predicted, order_matters=gold_orders)
    if semantics == "bird":
        return bird_results_equal(gold, predicted)
    if semantics == "wikisql":
        return results_match(normalise_rows(gold), normalise_rows(predicted))
    raise ValueError(f"unknown comparison semantics {semantics!r} (expected one of {', '.join(SEMANTICS)})")


def bird_results_equal(gold: Sequence[Row], predicted: Sequence[Row]) -> bool:
    """BIRD: the same set of row tuples."""
    return set(predicted) == set(gold)


def spider_results_equal(gold: Sequence[Row], predicted: Sequence[Row], *, order_matters: bool) -> bool:
    """Spider: equal bags of rows (lists when order matters) once the predicted columns are suitably permuted."""
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted):
        return False
    width = len(gold[0])
    if len(predicted[0]) != width:
        return False
    if not _quick_check(gold, predicted, order_matters):
        return False
    if _rows_equal(gold, predicted, order_matters):  # the identity permutation, the usual case
        return True
    return _permutation_exists(gold, predicted, width, order_matters)


def _sorted_values(row: Row) -> Row:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))


def _quick_check(gold: Sequence[Row], predicted: Sequence[Row], order_matters: bool) -> bool:
    """The official evaluator's necessary condition: rows with their values sorted (by text and type) agree."""
    gold_sorted = [_sorted_values(row) for row in gold]
    predicted_sorted = [_sorted_values(row) for row in predicted]
    if order_matters:
        return gold_sorted == predicted_sorted
    return set(gold_sorted) == set(predicted_sorted)


def _rows_equal(gold: Sequence[Row], predicted: Sequence[Row], order_matters: bool) -> bool:
    if order_matters:
        return list(gold) == list(predicted)
    return Counter(gold) == Counter(predicted)


def _column_key(column: list[object], order_matters: bool) -> object:
    """What two columns must share for one to stand for the other under some row permutation."""
    if order_matters:
        return tuple(column)
    return frozenset(Counter(column).items())


class _SearchTooLarge(Exception):
    pass


def _permutation_exists(gold: Sequence[Row], predicted: Sequence[Row], width: int, order_matters: bool) -> bool:
    gold_columns = [[row[i] for row in gold] for i in range(width)]
    predicted_columns = [[row[j] for row in predicted] for j in range(width)]
    by_key: dict[object, list[int]] = {}
    for j, column in enumerate(predicted_columns):
        by_key.setdefault(_column_key(column, order_matters), []).append(j)
    candidates = [by_key.get(_column_key(column, order_matters), []) for column in gold_columns]
    if any(not c for c in candidates):
        return False
    # Assign the most constrained gold columns first: they prune the most.
    order = sorted(range(width), key=lambda i: len(candidates[i]))
    budget = [MAX_SEARCH_CELLS]
    rows = len(gold)

    def projected_equal(gold_prefix: list[Row], predicted_prefix: list[Row]) -> bool:
        budget[0] -= 2 * rows
        if budget[0] < 0:
            raise _SearchTooLarge
        return _rows_equal(gold_prefix, predicted_prefix, order_matters)

    def search(depth: int, used: set[int], gold_prefix: list[Row], predicted_prefix: list[Row]) -> bool:
        if depth == width:
            return True
        gold_column = gold_columns[order[depth]]
        extended_gold = [prefix + (value,) for prefix, value in zip(gold_prefix, gold_column, strict=True)]
        for j in candidates[order[depth]]:
            if j in used:
                continue
            extended = [prefix + (value,) for prefix, value in zip(predicted_prefix, predicted_columns[j], strict=True)]
            if projected_equal(extended_gold, extended):
                used.add(j)
                if search(depth + 1, used, extended_gold, extended):
                    return True
                used.discard(j)
        return False

    empty: list[Row] = [() for _ in range(rows)]
    try:
        return search(0, set(), empty, list(empty))
    except _SearchTooLarge:
        log.warning("column-permutation search over %d columns x %d rows reached its cap of %d cells: counted as a "
                    "mismatch", width, rows, MAX_SEARCH_CELLS)
        return False


_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def gold_orders(gold_sql: str) -> bool:
    """Whether the gold query orders its result: an ORDER BY at the top level (on the statement itself, or on a set
    operation as a whole), not one inside a subquery or a CTE.

    The official Spider evaluator instead looks for the text 'order by' anywhere in the lowercased gold SQL, so a
    gold query whose only ORDER BY sits in a subquery makes row order count there and not here. SQL that
    sql_parse.parse_sql cannot parse (or that is not one statement) falls back to looking for ORDER BY in the text.
    """
    try:
        statements = parse_sql(gold_sql)
    except (ValueError, SqlglotError):
        statements = []
    if len(statements) != 1:
        return bool(_ORDER_BY.search(gold_sql))
    node = statements[0]
    while isinstance(node, exp.Subquery | exp.Paren) and not node.args.get("order"):
        node = node.this
    return node.args.get("order") is not None


_SPACED_COMPARISONS = (("> =", ">="), ("< =", "<="), ("! =", "!="))


def spider_executed_sql(sql: str, *, keep_distinct: bool = False) -> str:
    """The SQL Spider's test-suite evaluator executes for `sql` (exec_eval.eval_exec_match), gold and prediction
    alike: `> =`, `< =` and `! =` closed up and, unless `keep_distinct` (its --keep_distinct, off by default), every
    DISTINCT keyword removed, `count(DISTINCT x)` included. That is a trait of the official evaluator which published
    Spider execution accuracies share: a prediction that differs from gold only by DISTINCT counts as a match.

    DISTINCT is removed as a keyword token (sqlglot's tokenizer, within sql_parse's bounds), never inside a string or
    a quoted name. SQL the tokenizer cannot read, or past the bounds, keeps its DISTINCT (it is refused or fails to
    run anyway). The official code also keeps only the first statement of the prediction it rewrites; here SQL of
    more than one statement is refused before it runs, whatever its first statement returns."""
    for spaced, closed in _SPACED_COMPARISONS:
        sql = sql.replace(spaced, closed)
    if keep_distinct or "distinct" not in sql.lower():
        return sql
    try:
        tokens = tokenize_sql(sql)
    except (ValueError, SqlglotError):
        return sql
    kept, start = [], 0
    for token in tokens:
        if token.token_type == TokenType.DISTINCT:
            kept.append(sql[start:token.start])
            start = token.end + 1
    kept.append(sql[start:])
    return "".join(kept)
