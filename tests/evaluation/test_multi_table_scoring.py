"""Scoring multi-table predictions (Spider, BIRD): each question on its own database file, official comparisons."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import pytest
from conftest import DatabaseFile as Database
from conftest import Question as Example
from conftest import concerts_database

from experiments.evaluation.categories import MULTI_TABLE_CATEGORIES
from experiments.evaluation.multi_table_scoring import score_multi_table
from experiments.sql.sql_parse import MAX_SQL_CHARS

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "experiments" / "data" / "spider_sample"
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"


JOIN = ("SELECT s.name, c.title FROM singer AS s JOIN concert AS c ON s.singer_id = c.singer_id "
        "WHERE c.year = 2015")
ORDERED = "SELECT name FROM singer ORDER BY age DESC"
EXAMPLES = [
    Example("q0", "concerts", "How many singers are there?", "SELECT count(*) FROM singer", difficulty="simple"),
    Example("q1", "concerts", "Who sang which concert in 2015?", JOIN, difficulty="moderate"),
    Example("q2", "concerts", "Singers from oldest to youngest?", ORDERED, difficulty="simple"),
    Example("q3", "music", "Which singers are from France?", 'SELECT name FROM singer WHERE country = "France"',
            difficulty="challenging"),
    Example("q4", "concerts", "Concerts per year?",
            "SELECT year, count(*) FROM concert GROUP BY year HAVING count(*) > 0", difficulty="moderate"),
]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def databases(tmp_path: Path) -> list[Database]:
    return [Database(name, concerts_database(tmp_path / "database" / name / f"{name}.sqlite"))
            for name in ("concerts", "music")]


def by_id(scored) -> dict:
    return {r.id: r for r in scored.results}


@pytest.mark.parametrize("semantics", ["spider", "bird"])
def test_gold_as_prediction_is_all_correct(databases: list[Database], semantics: str) -> None:
    scored = score_multi_table(EXAMPLES, databases, {e.id: e.sql for e in EXAMPLES}, semantics=semantics,
                               progress=False)
    metrics = scored.metrics
    assert metrics["execution_accuracy"] == 1.0 and metrics["valid_sql_rate"] == 1.0 and metrics["n"] == 5
    assert metrics["categories"]["correct"] == 5 and set(MULTI_TABLE_CATEGORIES) <= set(metrics["categories"])
    assert [r.id for r in scored.results] == [e.id for e in EXAMPLES]  # the examples' order, across databases
    assert {r.hardness for r in scored.results} <= {"easy", "medium", "hard", "extra"}
    assert sum(level["n"] for level in metrics["by_hardness"].values()) == 5
    assert list(metrics["by_hardness"])[:4] == ["easy", "medium", "hard", "extra"]
    assert metrics["by_hardness"]["easy"] == {"n": 3, "execution_accuracy": 1.0}
    assert metrics["by_hardness"]["extra"] == {"n": 0, "execution_accuracy": None}
    assert metrics["by_difficulty"] == {"simple": {"n": 2, "execution_accuracy": 1.0},
                                        "moderate": {"n": 2, "execution_accuracy": 1.0},
                                        "challenging": {"n": 1, "execution_accuracy": 1.0}}
    assert scored.rows()[0]["db_id"] == "concerts" and scored.rows()[0]["difficulty"] == "simple"


def test_rewritten_predictions_run_and_match(databases: list[Database]) -> None:
    """Not gold's text: the prediction itself runs (on the example's database, any of its tables)."""
    predictions = {e.id: "/* rewritten */ " + e.sql.lower() for e in EXAMPLES}
    predictions["q1"] = ("select name, title from concert join singer using (singer_id) where year = 2015")
    scored = score_multi_table(EXAMPLES, databases, predictions, semantics="spider", progress=False)
    assert scored.metrics["execution_accuracy"] == 0.8  # lower() changed 'France' in q3
    assert by_id(scored)["q3"].category == "wrong_where" and by_id(scored)["q3"].valid_sql


def test_wrong_prediction(databases: list[Database]) -> None:
    predictions = {"q0": "SELECT count(*) FROM concert WHERE year = 2015",
                   "q1": "SELECT name, title FROM singer, concert"}
    scored = score_multi_table(EXAMPLES[:2], databases, predictions, semantics="spider", progress=False)
    results = by_id(scored)
    assert [results[i].category for i in ("q0", "q1")] == ["wrong_table", "wrong_join_key"]
    assert not results["q0"].exec_match and results["q0"].valid_sql and results["q0"].error is None
    assert scored.metrics["execution_accuracy"] == 0.0 and scored.metrics["valid_sql_rate"] == 1.0


@pytest.mark.parametrize(("semantics", "expected"), [("spider", True), ("bird", False)])
def test_permuted_columns(databases: list[Database], semantics: str, expected: bool) -> None:
    predictions = {"q1": "SELECT c.title, s.name FROM singer AS s JOIN concert AS c ON s.singer_id = c.singer_id "
                         "WHERE c.year = 2015"}
    scored = score_multi_table(EXAMPLES[1:2], databases, predictions, semantics=semantics, progress=False)
    assert scored.results[0].exec_match is expected
    assert scored.results[0].category == ("correct" if expected else "wrong_select")  # BIRD: columns in order


@pytest.mark.parametrize(("semantics", "expected"), [("spider", False), ("bird", True)])
def test_order_by_gold_against_reordered_rows(databases: list[Database], semantics: str, expected: bool) -> None:
    """Gold orders its rows: Spider compares them as lists, BIRD as sets."""
    predictions = {"q2": "SELECT name FROM singer ORDER BY age ASC"}
    scored = score_multi_table(EXAMPLES[2:3], databases, predictions, semantics=semantics, progress=False)
    assert scored.results[0].exec_match is expected


def test_unordered_gold_matches_reordered_rows(databases: list[Database]) -> None:
    predictions = {"q3": "SELECT name FROM singer WHERE country = 'France' ORDER BY name DESC"}
    scored = score_multi_table(EXAMPLES[3:4], databases, predictions, semantics="spider", progress=False)
    assert scored.results[0].exec_match


def test_hostile_predictions_are_bounded_and_change_nothing(databases: list[Database], tmp_path: Path) -> None:
    before = [digest(d.path) for d in databases]
    predictions = {
        "q0": ENDLESS,
        "q1": "DROP TABLE concert",
        "q2": f"ATTACH DATABASE '{tmp_path}/evil.db' AS evil",
        "q3": "SELECT count(*) FROM sqlite_master",
        "q4": "SELECT year, count(*) FROM concert GROUP BY year; DELETE FROM concert",
    }
    start = time.perf_counter()
    scored = score_multi_table(EXAMPLES, databases, predictions, semantics="spider", timeout_s=0.5, progress=False)
    assert time.perf_counter() - start < 20
    results = by_id(scored)
    assert results["q0"].category == "timeout" and not results["q0"].valid_sql
    assert [results[i].category for i in ("q1", "q2", "q3", "q4")] == ["forbidden_statement"] * 4
    assert scored.metrics["execution_accuracy"] == 0.0 and scored.metrics["categories"]["timeout"] == 1
    assert [digest(d.path) for d in databases] == before
    assert not (tmp_path / "evil.db").exists()


def test_endless_prediction_does_not_stall_the_rest(databases: list[Database]) -> None:
    predictions = {e.id: e.sql for e in EXAMPLES} | {"q1": ENDLESS, "q2": ENDLESS.replace("count(*)", "x")}
    scored = score_multi_table(EXAMPLES, databases, predictions, semantics="bird", timeout_s=0.3, progress=False)
    results = by_id(scored)
    assert results["q1"].category == "timeout"
    assert results["q2"].category in {"timeout", "too_many_rows"}
    assert [results[i].exec_match for i in ("q0", "q3", "q4")] == [True, True, True]


def test_missing_unknown_and_garbage_predictions(databases: list[Database], caplog) -> None:
    predictions = {"q0": None, "q1": "SELEC name FROM singer", "q2": "", "q3": "x" * (MAX_SQL_CHARS + 1),
                   "elsewhere-7": "SELECT 1"}
    with caplog.at_level(logging.WARNING):
        scored = score_multi_table(EXAMPLES, databases, predictions, semantics="spider", progress=False)
    results = by_id(scored)
    assert results["q0"].category == "missing_prediction" and results["q0"].pred_sql is None
    assert results["q1"].category == "syntax_error"
    assert results["q2"].category == "syntax_error"  # empty SQL
    assert results["q3"].category == "other" and "characters long" in results["q3"].error
    assert results["q4"].category == "missing_prediction"  # no entry at all
    metrics = scored.metrics
    assert metrics["n"] == 5 and metrics["missing_predictions"] == 2 and metrics["unknown_prediction_ids"] == 1
    assert metrics["warnings"] and "elsewhere-7" in caplog.text
    with pytest.raises(ValueError, match="nothing to score"):
        score_multi_table(EXAMPLES, databases, {"elsewhere-7": "SELECT 1"}, semantics="spider", progress=False)


def test_gold_errors_are_counted(databases: list[Database], tmp_path: Path) -> None:
    examples = [
        Example("g0", "concerts", "?", "SELECT nope FROM singer"),
        Example("g1", "nowhere", "?", "SELECT 1"),
        Example("g2", "broken", "?", "SELECT 1"),
        Example("g3", "concerts", "?", "SELECT name FROM singer WHERE age > 100"),  # empty: a result like any other
    ]
    (tmp_path / "broken.sqlite").write_bytes(b"not a database" * 100)
    scored = score_multi_table(examples, [*databases, Database("broken", tmp_path / "broken.sqlite")],
                               {e.id: e.sql for e in examples} | {"g0": "SELECT 1"}, semantics="spider",
                               progress=False)
    results = by_id(scored)
    assert [results[i].category for i in ("g0", "g1", "g2")] == ["gold_error"] * 3
    assert "no such column" in results["g0"].error and results["g0"].valid_sql  # the prediction itself ran
    assert "not among the databases" in results["g1"].error
    assert results["g3"].exec_match
    assert scored.metrics["n"] == 4 and scored.metrics["gold_errors"] == 3
    assert scored.metrics["execution_accuracy"] == 0.25


def test_bad_arguments_are_refused(databases: list[Database]) -> None:
    with pytest.raises(ValueError, match="semantics"):
        score_multi_table(EXAMPLES, databases, {"q0": "SELECT 1"}, semantics="sparql", progress=False)
    with pytest.raises(ValueError, match="more than once"):
        score_multi_table([*EXAMPLES, EXAMPLES[0]], databases, {"q0": "SELECT 1"}, semantics="spider",
                          progress=False)
    with pytest.raises(ValueError, match="difficulty"):
        score_multi_table([Example("z", "concerts", "?", "SELECT 1", difficulty="impossible")], databases,
                          {"z": "SELECT 1"}, semantics="bird", progress=False)
    with pytest.raises(ValueError, match="timeout_s"):
        score_multi_table(EXAMPLES, databases, {"q0": "SELECT 1"}, semantics="spider", timeout_s=0, progress=False)


def test_the_bundled_spider_sample(tmp_path: Path) -> None:
    """Gold as prediction on the sample's dev split: every gold query runs in the sandbox and matches itself, over
    more databases than the pool keeps open."""
    dev = json.loads((SAMPLE / "dev.json").read_text(encoding="utf-8"))[::3]
    examples = [Example(f"dev-{i}", d["db_id"], d["question"], d["query"]) for i, d in enumerate(dev)]
    databases = {p.name: Database(p.name, p / f"{p.name}.sqlite") for p in (SAMPLE / "database").iterdir()}
    before = {name: digest(d.path) for name, d in databases.items()}
    predictions = {e.id: "/* not verbatim */ " + e.sql for e in examples}
    scored = score_multi_table(examples, databases, predictions, semantics="spider", max_open=2, progress=False)
    assert scored.metrics["execution_accuracy"] == 1.0, [r for r in scored.results if not r.exec_match][:3]
    assert all(level["n"] for level in scored.metrics["by_hardness"].values())
    assert {name: digest(d.path) for name, d in databases.items()} == before


def test_unknown_table(databases: list[Database]) -> None:
    """SQLite's "no such table" is its own category (a prediction that names a table the database has not)."""
    predictions = {"q0": "SELECT count(*) FROM singers", "q1": JOIN.replace("concert AS c", "concerts AS c")}
    scored = score_multi_table(EXAMPLES[:2], databases, predictions, semantics="spider", progress=False)
    results = by_id(scored)
    assert [results[i].category for i in ("q0", "q1")] == ["unknown_table", "unknown_table"]
    assert "no such table" in results["q0"].error and not results["q0"].valid_sql
    assert scored.metrics["categories"]["unknown_table"] == 2


