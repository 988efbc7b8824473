"""The guarded SQLite connection untrusted SQL runs on, and the worker process that holds it.

Standard library only and runnable as a script, so the evaluator starts it in a bare interpreter
(`python -I -S sqlite_sandbox.py ...`, ~30 ms) whatever the parent has loaded (torch, threads), and can kill it
when a query will not stop: some SQLite functions (LIKE/GLOB, trim with a long character set) run for seconds
inside one call that no progress handler can interrupt. executor.py is the parent side.

Guards, on one connection opened once per worker:
- the file is opened read-only (`mode=ro`; a user's database file also `immutable=1`, executor.py), so no write
  can succeed even if every other guard failed;
- an authorizer allows only SELECT, recursive CTEs, reading the one table the example is about (or, for a question
  on a whole database, any table or view of the file: `table_name=None`, below) and the CTEs the query defines,
  and a list of pure functions (no load_extension, readfile, writefile, fts3_tokenizer,
  printf, zeroblob, ...); everything else, ATTACH/DETACH and PRAGMA included, is refused while the statement is
  being prepared. Reading any other table of the file, or its schema, is refused even for `count(*)`, which
  SQLite reports with no column, just as it reports a CTE's: a name that is a table is never taken for a CTE.
  With `table_name=None` the readable tables are those the file's schema lists as a table or view, less SQLite's
  own (every name starting with `sqlite_`: the schema tables, sqlite_sequence, sqlite_stat1, ...); eponymous
  virtual tables (pragma_table_info, json_each, ...) are not in the schema, so they stay refused;
- SQLite's own limits: strings and blobs (so `replace()` chains fail fast), SQL length, LIKE/GLOB pattern
  length (a long pattern takes O(pattern x text) time in one call), no attached databases;
- a progress handler interrupts a statement past its time limit (endless recursive CTEs, huge cross joins),
  and one that finishes past it (a long call, then too few steps for the handler) counts as past it too;
- memory: SQLite's heap is capped and temporary tables live in it (nothing written to disk), the process's
  address space is capped, and a result may hold at most `max_rows` rows and `max_result_bytes` bytes,
  counted while fetching;
- Python's sqlite3 refuses to run more than one statement per call.

Protocol: the parent writes a list of `(sql, table_name)` queries, `table_name` None for "any table of the file"
(the multi-table datasets, Spider and BIRD); the worker answers each in turn with
`("rows", rows)` or `(kind, message)`, kind one of REFUSALS. Each message is a marshalled object behind its
8-byte length. The worker ignores SIGINT (the parent decides) and exits when the parent closes the pipe or
dies (a thread watches for that, as SQLite releases the GIL while it works).
"""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import struct
import sys
import threading
import time

SAFE_FUNCTIONS = frozenset({
    "abs", "avg", "count", "max", "min", "sum", "total", "group_concat", "string_agg",
    "lower", "upper", "length", "octet_length", "substr", "substring", "trim", "ltrim", "rtrim", "replace",
    "instr", "like", "glob", "char", "unicode", "hex", "quote", "concat", "concat_ws",
    "round", "coalesce", "ifnull", "nullif", "iif", "if", "typeof", "likely", "unlikely", "likelihood",
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    "sign", "ceil", "ceiling", "floor", "trunc", "ln", "log", "log10", "log2", "exp", "pow", "power",
    "sqrt", "mod", "pi", "random", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "degrees", "radians",
})
MAX_VALUE_LENGTH = 100_000  # bytes in one string, blob or row; WikiSQL cells are short
MAX_SQL_LENGTH = 100_000
MAX_LIKE_PATTERN_LENGTH = 500  # ~0.1 s against a MAX_VALUE_LENGTH text; WikiSQL values are far shorter
HEAP_LIMIT_BYTES = 64 << 20  # SQLite's own memory: page cache, sorters, temporary tables
ADDRESS_SPACE_BYTES = 1 << 30  # the whole worker; a last resort behind the caps above
VALUE_OVERHEAD_BYTES = 8  # what one value costs in a result beyond its text: NULLs and numbers are not free
REFUSALS = ("sqlite_error", "timeout", "too_many_rows", "memory_limit", "error")
SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})

_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_CHECK_EVERY = 1000  # SQLite VM instructions between deadline checks (~tens of microseconds)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_HEADER = struct.Struct("!Q")

Row = tuple[object, ...]


def fold_identifier(name: str) -> str:
    """SQLite matches identifiers case-insensitively for ASCII letters only; mirror that exactly."""
    return name.translate(_ASCII_LOWER)


