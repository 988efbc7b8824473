"""Hostile predictions: nothing a prediction does changes a table, escapes the file or stops the run."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import long_text_sql, players_table

from experiments.data.records import Example, Query, Table
from experiments.evaluation import EvalError, SafeExecutor, materialize_tables, score, sqlite_table_name
from experiments.sql.safe_sql import prepare_query
from experiments.sql.sql_parse import parse_sql
from experiments.sql.sqlite_sandbox import Sandbox

TABLE = players_table(("Player", "No.", "School/Club Team", "Height (ft)"))
OTHER = Table(id="1-999-1", header=("Secret",), types=("text",), rows=(("hidden",),))
EXAMPLE = Example("test-0", TABLE.id, "What number did Antonio Lang wear?",
                  Query(1, 0, ((0, 0, "Antonio Lang"),)))
NAME = sqlite_table_name(TABLE.id)
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c)"


def snapshot(db: Path) -> tuple[list, list, list]:
    conn = sqlite3.connect(db)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = conn.execute(f'SELECT * FROM "{NAME}" ORDER BY rowid').fetchall()
        other = conn.execute(f'SELECT * FROM "{sqlite_table_name(OTHER.id)}"').fetchall()
    finally:
        conn.close()
    return schema, rows, other


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "tables.sqlite"
    materialize_tables([TABLE, OTHER], path)
    return path


HOSTILE = [
    ("DROP TABLE t", {"forbidden_statement"}),
    (f'DROP TABLE "{NAME}"', {"forbidden_statement"}),
    ("DELETE FROM t", {"forbidden_statement"}),
    ("INSERT INTO t VALUES ('x', 1, 'y', 2)", {"forbidden_statement"}),
    ("REPLACE INTO t VALUES ('x', 1, 'y', 2)", {"forbidden_statement"}),
    ("UPDATE t SET \"No.\" = 0", {"forbidden_statement"}),
    ("CREATE TABLE evil (x)", {"forbidden_statement"}),
    ("ALTER TABLE t RENAME TO u", {"forbidden_statement"}),
    ("ATTACH DATABASE '{tmp}/evil.db' AS evil", {"forbidden_statement"}),
    ("DETACH DATABASE main", {"forbidden_statement"}),
    ("PRAGMA writable_schema=1", {"forbidden_statement"}),
    ("PRAGMA query_only=0", {"forbidden_statement"}),
    ("VACUUM INTO '{tmp}/copy.db'", {"forbidden_statement"}),
    ("SELECT 1; DROP TABLE t", {"forbidden_statement"}),
    ("SELECT \"No.\" FROM t WHERE Player = 'Antonio Lang'; DELETE FROM t", {"forbidden_statement"}),
    ("SELECT load_extension('{tmp}/evil.so')", {"forbidden_statement"}),
    ("SELECT writefile('{tmp}/out.txt', 'x')", {"forbidden_statement", "other"}),
    ("SELECT readfile('/etc/passwd')", {"forbidden_statement", "other"}),
    ("SELECT fts3_tokenizer('simple')", {"forbidden_statement", "other"}),
    ("SELECT * FROM pragma_table_info('t')", {"forbidden_statement"}),
    ("SELECT printf('%.*c', 1000000000, 'x')", {"forbidden_statement"}),
    ("SELECT zeroblob(1000000000)", {"forbidden_statement"}),
    ("SELECT \"No.\" FROM t WHERE Player = (SELECT Secret FROM secrets)", {"other"}),  # two tables
    (ENDLESS + " SELECT count(*) FROM c", {"timeout"}),
    (ENDLESS + " SELECT x FROM c", {"timeout", "too_many_rows"}),
    ("SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j, t k", {"timeout"}),
    ("SELECT * FROM t a, t b, t c, t d, t e, t f", {"timeout", "too_many_rows"}),
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, {"syntax_error", "other"}),
    ("SELECT '" + "x" * 30000 + "'", {"other"}),
    ("SELECT 'a\x00b'", {"other", "syntax_error"}),
]


@pytest.mark.parametrize(("sql", "categories"), HOSTILE)
def test_hostile_sql_is_recorded_and_changes_nothing(db: Path, tmp_path: Path, sql: str,
                                                     categories: set[str]) -> None:
    sql = sql.replace("{tmp}", str(tmp_path))
    before = snapshot(db)
    start = time.perf_counter()
    scored = score([EXAMPLE], {TABLE.id: TABLE}, {EXAMPLE.id: sql}, db, timeout_s=0.3, progress=False)
    elapsed = time.perf_counter() - start
    metrics, (result,) = scored.metrics, scored.rows()
    assert result["category"] in categories, result
    assert result["error"]
    assert result["valid_sql"] is False
    assert metrics["execution_accuracy"] == 0.0
    assert metrics["valid_sql_rate"] == 0.0
    assert snapshot(db) == before
    assert not any(p.name in ("evil.db", "copy.db", "out.txt") for p in tmp_path.iterdir())
    assert elapsed < 3.0


def test_endless_recursive_cte_stops_within_the_time_limit(db: Path, tmp_path: Path) -> None:
    sql = ENDLESS + " SELECT count(*) FROM c"
    start = time.perf_counter()
    metrics = score([EXAMPLE], {TABLE.id: TABLE}, {EXAMPLE.id: sql}, db, progress=False).metrics
    assert time.perf_counter() - start < 1.5
    assert metrics["categories"]["timeout"] == 1


def test_hostile_predictions_in_one_run_do_not_stop_it(db: Path, tmp_path: Path) -> None:
    examples = [Example(f"test-{i}", TABLE.id, "q", EXAMPLE.query) for i in range(len(HOSTILE) + 1)]
    predictions = {f"test-{i}": sql.replace("{tmp}", str(tmp_path)) for i, (sql, _) in enumerate(HOSTILE)}
    predictions[f"test-{len(HOSTILE)}"] = "SELECT \"No.\" FROM t WHERE \"Player\" = 'Antonio Lang'"
    before = snapshot(db)
    metrics = score(examples, {TABLE.id: TABLE}, predictions, db, timeout_s=0.2, progress=False).metrics
    assert metrics["n"] == len(examples)
    assert metrics["categories"]["correct"] == 1  # the one honest query after all the hostile ones
    assert snapshot(db) == before


RAW = [  # what SQLite's own guards refuse if the static checks were bypassed
    f'DELETE FROM "{NAME}"',
    f'DROP TABLE "{NAME}"',
    f'INSERT INTO "{NAME}" VALUES (1, 2, 3, 4)',
    f'UPDATE "{NAME}" SET "No." = 0',
    "CREATE TEMP TABLE x (a)",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA writable_schema=1",
    f'SELECT * FROM "{sqlite_table_name(OTHER.id)}"',  # a table other than the example's
    "SELECT * FROM sqlite_master",
    "SELECT load_extension('x')",
    # issue 24: counting rows reads no column, and SQLite reports it as it reports counting a CTE's rows
    "SELECT count(*) FROM sqlite_master",
    f'SELECT count(*) FROM "{sqlite_table_name(OTHER.id)}"',
    f'SELECT count(*) FROM main."{sqlite_table_name(OTHER.id)}"',
    "SELECT count(*) FROM _materialized_tables",
    "SELECT 1 FROM sqlite_master WHERE 0",
    "SELECT count(*) FROM sqlite_master WHERE 1=(WITH sqlite_master AS (SELECT 1) SELECT 1 FROM sqlite_master)",
    f'WITH "{sqlite_table_name(OTHER.id)}" AS (SELECT 1) SELECT count(*) FROM "{sqlite_table_name(OTHER.id)}"',
]


@pytest.mark.parametrize("sql", RAW)
def test_executor_refuses_everything_but_reading_the_table(db: Path, sql: str) -> None:
    before = snapshot(db)
    with SafeExecutor(db) as executor, pytest.raises(EvalError) as raised:
        executor.execute(sql, NAME)
    assert raised.value.category == "forbidden_statement", str(raised.value)
    assert snapshot(db) == before


def test_counting_the_rows_of_the_table_or_of_a_cte_is_allowed(db: Path) -> None:
    with SafeExecutor(db) as executor:
        assert executor.execute(f'SELECT count(*) FROM "{NAME}"', NAME) == [(6,)]
        assert executor.execute("WITH c AS (SELECT 1 UNION ALL SELECT 2) SELECT count(*) FROM c", NAME) == [(2,)]
        assert executor.execute(f'WITH c AS (SELECT * FROM "{NAME}") SELECT count(*) FROM c', NAME) == [(6,)]


CTE_ESCAPES = [  # a CTE named like a table, in a subquery, so that the outer name looks like the CTE's
    "SELECT count(*) FROM sqlite_master WHERE 1=(WITH sqlite_master AS (SELECT 1) SELECT 1 FROM sqlite_master)",
    "SELECT count(*) FROM _materialized_tables WHERE 1 IN (WITH _materialized_tables AS (SELECT 1) "
    "SELECT * FROM _materialized_tables)",
    f'SELECT count(*) FROM "{sqlite_table_name(OTHER.id)}" WHERE EXISTS (WITH "{sqlite_table_name(OTHER.id)}" '
    f'AS (SELECT 1) SELECT 1 FROM "{sqlite_table_name(OTHER.id)}")',
]


@pytest.mark.parametrize("sql", CTE_ESCAPES)
def test_a_same_name_cte_does_not_escape_the_table_rebinding(db: Path, tmp_path: Path, sql: str) -> None:
    """The outer name is the table the question is about (so the count is its 6 rows, or the query is refused):
    never the count of another table."""
    (tree,) = parse_sql(sql)
    bound = prepare_query(sql, tree, NAME, {"player"})
    assert bound.startswith(f'SELECT count(*) FROM "{NAME}" AS ')  # rebound, whatever the inner CTE is called
    how_many = Example("test-0", TABLE.id, "How many players are there?", Query(0, 3, ()))  # 6
    (result,) = score([how_many], {TABLE.id: TABLE}, {how_many.id: sql}, db, progress=False).rows()
    assert result["exec_match"] or result["category"] == "forbidden_statement", result


def test_connection_is_read_only_even_without_the_authorizer(db: Path) -> None:
    before = snapshot(db)
    sandbox = Sandbox(db.resolve().as_uri() + "?mode=ro", timeout_s=1.0, max_rows=10, max_result_bytes=10_000)
    try:
        sandbox._conn.set_authorizer(None)
        kind, message = sandbox.run(f'DELETE FROM "{NAME}"', NAME)
    finally:
        sandbox.close()
    assert kind == "sqlite_error" and "readonly" in str(message)
    assert snapshot(db) == before


def test_executor_caps_rows(db: Path) -> None:
    with SafeExecutor(db, max_rows=5) as executor:
        assert len(executor.execute(f'SELECT * FROM "{NAME}" LIMIT 5', NAME)) == 5
        with pytest.raises(EvalError) as raised:
            executor.execute(f'SELECT * FROM "{NAME}"', NAME)
    assert raised.value.category == "too_many_rows"


TEXT_90K = long_text_sql("a", 4, 9)
GLOB_40K = f"SELECT count(*) FROM t WHERE {TEXT_90K} GLOB '*' || {long_text_sql('a', 4, 4)} || 'b'"  # 6 s in one call
STUCK = "SELECT " + " + ".join([f"length(ltrim({TEXT_90K}, {long_text_sql('b', 3, 5)} || 'a'))"] * 10)  # ~1 s per call


def test_the_issues_glob_pattern_is_a_timeout_within_two_seconds(db: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    metrics = score([EXAMPLE], {TABLE.id: TABLE}, {EXAMPLE.id: GLOB_40K}, db, progress=False).metrics
    assert time.perf_counter() - start < 2.0
    assert metrics["categories"]["timeout"] == 1


def test_a_query_sqlite_cannot_interrupt_is_killed_and_the_next_one_runs(db: Path) -> None:
    with SafeExecutor(db, timeout_s=0.5) as executor:
        start = time.perf_counter()
        answers = executor.execute_many([(STUCK, NAME), (f'SELECT "No." FROM "{NAME}" WHERE rowid = 1', NAME)])
        assert time.perf_counter() - start < 3.0  # killed 0.5 s past the limit (1 s), then a fresh worker answers
        assert executor.restarts == 1
    assert isinstance(answers[0], EvalError) and answers[0].category == "timeout"
    assert answers[1] == [(21.0,)]


def test_result_bytes_are_capped_not_only_rows(db: Path) -> None:
    with SafeExecutor(db, max_result_bytes=500_000) as executor:
        with pytest.raises(EvalError) as raised:
            executor.execute(f'SELECT {TEXT_90K} FROM "{NAME}"', NAME)  # 6 rows of 90 KB: under max_rows
        assert len(executor.execute(f"SELECT {long_text_sql('a', 4)} FROM \"{NAME}\"", NAME)) == 6  # 6 x 10 KB
    assert raised.value.category == "memory_limit"
    assert "500,000 bytes" in str(raised.value)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"timeout_s": 0}, "eval.timeout_s"), ({"timeout_s": -1}, "eval.timeout_s"),
    ({"timeout_s": float("inf")}, "eval.timeout_s"), ({"max_rows": 0}, "eval.max_rows"),
    ({"max_rows": -5}, "eval.max_rows"),
])
def test_limits_that_would_switch_a_guard_off_are_refused(db: Path, tmp_path: Path, kwargs: dict, key: str) -> None:
    listing = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=key):
        SafeExecutor(db, **kwargs)
    with pytest.raises(ValueError, match=key):
        score([EXAMPLE], {TABLE.id: TABLE}, {EXAMPLE.id: "SELECT 1"}, db, progress=False, **kwargs)
    assert sorted(tmp_path.rglob("*")) == listing  # refused before any work


STUCK_IN_A_QUERY = """
import signal, sys
from pathlib import Path
from experiments.evaluation import SafeExecutor
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started where SIGINT is ignored
with SafeExecutor(Path(sys.argv[1]), timeout_s=600) as executor:
    print("running", flush=True)
    executor.execute(sys.argv[2], sys.argv[3])
"""


def children(pid: int) -> set[int]:
    return {int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"  # zombies are gone too
    except (FileNotFoundError, IndexError):
        return False


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc to find the worker")
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_a_stuck_query_neither_holds_ctrl_c_nor_outlives_its_parent(db: Path, signal_name: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", STUCK_IN_A_QUERY, str(db), STUCK, NAME],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "running\n"
        assert wait_until(lambda: children(parent.pid), 10)
        (worker,) = children(parent.pid)
        time.sleep(0.3)  # inside the uninterruptible call
        parent.send_signal(getattr(signal, signal_name))
        parent.wait(timeout=5)  # SIGINT: KeyboardInterrupt at once, not after the query
        assert wait_until(lambda: not alive(worker), 5)  # SIGKILL: the worker notices its parent is gone
    finally:
        parent.kill()
        parent.wait()
    if signal_name == "SIGINT":
        assert "KeyboardInterrupt" in parent.stderr.read()