HOSPITAL_GOLD = ("SELECT T2.name FROM physician AS T1 JOIN department AS T2 ON T1.department_id = T2.department_id "
                 "ORDER BY T1.years_experience DESC LIMIT 1")


@pytest.mark.parametrize(("pred", "expected"), [
    ("SELECT d.name FROM physician AS p JOIN department AS d ON p.physician_id = d.department_id "
     "ORDER BY p.years_experience DESC LIMIT 1", "wrong_join_key"),
    ("SELECT name FROM department ORDER BY floor DESC LIMIT 1", "missing_join"),
    ("SELECT department.name FROM department JOIN physician ON department.department_id = physician.department_id "
     "ORDER BY physician.years_experience ASC LIMIT 1", "wrong_order_by"),
    ("SELECT T1.name FROM physician AS T1 JOIN department AS T2 ON T1.department_id = T2.department_id "
     "ORDER BY T1.years_experience DESC LIMIT 1", "wrong_select"),
    ("SELECT T2.name FROM physician AS T1 JOIN appointment AS T2 ON T1.physician_id = T2.physician_id "
     "ORDER BY T1.years_experience DESC LIMIT 1", "unknown_column"),
    ("SELECT T2.name FROM physician AS T1 JOIN patient AS T2 ON T1.physician_id = T2.patient_id "
     "ORDER BY T1.years_experience DESC LIMIT 1", "wrong_table"),
    (HOSPITAL_GOLD.replace("ORDER BY", "WHERE T2.floor > 100 ORDER BY"), "wrong_where"),
])
def test_the_finer_category_on_the_spider_sample(pred: str, expected: str) -> None:
    """A wrong prediction on a bundled Spider database gets the category of what differs from gold, counted in the
    metrics under that name."""
    examples = [Example("h0", "hospital", "Which department has the most experienced physician?", HOSPITAL_GOLD)]
    database = Database("hospital", SAMPLE / "database" / "hospital" / "hospital.sqlite")
    scored = score_multi_table(examples, [database], {"h0": pred}, semantics="spider", progress=False)
    result = scored.results[0]
    assert not result.exec_match and result.category == expected
    assert scored.metrics["categories"][expected] == 1 and scored.metrics["categories"]["wrong_result"] == 0


