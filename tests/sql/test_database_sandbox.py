"""The sandbox on a user's database file of many tables (Spider, BIRD): any of its tables may be read, nothing else
changes; and the pool of one worker per database file."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from conftest import concerts_database, long_text_sql

from experiments.sql.errors import EvalError
from experiments.sql.executor import DatabaseExecutors, SafeExecutor

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c)"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return concerts_database(tmp_path / "database" / "concerts" / "concerts.sqlite")


@pytest.fixture
def executor(database: Path):
    with SafeExecutor(database, timeout_s=0.5, max_rows=50, immutable=True) as executor:
        yield executor


def test_any_table_of_the_file_may_be_read(executor: SafeExecutor) -> None:
    joined = executor.execute("SELECT s.name, c.title FROM singer AS s JOIN concert AS c ON s.singer_id = c.singer_id "
                              "ORDER BY c.concert_id", None)
    assert joined == [("Joe", "Spring"), ("Joe", "Summer"), ("Ann", "Autumn")]
    assert executor.execute("SELECT count(*) FROM singer", None) == [(3,)]
    assert executor.execute("SELECT count(*) FROM concert WHERE year = 2015", None) == [(2,)]
    assert executor.execute("SELECT name FROM old_singer ORDER BY name", None) == [("Joe",), ("Tim",)]
    assert executor.execute('SELECT name FROM singer WHERE country = "France" ORDER BY name', None) == \
        [("Joe",), ("Tim",)]  # Spider's gold SQL quotes strings with double quotes
    assert executor.execute("WITH c AS (SELECT * FROM singer) SELECT count(*) FROM c", None) == [(3,)]
    assert executor.execute("WITH singer AS (SELECT 1) SELECT count(*) FROM singer", None) == [(1,)]
    assert executor.execute("SELECT title FROM concert WHERE singer_id IN (SELECT singer_id FROM singer "
                            "WHERE name = 'Ann')", None) == [("Autumn",)]


def test_one_table_mode_is_unchanged_on_the_same_file(executor: SafeExecutor) -> None:
    assert executor.execute("SELECT count(*) FROM singer", "singer") == [(3,)]
    with pytest.raises(EvalError) as error:
        executor.execute("SELECT count(*) FROM concert", "singer")
    assert error.value.category == "forbidden_statement"


def test_a_table_the_file_has_not_is_unknown_table(executor: SafeExecutor) -> None:
    """SQLite's "no such table" is its own category, as "no such column" is unknown_column."""
    for sql in ("SELECT count(*) FROM singers", "SELECT name FROM singer WHERE singer_id IN (SELECT x FROM nowhere)"):
        with pytest.raises(EvalError) as error:
            executor.execute(sql, None)
        assert error.value.category == "unknown_table" and "no such table" in str(error.value)


