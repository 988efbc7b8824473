"""Run SQL against the materialised tables so that nothing it does can change them, hang or crash the run.

The SQL runs in a worker process holding a guarded, read-only connection (sqlite_sandbox.py says what guards
it). The worker's progress handler stops most runaway queries at the time limit; some SQLite calls cannot be
interrupted (a LIKE, GLOB or trim over long text runs for seconds in one call), so the parent waits at most
`timeout_s + KILL_GRACE_S` for an answer, then kills the worker and starts another. Waiting is a poll on a
pipe, so Ctrl-C and SIGTERM (turned into KeyboardInterrupt by the CLI) stop the run at once, and the worker
exits when its parent does: no query can hold the evaluation or outlive it.
"""

from __future__ import annotations

import math
import os
import select
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.sql import sqlite_sandbox
from experiments.sql.errors import (
    MEMORY_LIMIT,
    OTHER,
    TIMEOUT,
    TOO_MANY_ROWS,
    EvalError,
    classify_sqlite_error,
)
from experiments.sql.sqlite_sandbox import MAX_LIKE_PATTERN_LENGTH, SAFE_FUNCTIONS, Row
from experiments.sql.sqlite_tables import sqlite_text

__all__ = ["KILL_GRACE_S", "MAX_RESULT_BYTES", "SAFE_FUNCTIONS", "DatabaseExecutors", "Row", "SafeExecutor",
           "check_limits"]

MAX_RESULT_BYTES = 8_000_000  # text and blob bytes (plus 8 per value) one result may hold; WikiSQL's are tiny
KILL_GRACE_S = 0.5  # past the time limit, how long the worker's own deadline gets before the worker is killed
MAX_OPEN_DATABASES = 4  # workers a DatabaseExecutors keeps by default (one per database file, ~10 MB each)
STARTUP_TIMEOUT_S = 60.0  # a fresh worker is ready in ~30 ms; this only bounds a machine that is badly stuck


def check_limits(timeout_s: float, max_rows: int, max_result_bytes: int = MAX_RESULT_BYTES) -> None:
    """Refuse limits that would switch a guard off (a zero or negative cap, an infinite time limit)."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not (
            math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"eval.timeout_s must be a positive, finite number of seconds, got {timeout_s!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows <= 0:
        raise ValueError(f"eval.max_rows must be a positive whole number of rows, got {max_rows!r}")
    if isinstance(max_result_bytes, bool) or not isinstance(max_result_bytes, int) or max_result_bytes <= 0:
        raise ValueError(f"max_result_bytes must be a positive whole number of bytes, got {max_result_bytes!r}")


@dataclass
class _Worker:
    process: subprocess.Popen
    requests: int  # our write end of its stdin-like pipe
    responses: int  # our read end of its answers
    ready: bool = False

    def kill(self) -> None:
        """Kill and reap the process, close our pipe ends; safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for fd in (self.requests, self.responses):
            if fd >= 0:
                os.close(fd)
        self.requests = self.responses = -1