class Sandbox:
    """A read-only, authorised, time-, row- and memory-limited SQLite connection (in the worker process)."""

    def __init__(self, uri: str, *, timeout_s: float, max_rows: int, max_result_bytes: int):
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_result_bytes = max_result_bytes
        self._table = ""
        self._any_table = False  # this query may read any table of `self._readable`
        self._deadline = float("inf")
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN_LENGTH)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self._conn.execute("PRAGMA temp_store = MEMORY")  # sorters and temp tables: in the (capped) heap
        schema = self._conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        self._tables = SCHEMA_TABLES | {fold_identifier(name) for _, name in schema}
        self._readable = frozenset(fold_identifier(name) for kind, name in schema if kind in ("table", "view")
                                   and not fold_identifier(name).startswith("sqlite_"))
        self._conn.set_authorizer(self._authorize)
        self._conn.set_progress_handler(self._past_deadline, _CHECK_EVERY)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                   trigger: str | None) -> int:
        if action in (sqlite3.SQLITE_SELECT, _SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            table = fold_identifier(arg1) if arg1 is not None else None
            # Column "" is SQLite's marker for "table used, no value read" (count(*) over a table or a CTE); for a
            # CTE it names the CTE, with no schema. Only a name that is no table of the file is taken for one.
            ok = (table == self._table or (self._any_table and table in self._readable)
                  or (arg2 == "" and db is None and table is not None and table not in self._tables))
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            ok = arg2 is not None and arg2.lower() in SAFE_FUNCTIONS
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY

    def _past_deadline(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def run(self, sql: str, table_name: str | None) -> tuple[str, object]:
        """`("rows", rows)` of `sql`, which may read only `table_name` (None: any table or view of the file but
        SQLite's own), or `(kind, message)`; never raises."""
        if table_name is None:
            self._any_table = True
        else:
            self._table = fold_identifier(table_name)
        self._deadline = time.perf_counter() + self.timeout_s
        cursor = None
        try:
            cursor = self._conn.execute(sql)
            answer = self._fetch(cursor)
            if time.perf_counter() > self._deadline:  # one long call, then too few steps left to be interrupted
                return "timeout", f"finished after the {self.timeout_s:g} s time limit"
            return answer
        except sqlite3.Error as error:
            return "sqlite_error", str(error) or type(error).__name__
        except MemoryError:  # SQLite's heap cap (it reports SQLITE_NOMEM) or the worker's address space
            return "memory_limit", f"out of memory: the query needed more than the {HEAP_LIMIT_BYTES >> 20} MiB " \
                                   "SQLite may use"
        except Exception as error:  # e.g. ValueError for a NUL character, OverflowError
            return "error", f"{type(error).__name__}: {error}"
        finally:
            self._deadline = float("inf")
            self._table = ""
            self._any_table = False
            if cursor is not None:
                cursor.close()

    def _fetch(self, cursor: sqlite3.Cursor) -> tuple[str, object]:
        """All rows, counted while fetching so a huge result is refused before it is held."""
        rows: list[Row] = []
        size = 0
        for row in cursor:
            rows.append(row)
            if len(rows) > self.max_rows:
                return "too_many_rows", f"more than {self.max_rows} rows"
            size += sum(VALUE_OVERHEAD_BYTES + len(v) if isinstance(v, str | bytes) else VALUE_OVERHEAD_BYTES
                        for v in row)
            if size > self.max_result_bytes:
                return "memory_limit", (f"the result passed {self.max_result_bytes:,} bytes after {len(rows)} "
                                        f"row{'s' if len(rows) > 1 else ''}")
        return "rows", rows

    def close(self) -> None:
        self._conn.close()


def write_message(fd: int, obj: object) -> None:
    data = marshal.dumps(obj)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_message(fd: int) -> object:
    """The next message; EOFError when the other side has closed its end (or died)."""
    (length,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return marshal.loads(_read_exactly(fd, length))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the other end of the pipe is closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _exit_with_parent(parent_pid: int) -> None:
    """Runs in a thread: SQLite releases the GIL while it works, so this notices even a stuck query."""
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(0)


def _cap_memory() -> None:
    """Process-wide caps, so set in the worker only: SQLite's heap, then the whole address space."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT_BYTES}")
    finally:
        conn.close()
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = ADDRESS_SPACE_BYTES if hard == resource.RLIM_INFINITY else min(ADDRESS_SPACE_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # not on this platform: the other caps still hold
        pass


def main(argv: list[str]) -> int:
    """`URI REQUEST_FD RESPONSE_FD PARENT_PID TIMEOUT_S MAX_ROWS MAX_RESULT_BYTES`: serve until the pipe closes."""
    uri, request_fd, response_fd, parent_pid = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    timeout_s, max_rows, max_result_bytes = float(argv[4]), int(argv[5]), int(argv[6])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _cap_memory()
    try:
        sandbox = Sandbox(uri, timeout_s=timeout_s, max_rows=max_rows, max_result_bytes=max_result_bytes)
    except Exception as error:
        write_message(response_fd, ("failed", f"{type(error).__name__}: {error}"))
        return 1
    write_message(response_fd, ("ready", sqlite3.sqlite_version))
    while True:
        try:
            batch = read_message(request_fd)
        except EOFError:
            return 0
        for sql, table_name in batch:  # each answer as soon as it is known, so a hang costs only its query
            write_message(response_fd, sandbox.run(sql, table_name))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
