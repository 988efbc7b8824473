"""Why a query could not be run: the execution-error categories of the failure taxonomy
(evaluation/categories.py lists them all) and the error that carries one."""

from __future__ import annotations

SYNTAX_ERROR = "syntax_error"
UNKNOWN_COLUMN = "unknown_column"
UNKNOWN_TABLE = "unknown_table"  # SQLite's "no such table": multi-table datasets, where the prediction names tables
TIMEOUT = "timeout"
TOO_MANY_ROWS = "too_many_rows"
MEMORY_LIMIT = "memory_limit"  # the result's bytes, or SQLite's working memory, passed the cap
FORBIDDEN_STATEMENT = "forbidden_statement"
OTHER = "other"


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
    if "no such table" in text:
        return UNKNOWN_TABLE
    if "syntax error" in text or "incomplete input" in text or "unrecognized token" in text:
        return SYNTAX_ERROR
    return OTHER