class SafeExecutor:
    """Runs one SELECT at a time in a killable worker; read-only, authorised, time-, row- and memory-limited.

    Use as a context manager (or call close()), so the worker is stopped. `immutable=True` is for a user's database
    file that nothing writes while it is open (Spider's and BIRD's `database/<db>/<db>.sqlite`): it is opened
    with `immutable=1` as well as `mode=ro`, so SQLite neither locks it nor looks for a journal to roll back.
    """

    def __init__(self, db_path: Path, *, timeout_s: float = 1.0, max_rows: int = 10_000,
                 max_result_bytes: int = MAX_RESULT_BYTES, immutable: bool = False):
        check_limits(timeout_s, max_rows, max_result_bytes)
        db_path = Path(db_path).resolve()
        if not db_path.is_file():
            raise FileNotFoundError(f"{db_path}: no SQLite tables to run queries on")
        self.timeout_s = float(timeout_s)
        self.max_rows = max_rows
        self.max_result_bytes = max_result_bytes
        self.restarts = 0  # workers killed for running past the time limit (or that died)
        self.db_path = db_path
        self._uri = db_path.as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
        self._worker: _Worker | None = self._start()
        try:
            self._ready(self._worker)  # a database that cannot be opened fails here, not on the first query
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Worker:
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        args = [sys.executable, "-I", "-S", sqlite_sandbox.__file__, self._uri, str(request_read),
                str(response_write), str(os.getpid()), repr(self.timeout_s), str(self.max_rows),
                str(self.max_result_bytes)]
        try:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       pass_fds=(request_read, response_write))
        except BaseException:
            for fd in (request_read, request_write, response_read, response_write):
                os.close(fd)
            raise
        os.close(request_read)
        os.close(response_write)
        return _Worker(process, request_write, response_read)

    def _ready(self, worker: _Worker) -> None:
        if worker.ready:
            return
        message = self._answer(worker, STARTUP_TIMEOUT_S)
        if message is None or message[0] != "ready":
            detail = "did not start in time" if message is None else message[-1]
            raise RuntimeError(f"the SQL worker for {self._uri} failed to start: {detail}")
        worker.ready = True

    def _answer(self, worker: _Worker, timeout_s: float) -> tuple | None:
        """The worker's next message, None if none came within `timeout_s`; EOFError if it died."""
        poller = select.poll()
        poller.register(worker.responses, select.POLLIN)
        if not poller.poll(timeout_s * 1000):
            return None
        return sqlite_sandbox.read_message(worker.responses)

    def _replace_worker(self) -> None:
        """Kill the worker and start the next one now; it gets ready while the caller scores the result."""
        if self._worker is not None:
            self._worker.kill()
        self.restarts += 1
        self._worker = self._start()

    def execute(self, sql: str, table_name: str | None) -> list[Row]:
        """Rows of `sql`, which may read only `table_name` (None: any table or view of the file but SQLite's own
        sqlite_* tables); raise EvalError (with a category) on failure."""
        (answer,) = self.execute_many([(sql, table_name)])
        if isinstance(answer, EvalError):
            raise answer
        return answer

    def execute_many(self, queries: Sequence[tuple[str, str | None]]) -> list[list[Row] | EvalError]:
        """`execute` for each `(sql, table_name)` in turn, each with its own time limit, in one round trip to
        the worker; a failure is returned in the query's place, not raised."""
        answers: list[list[Row] | EvalError] = []
        while len(answers) < len(queries):  # a killed worker loses the queries after the one that hung
            answers += self._run(queries[len(answers):])
        return answers

    def _run(self, queries: Sequence[tuple[str, str | None]]) -> list[list[Row] | EvalError]:
        """Answers to the first one or more of `queries`: all of them unless one hung (or killed) the worker."""
        if self._worker is None:
            raise RuntimeError("SafeExecutor is closed")
        worker = self._worker
        answers: list[list[Row] | EvalError] = []
        try:
            self._ready(worker)
            sqlite_sandbox.write_message(worker.requests, [(sqlite_text(sql), table) for sql, table in queries])
            for _ in queries:  # the worker starts each query as soon as it has answered the one before
                answer = self._answer(worker, self.timeout_s + KILL_GRACE_S)
                if answer is None:
                    self._replace_worker()
                    return [*answers, EvalError(TIMEOUT, f"past the {self.timeout_s:g} s time limit in one "
                                                         "uninterruptible SQLite call; the query was killed")]
                kind, payload = answer
                answers.append(payload if kind == "rows" else _refusal(kind, payload, self.timeout_s))
        except (EOFError, OSError):
            code = worker.process.poll()
            self._replace_worker()
            answers.append(EvalError(OTHER, f"the SQL worker died running this query (exit status {code})"))
        return answers

    def close(self) -> None:
        """Stop the worker at once (it only reads, so there is nothing to flush)."""
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def __enter__(self) -> SafeExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_worker", None) is not None:
            self.close()


