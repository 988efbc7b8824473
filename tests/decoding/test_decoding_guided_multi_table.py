"""Execution-guided selection on multi-table databases (Spider, BIRD): each question's candidates run as written on
its own database file, in the multi-table evaluator's sandbox; a candidate that fails, returns nothing (or only
NULL) or writes is skipped for the next one, and no candidate changes a database file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import concerts_database

from experiments.data.schema import Database
from experiments.decoding.guided import EXECUTES, NONE_EXECUTES, DatabaseRunner, choose
from experiments.sql.executor import DatabaseExecutors

JOIN = ("SELECT T1.name, T2.title FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
        "WHERE T2.year = 2015")


def shop_database(path: Path) -> Path:
    """A second database, whose only table the concerts database lacks."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE shop_item (item_id INTEGER PRIMARY KEY, label TEXT);"
                       "INSERT INTO shop_item VALUES (1, 'lamp'), (2, 'desk');")
    conn.commit()
    conn.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def databases(tmp_path: Path) -> dict[str, Database]:
    paths = {"concerts": concerts_database(tmp_path / "concerts" / "concerts.sqlite"),
             "shop": shop_database(tmp_path / "shop" / "shop.sqlite")}
    return {name: Database(id=name, tables=(), foreign_keys=(), path=path) for name, path in paths.items()}


@pytest.fixture
def runner():
    with DatabaseExecutors(timeout_s=1.0) as pool:
        yield DatabaseRunner(pool)


def test_errors_empty_results_and_writes_are_skipped_for_a_join_that_answers(databases, runner):
    concerts = databases["concerts"]
    before = digest(concerts.path)
    candidates = [["SELECT name FROM performer",                                   # no such table: an error
                   "SELECT name FROM singer WHERE age > 90",                       # runs, returns no row
                   'SELECT max(age) FROM singer WHERE country = "Peru"',           # only NULL (Spider's quoting)
                   "DELETE FROM singer",                                           # a write: refused, not run
                   JOIN,                                                           # two tables joined: answers
                   "SELECT name FROM singer"]]
    (guided,) = choose(candidates, [concerts], runner)
    assert (guided.index, guided.reason) == (4, EXECUTES)
    assert digest(concerts.path) == before


def test_each_question_runs_on_its_own_database(databases, runner):
    same = ["SELECT label FROM shop_item", "SELECT name FROM singer"]
    on_concerts, on_shop = choose([same, same], [databases["concerts"], databases["shop"]], runner)
    assert (on_concerts.index, on_concerts.reason) == (1, EXECUTES)  # concerts has no shop_item
    assert (on_shop.index, on_shop.reason) == (0, EXECUTES)


def test_the_top_candidate_stays_when_none_answers(databases, runner):
    concerts = databases["concerts"]
    (fallback,) = choose([["SELEC name FROM singer", "DROP TABLE singer",
                           "SELECT title FROM concert WHERE year = 1900"]], [concerts], runner)
    assert (fallback.index, fallback.reason) == (0, NONE_EXECUTES) and "syntax" in fallback.detail.lower()
    (empty_top,) = choose([["SELECT title FROM concert WHERE year = 1900", "SELECT nope FROM singer"]], [concerts],
                          runner)
    assert (empty_top.index, empty_top.reason, empty_top.detail) == (0, NONE_EXECUTES, "empty or NULL result")


def test_hostile_candidates_change_nothing(databases, runner, tmp_path):
    concerts = databases["concerts"]
    before = digest(concerts.path)
    evil = tmp_path / "evil.db"
    hostile = [[f"ATTACH DATABASE '{evil}' AS x", "PRAGMA writable_schema=1", "SELECT sql FROM sqlite_master",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
                "UPDATE singer SET age = 0", "SELECT count(*) FROM concert WHERE year = 2015"]]
    (guided,) = choose(hostile, [concerts], runner)
    assert (guided.index, guided.reason) == (5, EXECUTES)
    assert digest(concerts.path) == before and not evil.exists()


def test_a_database_that_cannot_be_opened_keeps_the_top_candidate(databases, runner, tmp_path):
    gone = Database(id="gone", tables=(), foreign_keys=(), path=tmp_path / "gone" / "gone.sqlite")
    missing, present = choose([["SELECT 1", "SELECT 2"], ["SELECT name FROM singer"]],
                              [gone, databases["concerts"]], runner)
    assert (missing.index, missing.reason) == (0, NONE_EXECUTES) and "cannot open database" in missing.detail
    assert (present.index, present.reason) == (0, EXECUTES)
