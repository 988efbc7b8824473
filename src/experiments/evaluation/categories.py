"""The failure taxonomy: every example ends in exactly one category, so counts add up to n."""

from __future__ import annotations

from experiments.data.model import Query
from experiments.evaluation.logical_form import canonical_conditions

CORRECT = "correct"
SYNTAX_ERROR = "syntax_error"
UNKNOWN_COLUMN = "unknown_column"
WRONG_SELECT_COLUMN = "wrong_select_column"
WRONG_AGGREGATION = "wrong_aggregation"
WRONG_WHERE = "wrong_where"
MISSING_OR_EXTRA_CONDITION = "missing_or_extra_condition"
TIMEOUT = "timeout"
TOO_MANY_ROWS = "too_many_rows"
MEMORY_LIMIT = "memory_limit"  # the result's bytes, or SQLite's working memory, passed the cap
FORBIDDEN_STATEMENT = "forbidden_statement"
MISSING_PREDICTION = "missing_prediction"
GOLD_ERROR = "gold_error"
OTHER = "other"

CATEGORIES: tuple[str, ...] = (
    CORRECT, WRONG_SELECT_COLUMN, WRONG_AGGREGATION, WRONG_WHERE, MISSING_OR_EXTRA_CONDITION,
    SYNTAX_ERROR, UNKNOWN_COLUMN, TIMEOUT, TOO_MANY_ROWS, MEMORY_LIMIT, FORBIDDEN_STATEMENT, MISSING_PREDICTION,
    GOLD_ERROR, OTHER,
)


class EvalError(Exception):
    """A query that could not be run or scored; `category` says why, the message says what happened."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category


def classify_sqlite_error(message: str) -> str:
    """Map an SQLite error message to a category (the authorizer's refusals read 'not authorized'; a LIKE/GLOB
    pattern over the length limit is refused because matching it could run past the time limit)."""
    text = message.lower()
    if "interrupted" in text or "pattern too complex" in text:
        return TIMEOUT
    if "out of memory" in text:
        return MEMORY_LIMIT
    if any(word in text for word in ("not authorized", "prohibited", "one statement at a time", "readonly")):
        return FORBIDDEN_STATEMENT
    if "no such column" in text or "ambiguous column" in text:
        return UNKNOWN_COLUMN
    if "syntax error" in text or "incomplete input" in text or "unrecognized token" in text:
        return SYNTAX_ERROR
    return OTHER


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