class DatabaseExecutors:
    """One SafeExecutor per database file, for datasets whose questions each run on their own database (Spider,
    BIRD): at most `max_open` workers at a time, the least recently used closed first; every worker has the same
    limits and the same kill-on-stuck behaviour as a lone SafeExecutor. Files are opened `immutable=1` (nothing may
    write them while the pool is open). Use as a context manager (or call close()), so every worker is stopped.

        with DatabaseExecutors(timeout_s=5.0) as pool:
            answers = pool.execute_many(db_path, [gold_sql, predicted_sql])  # any table of that file
    """

    def __init__(self, *, max_open: int = MAX_OPEN_DATABASES, timeout_s: float = 1.0, max_rows: int = 10_000,
                 max_result_bytes: int = MAX_RESULT_BYTES):
        check_limits(timeout_s, max_rows, max_result_bytes)
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open <= 0:
            raise ValueError(f"max_open must be a positive whole number of workers, got {max_open!r}")
        self.max_open = max_open
        self.timeout_s = float(timeout_s)
        self.max_rows = max_rows
        self.max_result_bytes = max_result_bytes
        self.started = 0  # workers started for a database (not counting restarts after a kill)
        self._closed_restarts = 0
        self._executors: OrderedDict[Path, SafeExecutor] = OrderedDict()
        self._closed = False

    @property
    def restarts(self) -> int:
        """Workers killed for running past the time limit (or that died), over all databases so far."""
        return self._closed_restarts + sum(e.restarts for e in self._executors.values())

    @property
    def open_paths(self) -> list[Path]:
        """The database files with a worker now, least recently used first."""
        return list(self._executors)

    def executor(self, db_path: Path) -> SafeExecutor:
        """The worker for `db_path` (resolved), started if need be, after closing the least recently used one when
        `max_open` are open; FileNotFoundError or RuntimeError when the file cannot be opened."""
        if self._closed:
            raise RuntimeError("DatabaseExecutors is closed")
        key = Path(db_path).resolve()
        executor = self._executors.get(key)
        if executor is not None:
            self._executors.move_to_end(key)
            return executor
        while len(self._executors) >= self.max_open:
            _, oldest = self._executors.popitem(last=False)
            self._retire(oldest)
        executor = SafeExecutor(key, timeout_s=self.timeout_s, max_rows=self.max_rows,
                                max_result_bytes=self.max_result_bytes, immutable=True)
        self.started += 1
        self._executors[key] = executor
        return executor

    def execute_many(self, db_path: Path, queries: Sequence[str]) -> list[list[Row] | EvalError]:
        """Each of `queries` on `db_path`, reading any table of it (SafeExecutor.execute_many, table_name None)."""
        return self.executor(db_path).execute_many([(sql, None) for sql in queries])

    def _retire(self, executor: SafeExecutor) -> None:
        self._closed_restarts += executor.restarts
        executor.close()

    def close(self) -> None:
        """Stop every worker at once."""
        self._closed = True
        while self._executors:
            _, executor = self._executors.popitem(last=False)
            self._retire(executor)

    def __enter__(self) -> DatabaseExecutors:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_executors", None):
            self.close()


def _refusal(kind: str, message: str, timeout_s: float) -> EvalError:
    if kind == "timeout":
        return EvalError(TIMEOUT, message)
    if kind == "too_many_rows":
        return EvalError(TOO_MANY_ROWS, message)
    if kind == "memory_limit":
        return EvalError(MEMORY_LIMIT, message)
    if kind != "sqlite_error":
        return EvalError(OTHER, message)
    category = classify_sqlite_error(message)
    if category == TIMEOUT and "pattern" in message.lower():
        message = (f"{message}: LIKE/GLOB patterns are limited to {MAX_LIKE_PATTERN_LENGTH} characters, as "
                   f"matching a longer one could run past the {timeout_s:g} s time limit")
    elif category == TIMEOUT:
        message = f"interrupted: past the {timeout_s:g} s time limit"
    elif category == MEMORY_LIMIT:
        message = f"{message}: past the query memory limit"
    return EvalError(category, message)

