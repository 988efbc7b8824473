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
# Spider and BIRD (evaluation/multi_table_scoring.py): no logical form to say which part of a wrong query is wrong
MULTI_TABLE_CATEGORIES: tuple[str, ...] = (
    CORRECT, WRONG_RESULT, SYNTAX_ERROR, UNKNOWN_COLUMN, TIMEOUT, TOO_MANY_ROWS, MEMORY_LIMIT, FORBIDDEN_STATEMENT,
    MISSING_PREDICTION, GOLD_ERROR, OTHER,
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
