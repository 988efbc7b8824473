"""Run SQL against the materialised tables so that nothing it does can change them or hang the run.

Guards, all on one connection opened once per evaluation:
- the file is opened read-only (`mode=ro`), so no write can succeed even if every other guard failed;
- an authorizer allows only SELECT, recursive CTEs, reading the one table the example is about, and a list
  of pure functions (no load_extension, readfile, writefile, fts3_tokenizer, ...); everything else,
  ATTACH/DETACH and PRAGMA included, is refused while the statement is being prepared;
- a progress handler interrupts a statement that runs past its time limit (endless recursive CTEs, huge
  cross joins), and at most `max_rows` rows are fetched;
- strings and blobs are capped in length, so `replace()` chains fail fast instead of eating memory (printf and
  zeroblob, which build a huge value inside one uninterruptible call, are not on the list at all);
- Python's sqlite3 refuses to run more than one statement per call.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from experiments.evaluation.categories import OTHER, TIMEOUT, TOO_MANY_ROWS, EvalError, classify_sqlite_error
from experiments.evaluation.sqlite_tables import fold_identifier

Row = tuple[object, ...]

SAFE_FUNCTIONS = frozenset({
    "abs", "avg", "count", "max", "min", "sum", "total", "group_concat", "string_agg",
    "lower", "upper", "length", "octet_length", "substr", "substring", "trim", "ltrim", "rtrim", "replace",
    "instr", "like", "glob", "char", "unicode", "hex", "quote", "concat", "concat_ws",
    "round", "coalesce", "ifnull", "nullif", "iif", "if", "typeof", "likely", "unlikely", "likelihood",
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    "sign", "ceil", "ceiling", "floor", "trunc", "ln", "log", "log10", "log2", "exp", "pow", "power",
    "sqrt", "mod", "pi", "random", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "degrees", "radians",
})
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_CHECK_EVERY = 1000  # SQLite VM instructions between deadline checks (~tens of microseconds)
_MAX_VALUE_LENGTH = 100_000  # bytes in one string or blob; WikiSQL cells are short
_MAX_SQL_LENGTH = 100_000


class SafeExecutor:
    """A read-only, authorised, time- and row-limited SQLite connection; use as a context manager."""

    def __init__(self, db_path: Path, *, timeout_s: float = 1.0, max_rows: int = 10_000):
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self._table = ""
        self._deadline = math.inf
        uri = Path(db_path).resolve().as_uri() + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        if hasattr(self._conn, "setlimit"):  # Python >= 3.11
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_LENGTH)
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, _MAX_SQL_LENGTH)
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self._conn.set_authorizer(self._authorize)
        self._conn.set_progress_handler(self._past_deadline, _CHECK_EVERY)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                   trigger: str | None) -> int:
        if action in (sqlite3.SQLITE_SELECT, _SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # Column "" is SQLite's marker for "table used, no value read" (count(*) over a table or CTE).
            ok = arg1 is not None and (fold_identifier(arg1) == self._table or arg2 == "")
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            ok = arg2 is not None and arg2.lower() in SAFE_FUNCTIONS
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY

    def _past_deadline(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def execute(self, sql: str, table_name: str) -> list[Row]:
        """Rows of `sql`, which may read only `table_name`; raise EvalError (with a category) on failure."""
        self._table = fold_identifier(table_name)
        self._deadline = time.perf_counter() + self.timeout_s
        cursor = None
        try:
            cursor = self._conn.execute(sql)
            rows = cursor.fetchmany(self.max_rows + 1)
        except sqlite3.Error as error:
            message = str(error) or type(error).__name__
            category = classify_sqlite_error(message)
            if category == TIMEOUT:
                message = f"interrupted: past the {self.timeout_s:g} s time limit"
            raise EvalError(category, message) from None
        except Exception as error:  # e.g. ValueError for a NUL character, OverflowError, MemoryError
            raise EvalError(OTHER, f"{type(error).__name__}: {error}") from None
        finally:
            self._deadline = math.inf
            self._table = ""
            if cursor is not None:
                cursor.close()
        if len(rows) > self.max_rows:
            raise EvalError(TOO_MANY_ROWS, f"more than {self.max_rows} rows")
        return rows

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SafeExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
