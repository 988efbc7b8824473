"""Execution evaluation: gold and restyled gold score 1.0; known-wrong SQL lands in the right category."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import players_table
from sqlglot import exp

from experiments.data.prompt import render_sql
from experiments.data.records import Example, Query, Table
from experiments.evaluation import materialize_tables, score, sqlite_column_names, sqlite_table_name
from experiments.evaluation.results_compare import normalise_rows, results_match
from experiments.sql.safe_sql import bind_to_table, parse_single_query

TABLE = players_table()
TABLES = {TABLE.id: TABLE}
EXAMPLES = [
    Example("test-0", TABLE.id, "What number did Antonio Lang wear?", Query(1, 0, ((0, 0, "Antonio Lang"),))),
    Example("test-1", TABLE.id, "How many players came from Duke?", Query(0, 3, ((5, 0, "Duke"),))),
    Example("test-2", TABLE.id, "Tallest guard-forward?", Query(6, 1, ((3, 0, "Guard-Forward"),))),
    Example("test-3", TABLE.id, "Who wore number 32?", Query(0, 0, ((1, 0, 32.0),))),
    Example("test-4", TABLE.id, "Who played 2002-03 and is taller than 6.5 ft?",
            Query(0, 0, ((4, 0, "2002-03"), (6, 1, 6.5)))),
    Example("test-5", TABLE.id, "Which school did number 7 come from?", Query(5, 0, ((1, 0, "7"),))),
    Example("test-6", TABLE.id, "O'Neal Jones's nationality?", Query(2, 0, ((0, 0, "O'Neal Jones"),))),
]
BY_ID = {e.id: e for e in EXAMPLES}


ROWS: dict[Path, list[dict]] = {}  # each test's results rows (scoring writes no file)


def run(tmp_path: Path, predictions: dict[str, str], examples: list[Example] | None = None, **kwargs) -> dict:
    examples = EXAMPLES if examples is None else examples
    scored = score(examples, TABLES, predictions, tmp_path / "tables.sqlite", progress=False, **kwargs)
    ROWS[tmp_path] = scored.rows()
    return scored.metrics


def results(tmp_path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in ROWS[tmp_path]}


def test_gold_sql_scores_one(tmp_path: Path) -> None:
    metrics = run(tmp_path, {e.id: render_sql(e.query, TABLE) for e in EXAMPLES})
    assert metrics["execution_accuracy"] == 1.0
    assert metrics["logical_form_accuracy"] == 1.0
    assert metrics["valid_sql_rate"] == 1.0
    assert metrics["categories"]["correct"] == len(EXAMPLES)
    assert metrics["n"] == len(EXAMPLES)


RESTYLED = [
    ("test-0", "select `No.` from players where player = 'antonio lang';"),
    ("test-0", "SELECT [No.] FROM [t] WHERE [Player] = 'ANTONIO LANG'"),
    ("test-0", "sElEcT \"no.\" FrOm \"T\" wHeRe \"PLAYER\" = 'Antonio Lang' ;"),
    ("test-0", "SELECT \"No.\" FROM main.players WHERE Player = 'Antonio Lang'"),
    ("test-0", "SELECT t.\"No.\" FROM t WHERE t.Player = 'Antonio Lang'"),
    ("test-0", "SELECT p.\"No.\" FROM roster AS p WHERE p.Player = 'Antonio Lang'"),
    ("test-0", "SELECT \"No.\"\nFROM table_1_10015132_11\nWHERE \"Player\" = 'antonio lang'"),
    ("test-1", "SELECT count(player) FROM t WHERE \"school/club team\" = 'duke'"),
    ("test-1", "SELECT COUNT(`Player`) AS n FROM `1-10015132-11` WHERE `School/Club Team` = 'Duke'"),
    ("test-2", "SELECT MAX(t.\"Height (ft)\") AS tallest FROM t WHERE t.Position = 'guard-forward'"),
    ("test-3", "SELECT \"Player\" FROM \"t\" WHERE \"No.\" = 32.0"),
    ("test-3", "SELECT Player FROM t WHERE \"No.\" = '32'"),
    ("test-3", "SELECT Player FROM t WHERE \"No.\" = 3.2e1"),
    ("test-4", "SELECT \"Player\" FROM t WHERE \"Height (ft)\" > 6.5 AND \"Years in Toronto\" = '2002-03'"),
    ("test-4", 'SELECT "Player" FROM t WHERE (6.5 < "Height (ft)") AND ("Years in Toronto" = \'2002-03\')'),
    ("test-5", "SELECT \"School/Club Team\" FROM t WHERE \"No.\" = 7"),
    ("test-5", "SELECT \"School/Club Team\" FROM t WHERE \"No.\" = 7.0"),
    ("test-6", "SELECT Nationality FROM t WHERE Player = 'o''neal jones'"),
]


@pytest.mark.parametrize(("example_id", "sql"), RESTYLED)
def test_restyled_gold_scores_one(tmp_path: Path, example_id: str, sql: str) -> None:
    metrics = run(tmp_path, {example_id: sql}, [BY_ID[example_id]])
    result = results(tmp_path)[example_id]
    assert result["category"] == "correct", result
    assert metrics["execution_accuracy"] == 1.0
    assert metrics["logical_form_accuracy"] == 1.0


WRONG = [
    ("test-0", "SELECT \"Player\" FROM t WHERE \"Player\" = 'Antonio Lang'", "wrong_select_column"),
    ("test-2", 'SELECT MIN("Height (ft)") FROM t WHERE "Position" = \'Guard-Forward\'', "wrong_aggregation"),
    ("test-2", "SELECT \"Height (ft)\" FROM t WHERE \"Position\" = 'Guard-Forward'", "wrong_aggregation"),
    ("test-0", "SELECT \"No.\" FROM t WHERE \"Player\" = 'Martin Lewis'", "wrong_where"),
    ("test-0", "SELECT \"No.\" FROM t WHERE \"Years in Toronto\" = '1996-97'", "wrong_where"),
    ("test-4", "SELECT \"Player\" FROM t WHERE \"Years in Toronto\" = '2002-03' AND \"Height (ft)\" < 6.5",
     "wrong_where"),
    ("test-1", "SELECT COUNT(\"Player\") FROM t WHERE \"School/Club Team\" = 'Duke' AND \"No.\" = 5",
     "missing_or_extra_condition"),
    ("test-4", 'SELECT "Player" FROM t WHERE "Years in Toronto" = \'2002-03\'', "missing_or_extra_condition"),
    # SQLite would read these double-quoted names as string literals and match; they are unknown columns.
    ("test-0", "SELECT \"No.\" FROM t WHERE \"Player\" = \"Antonio Lang\"", "unknown_column"),
    ("test-0", 'SELECT "No." FROM t WHERE "Player" = \'Antonio Lang\' AND "Team" = "Team"', "unknown_column"),
    ("test-0", "SELECT Number FROM t WHERE Player = 'Antonio Lang'", "unknown_column"),
    ("test-0", "SELEC \"No.\" FROM t", "syntax_error"),
    ("test-0", "SELECT \"No.\" FROM t WHERE", "syntax_error"),
    ("test-0", "", "syntax_error"),
    ("test-0", "SELECT \"No.\" FROM t ORDER BY \"No.\" LIMIT 1", "other"),  # runs, has no logical form
    ("test-0", "SELECT a.\"No.\" FROM t AS a JOIN u AS b ON a.Player = b.Player", "other"),  # two tables
]


@pytest.mark.parametrize(("example_id", "sql", "category"), WRONG)
def test_wrong_sql_gets_its_category(tmp_path: Path, example_id: str, sql: str, category: str) -> None:
    metrics = run(tmp_path, {example_id: sql}, [BY_ID[example_id]])
    result = results(tmp_path)[example_id]
    assert result["category"] == category, result
    assert result["exec_match"] is False
    assert result["lf_match"] is False
    assert metrics["execution_accuracy"] == 0.0
    assert metrics["categories"][category] == 1
    if category in ("unknown_column", "syntax_error"):
        assert result["error"]
        assert result["valid_sql"] is False


def test_exec_match_without_logical_form_match_is_correct(tmp_path: Path) -> None:
    metrics = run(tmp_path, {"test-1": "SELECT COUNT(*) FROM t WHERE \"School/Club Team\" = 'Duke'"},
                  [BY_ID["test-1"]])
    assert metrics["execution_accuracy"] == 1.0
    assert metrics["logical_form_accuracy"] == 0.0
    assert metrics["categories"]["correct"] == 1


def test_results_compare_numbers_text_and_order() -> None:
    assert results_match(normalise_rows([(3,)]), normalise_rows([(3.0,)]))
    assert results_match(normalise_rows([(3,)]), normalise_rows([("3",)]))
    assert results_match(normalise_rows([("3.0",)]), normalise_rows([(" 3 ",)]))
    assert results_match(normalise_rows([("Duke",), ("Iowa",)]), normalise_rows([("iowa",), ("DUKE",)]))
    assert not results_match(normalise_rows([("Duke",)]), normalise_rows([("Duke",), ("Duke",)]))  # multiset
    assert not results_match(normalise_rows([(3,)]), normalise_rows([(4,)]))
    assert not results_match(normalise_rows([(None,)]), normalise_rows([("",)]))
    assert results_match(normalise_rows([(0.1 + 0.2,)]), normalise_rows([(0.3,)]))


def test_missing_and_unknown_predictions_are_counted(tmp_path: Path) -> None:
    predictions = {e.id: render_sql(e.query, TABLE) for e in EXAMPLES[1:]} | {"dev-99": "SELECT 1"}
    metrics = run(tmp_path, predictions)
    assert metrics["categories"]["missing_prediction"] == 1
    assert metrics["missing_predictions"] == 1
    assert metrics["unknown_prediction_ids"] == 1
    assert metrics["execution_accuracy"] == pytest.approx((len(EXAMPLES) - 1) / len(EXAMPLES))
    assert results(tmp_path)["test-0"]["pred_sql"] is None


def test_gold_error_is_recorded_not_dropped(tmp_path: Path) -> None:
    examples = [
        Example("test-9", TABLE.id, "Nobody matches", Query(0, 0, ((0, 0, "Nobody"),))),
        Example("test-8", "1-404-1", "Table is missing", Query(0, 0, ())),
        EXAMPLES[0],
    ]
    metrics = run(tmp_path, {"test-9": "SELECT Player FROM t WHERE Player = 'Nobody'",
                             "test-8": "SELECT 1", "test-0": render_sql(EXAMPLES[0].query, TABLE)}, examples)
    assert metrics["n"] == 3
    assert metrics["categories"]["gold_error"] == 2
    assert metrics["gold_errors"] == 2
    assert metrics["execution_accuracy"] == pytest.approx(1 / 3)
    by_id = results(tmp_path)
    assert "no rows" in by_id["test-9"]["error"]
    assert "1-404-1" in by_id["test-8"]["error"]


def test_materialize_uses_real_headers_and_types(tmp_path: Path) -> None:
    db = tmp_path / "tables.sqlite"
    materialize_tables([TABLE], db)
    materialize_tables([TABLE], db)  # idempotent
    conn = sqlite3.connect(db)
    name = sqlite_table_name(TABLE.id)
    assert name == "table_1_10015132_11"
    info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
    assert [r[1] for r in info] == list(TABLE.header)
    assert [r[2] for r in info] == ["TEXT", "REAL", "TEXT", "TEXT", "TEXT", "TEXT", "REAL"]
    assert conn.execute(f'SELECT count(*) FROM "{name}" WHERE "Player" = \'ANTONIO LANG\'').fetchone() == (1,)
    assert conn.execute(f'SELECT count(*) FROM "{name}"').fetchone() == (len(TABLE.rows),)
    assert conn.execute(f'SELECT typeof("No.") FROM "{name}" LIMIT 1').fetchone() == ("real",)
    conn.close()


def test_materialize_rebuilds_a_changed_table_and_keeps_odd_cells(tmp_path: Path) -> None:
    db = tmp_path / "tables.sqlite"
    materialize_tables([TABLE], db)
    changed = Table(id=TABLE.id, header=("A", "B"), types=("text", "real"),
                    rows=(("x", "n/a"), ("y", "1,234")))
    materialize_tables([changed], db)
    conn = sqlite3.connect(db)
    rows = conn.execute(f'SELECT "A", "B" FROM "{sqlite_table_name(TABLE.id)}" ORDER BY "A"').fetchall()
    conn.close()
    assert rows == [("x", "n/a"), ("y", 1234.0)]


def test_names_are_safe_and_distinct() -> None:
    assert sqlite_table_name("a b") != sqlite_table_name("a_b")
    assert sqlite_table_name("A-1") != sqlite_table_name("a-1")
    assert sqlite_table_name('x"; DROP TABLE y; --').isidentifier()
    assert sqlite_column_names(("Name", "name", "", "Name")) == ("Name", "name_2", "", "Name_3")


def test_duplicate_headers_are_evaluable(tmp_path: Path) -> None:
    table = Table(id="2-1-1", header=("Name", "Score", "Name"), types=("text", "real", "text"),
                  rows=(("a", 1, "x"), ("b", 2, "y")))
    example = Example("test-0", table.id, "q", Query(2, 0, ((1, 0, 2),)))
    metrics = score([example], {table.id: table}, {"test-0": "SELECT \"Name_2\" FROM t WHERE Score = 2"},
                    tmp_path / "db.sqlite", progress=False).metrics
    assert metrics["execution_accuracy"] == 1.0


def test_binding_without_source_positions_rebuilds_the_sql() -> None:
    sql = "SELECT p.\"No.\" FROM roster AS p WHERE p.Player = 'Antonio Lang'"
    tree = parse_single_query(sql)
    for identifier in tree.find_all(exp.Identifier):
        identifier.meta.clear()
    bound = bind_to_table(sql, tree, "table_1_10015132_11")
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE table_1_10015132_11 ("Player" TEXT, "No." REAL)')
    conn.execute("INSERT INTO table_1_10015132_11 VALUES ('Antonio Lang', 21)")
    assert conn.execute(bound).fetchall() == [(21.0,)]
    assert "roster" not in bound