COUNTRIES = Example("q5", "concerts", "Which countries do singers come from?", "SELECT DISTINCT country FROM singer")


@pytest.mark.parametrize(("semantics", "keep_distinct", "expected"), [
    ("spider", False, True),  # the official evaluator's default: DISTINCT removed from gold and prediction alike
    ("spider", True, False),  # its --keep_distinct: 3 rows against 2
    ("bird", False, True),  # sets of rows
])
def test_distinct_is_scored_as_the_official_evaluators_score_it(databases: list[Database], semantics: str,
                                                                 keep_distinct: bool, expected: bool) -> None:
    scored = score_multi_table([COUNTRIES], databases, {"q5": "SELECT country FROM singer"}, semantics=semantics,
                               keep_distinct=keep_distinct, progress=False)
    assert scored.results[0].exec_match is expected
    assert scored.metrics.get("keep_distinct") == (keep_distinct if semantics == "spider" else None)
    assert scored.results[0].pred_sql == "SELECT country FROM singer"  # results show the SQL as written


def test_spider_counts_a_count_distinct_as_a_count_by_default(databases: list[Database]) -> None:
    """A known trait of the official Spider evaluator, kept so that figures compare with published ones."""
    gold = Example("q6", "concerts", "How many countries?", "SELECT count(DISTINCT country) FROM singer")
    scored = score_multi_table([gold], databases, {"q6": "SELECT count(country) FROM singer"}, semantics="spider",
                               progress=False)
    assert scored.results[0].exec_match
    assert not score_multi_table([gold], databases, {"q6": "SELECT count(country) FROM singer"}, semantics="spider",
                                 keep_distinct=True, progress=False).results[0].exec_match