REFUSED = [
    "INSERT INTO singer (name) VALUES ('x')",
    "UPDATE singer SET age = 0",
    "DELETE FROM concert",
    "DROP TABLE concert",
    "CREATE TABLE evil (x)",
    "ALTER TABLE singer RENAME TO s",
    "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "DETACH DATABASE main",
    "PRAGMA writable_schema = 1",
    "PRAGMA foreign_keys",
    "VACUUM INTO '{tmp}/copy.db'",
    "REINDEX",
    "ANALYZE",
    "SELECT * FROM sqlite_master",
    "SELECT count(*) FROM sqlite_master",
    "SELECT count(*) FROM sqlite_schema",
    "SELECT count(*) FROM main.sqlite_master",
    "SELECT count(*) FROM sqlite_temp_master",
    "SELECT * FROM sqlite_sequence",
    "SELECT count(*) FROM sqlite_sequence",
    "SELECT * FROM sqlite_stat1",
    "SELECT count(*) FROM sqlite_stat1",
    "WITH sqlite_master AS (SELECT 1) SELECT count(*) FROM sqlite_master",
    "SELECT count(*) FROM sqlite_master WHERE 1 = (WITH sqlite_master AS (SELECT 1) SELECT 1 FROM sqlite_master)",
    "SELECT name FROM sqlite_master WHERE 1 IN (WITH sqlite_master AS (SELECT 1) SELECT * FROM sqlite_master)",
    "WITH sqlite_sequence AS (SELECT 1) SELECT count(*) FROM sqlite_sequence",
    "SELECT name FROM singer WHERE 1 = (SELECT count(*) FROM sqlite_master)",
    "SELECT * FROM pragma_table_info('singer')",
    "SELECT count(*) FROM pragma_table_info('singer')",
    "SELECT * FROM json_each('[1, 2]')",
    "SELECT load_extension('x')",
    "SELECT readfile('/etc/passwd')",
    "SELECT zeroblob(1000000000)",
    "SELECT 1; DROP TABLE singer",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_schema_and_internals_are_refused(executor: SafeExecutor, database: Path, tmp_path: Path,
                                                 sql: str) -> None:
    before = digest(database)
    with pytest.raises(EvalError) as error:
        executor.execute(sql.format(tmp=tmp_path), None)
    assert error.value.category in {"forbidden_statement", "other"}, error.value
    assert digest(database) == before
    assert not (tmp_path / "evil.db").exists() and not (tmp_path / "copy.db").exists()
    assert executor.execute("SELECT count(*) FROM singer", None) == [(3,)]  # the worker still serves


@pytest.mark.parametrize("sql", [
    "WITH sqlite_master AS (SELECT 'x') SELECT * FROM sqlite_master",
    "WITH sqlite_master(name) AS (SELECT 'x') SELECT name FROM sqlite_master",
    "WITH RECURSIVE sqlite_master(name) AS (SELECT 'x') SELECT name FROM sqlite_master",
])
def test_a_cte_named_like_the_schema_reads_only_itself(executor: SafeExecutor, sql: str) -> None:
    """A CTE shadows the name inside its query: what comes back is the CTE's own row (or a refusal), never the
    schema's."""
    try:
        assert executor.execute(sql, None) == [("x",)]
    except EvalError as error:
        assert error.category == "forbidden_statement"


@pytest.mark.parametrize(("sql", "categories"), [
    (ENDLESS + " SELECT count(*) FROM c", {"timeout"}),
    (ENDLESS + " SELECT x FROM c", {"timeout", "too_many_rows"}),
    ("SELECT count(*) FROM singer a, singer b, singer c, concert d, concert e, concert f, singer g, singer h, "
     "concert i, singer j, concert k, singer l, concert m, singer n, concert o, singer p", {"timeout"}),
    ("SELECT * FROM singer a, singer b, concert c, concert d, singer e", {"too_many_rows"}),
])
def test_runaway_queries_are_bounded(executor: SafeExecutor, database: Path, sql: str, categories: set[str]) -> None:
    before = digest(database)
    with pytest.raises(EvalError) as error:
        executor.execute(sql, None)
    assert error.value.category in categories, error.value
    assert digest(database) == before
    assert executor.execute("SELECT count(*) FROM concert", None) == [(3,)]


def test_the_file_is_opened_immutable_and_read_only(database: Path) -> None:
    before = digest(database)
    with SafeExecutor(database, timeout_s=0.5, immutable=True) as executor:
        assert "mode=ro" in executor._uri and "immutable=1" in executor._uri
        executor.execute("SELECT * FROM singer JOIN concert USING (singer_id)", None)
    with SafeExecutor(database, timeout_s=0.5) as executor:
        assert executor._uri.endswith("?mode=ro")  # WikiSQL's path, unchanged
    assert digest(database) == before
    assert not Path(str(database) + "-journal").exists() and not Path(str(database) + "-wal").exists()


def alive(pool: DatabaseExecutors) -> list[int]:
    return [e._worker.process.pid for e in pool._executors.values()
            if e._worker is not None and e._worker.process.poll() is None]


def sandbox_children() -> set[int]:
    """This process's living SQL workers, as the OS sees them (zombies excluded)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # the thread ended while we listed them
            continue
        for pid in children:
            try:
                running = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (FileNotFoundError, IndexError):
                continue
            if running and b"sqlite_sandbox.py" in command:
                found.add(int(pid))
    return found


def test_pool_keeps_at_most_max_open_workers(tmp_path: Path) -> None:
    paths = [concerts_database(tmp_path / f"db{i}" / f"db{i}.sqlite") for i in range(5)]
    before = sandbox_children() if Path("/proc/self/task").is_dir() else set()
    with DatabaseExecutors(max_open=2, timeout_s=0.5) as pool:
        seen = []
        for path in [*paths, paths[3], paths[0]]:
            assert pool.execute_many(path, ["SELECT count(*) FROM singer"]) == [[(3,)]]
            assert len(pool.open_paths) <= 2 and len(alive(pool)) <= 2
            if Path("/proc/self/task").is_dir():
                assert sandbox_children() <= before | set(alive(pool))
            seen.append(pool.executor(path)._worker.process)
        assert pool.open_paths == [paths[3], paths[0]]  # least recently used first
        assert pool.started == 6  # db0..db4, then db0 again (it had been closed); db3 was still open
        closed = [p for p in seen if p.pid not in alive(pool)]
        assert closed and all(p.poll() is not None for p in closed)  # closed workers are dead and reaped
        workers = alive(pool)
    assert pool.open_paths == [] and len(workers) == 2
    if Path("/proc/self/task").is_dir():
        assert sandbox_children() <= before and not set(workers) & sandbox_children()
    with pytest.raises(RuntimeError):
        pool.execute_many(paths[0], ["SELECT 1"])


TEXT_90K = long_text_sql("a", 4, 9)
STUCK = "SELECT " + " + ".join([f"length(ltrim({TEXT_90K}, {long_text_sql('b', 3, 5)} || 'a'))"] * 10)  # ~1 s per call


def test_pool_kills_a_stuck_worker_and_goes_on(database: Path, tmp_path: Path) -> None:
    other = concerts_database(tmp_path / "other" / "other.sqlite")
    with DatabaseExecutors(timeout_s=0.5) as pool:
        answers = pool.execute_many(database, [ENDLESS + " SELECT count(*) FROM c", "SELECT count(*) FROM concert"])
        assert isinstance(answers[0], EvalError) and answers[0].category == "timeout"
        assert answers[1] == [(3,)] and pool.restarts == 0  # the progress handler stopped it
        start = time.perf_counter()
        answers = pool.execute_many(database, [STUCK, "SELECT max(age) FROM singer"])
        assert time.perf_counter() - start < 3.0  # killed 0.5 s past the limit, then a fresh worker answers
        assert isinstance(answers[0], EvalError) and answers[0].category == "timeout"
        assert answers[1] == [(52,)] and pool.restarts == 1
        assert pool.execute_many(other, ["SELECT count(*) FROM singer"]) == [[(3,)]]
        assert pool.restarts == 1


def test_pool_refuses_bad_limits_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DatabaseExecutors(max_open=0)
    with pytest.raises(ValueError):
        DatabaseExecutors(timeout_s=float("inf"))
    with DatabaseExecutors() as pool, pytest.raises(FileNotFoundError):
        pool.executor(tmp_path / "nope.sqlite")
