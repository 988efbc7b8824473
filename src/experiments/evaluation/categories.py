"""The failure taxonomy: every example ends in exactly one category, so counts add up to n."""

from __future__ import annotations

from experiments.data.records import Query
from experiments.evaluation.logical_form import canonical_conditions
from experiments.sql.errors import (
    FORBIDDEN_STATEMENT,
    MEMORY_LIMIT,
    OTHER,
    SYNTAX_ERROR,
    TIMEOUT,
    TOO_MANY_ROWS,
    UNKNOWN_COLUMN,
    UNKNOWN_TABLE,
)

CORRECT = "correct"
WRONG_SELECT_COLUMN = "wrong_select_column"
WRONG_AGGREGATION = "wrong_aggregation"
WRONG_WHERE = "wrong_where"
MISSING_OR_EXTRA_CONDITION = "missing_or_extra_condition"
MISSING_PREDICTION = "missing_prediction"
GOLD_ERROR = "gold_error"

CATEGORIES: tuple[str, ...] = (
    CORRECT, WRONG_SELECT_COLUMN, WRONG_AGGREGATION, WRONG_WHERE, MISSING_OR_EXTRA_CONDITION,
    SYNTAX_ERROR, UNKNOWN_COLUMN, TIMEOUT, TOO_MANY_ROWS, MEMORY_LIMIT, FORBIDDEN_STATEMENT, MISSING_PREDICTION,
    GOLD_ERROR, OTHER,
)

WRONG_RESULT = "wrong_result"  # multi-table datasets: the prediction ran and returned other rows than gold's
# Spider and BIRD: what differs between a wrong prediction's SQL and gold's (evaluation/multi_table_failures.py),
# in the order they are looked for; wrong_result when none of them does
WRONG_TABLE = "wrong_table"
MISSING_JOIN = "missing_join"
WRONG_JOIN_KEY = "wrong_join_key"
WRONG_SET_OPERATION = "wrong_set_operation"
WRONG_GROUP_BY = "wrong_group_by"
WRONG_ORDER_BY = "wrong_order_by"
WRONG_SELECT = "wrong_select"
MULTI_TABLE_MISMATCHES: tuple[str, ...] = (
    WRONG_TABLE, MISSING_JOIN, WRONG_JOIN_KEY, WRONG_SET_OPERATION, WRONG_GROUP_BY, WRONG_ORDER_BY, WRONG_SELECT,
    WRONG_WHERE, WRONG_RESULT,
)
MULTI_TABLE_CATEGORIES: tuple[str, ...] = (
    CORRECT, *MULTI_TABLE_MISMATCHES, SYNTAX_ERROR, UNKNOWN_TABLE, UNKNOWN_COLUMN, TIMEOUT, TOO_MANY_ROWS,
    MEMORY_LIMIT, FORBIDDEN_STATEMENT, MISSING_PREDICTION, GOLD_ERROR, OTHER,
)


def mismatch_category(predicted: Query | None, gold: Query) -> str:
    """Why an executable prediction returned the wrong rows, read off its logical form against gold's."""
    if predicted is None:
        return OTHER
    if predicted.sel != gold.sel:
        return WRONG_SELECT_COLUMN
    if predicted.agg != gold.agg:
        return WRONG_AGGREGATION
    if len(canonical_conditions(predicted)) != len(canonical_conditions(gold)):
        return MISSING_OR_EXTRA_CONDITION
    return WRONG_WHERE
