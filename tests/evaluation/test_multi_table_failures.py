"""Naming what is wrong with a multi-table prediction that ran but returned other rows than gold's."""

from __future__ import annotations

import time

import pytest

from experiments.evaluation.categories import CATEGORIES, MULTI_TABLE_CATEGORIES, MULTI_TABLE_MISMATCHES
from experiments.evaluation.multi_table_failures import mismatch_category_sql
from experiments.sql.sql_parse import MAX_SQL_CHARS

JOIN = ("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
        "WHERE T2.year = 2015")
GROUPED = ("SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
           "GROUP BY T1.name HAVING count(*) > 1")
ORDERED = "SELECT name FROM singer ORDER BY age DESC LIMIT 3"
SET_OPERATION = "SELECT name FROM singer WHERE country = 'France' UNION SELECT name FROM singer WHERE age > 40"
NESTED = "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM concert WHERE year = 2015)"


@pytest.mark.parametrize(("gold", "pred", "expected"), [
    # wrong_table: another table, or an extra one
    (JOIN, JOIN.replace("concert AS T2", "song AS T2"), "wrong_table"),
    ("SELECT name FROM singer", "SELECT name FROM stadium", "wrong_table"),
    ("SELECT name FROM singer",
     "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id", "wrong_table"),
    # reading no table at all is not a dropped join
    ("SELECT max(age) FROM singer", "SELECT 88", "wrong_table"),
    (JOIN, "SELECT 'Taylor'", "wrong_table"),
    # a table read only in a subquery counts
    (NESTED, NESTED.replace("FROM concert", "FROM song"), "wrong_table"),
    # missing_join: fewer tables than gold (a self-join reads two)
    (JOIN, "SELECT name FROM singer WHERE year = 2015", "missing_join"),
    (GROUPED, "SELECT name, count(*) FROM singer GROUP BY name HAVING count(*) > 1", "missing_join"),
    # wrong_join_key: the same tables on other columns
    (JOIN, JOIN.replace("T2.singer_id", "T2.concert_id"), "wrong_join_key"),
    (JOIN, "SELECT singer.name FROM singer, concert WHERE concert.year = 2015", "wrong_join_key"),
    # a self-join: its two sides are told apart by their aliases; dropping it loses the key
    ("SELECT a.name FROM employee AS a JOIN employee AS b ON a.manager_id = b.id",
     "SELECT a.name FROM employee AS a JOIN employee AS b ON a.manager_id = b.manager_id", "wrong_join_key"),
    ("SELECT a.name FROM employee AS a JOIN employee AS b ON a.manager_id = b.id",
     "SELECT name FROM employee", "wrong_join_key"),
    # wrong_set_operation
    (SET_OPERATION, SET_OPERATION.replace("UNION", "INTERSECT"), "wrong_set_operation"),
    (SET_OPERATION, SET_OPERATION.replace("UNION", "UNION ALL"), "wrong_set_operation"),
    (SET_OPERATION, "SELECT name FROM singer WHERE country = 'France' OR age > 40", "wrong_set_operation"),
    # wrong_group_by: the items or HAVING
    (GROUPED, GROUPED.replace("GROUP BY T1.name", "GROUP BY T2.year"), "wrong_group_by"),
    (GROUPED, GROUPED.replace("> 1", ">= 1"), "wrong_group_by"),
    (GROUPED, GROUPED.replace(" HAVING count(*) > 1", ""), "wrong_group_by"),
    # wrong_order_by: the items, their direction, LIMIT
    (ORDERED, ORDERED.replace("DESC", "ASC"), "wrong_order_by"),
    (ORDERED, ORDERED.replace("LIMIT 3", "LIMIT 1"), "wrong_order_by"),
    (ORDERED, "SELECT name FROM singer ORDER BY name DESC LIMIT 3", "wrong_order_by"),
    (ORDERED, "SELECT name FROM singer", "wrong_order_by"),
    # wrong_select: columns, aggregates, DISTINCT
    (JOIN, JOIN.replace("T1.name", "T1.country"), "wrong_select"),
    ("SELECT max(age) FROM singer", "SELECT min(age) FROM singer", "wrong_select"),
    ("SELECT DISTINCT country FROM singer", "SELECT country FROM singer", "wrong_select"),
    (NESTED, NESTED.replace("SELECT singer_id FROM concert", "SELECT concert_id FROM concert"), "wrong_select"),
    # wrong_where: a value, a comparison, a condition more or less; in a subquery too
    (JOIN, JOIN.replace("2015", "2014"), "wrong_where"),
    (JOIN, JOIN + " AND T1.age > 30", "wrong_where"),
    (JOIN, JOIN.replace(" WHERE T2.year = 2015", ""), "wrong_where"),
    (NESTED, NESTED.replace("year = 2015", "year > 2015"), "wrong_where"),
    ('SELECT name FROM singer WHERE country = "France"', "SELECT name FROM singer WHERE country = 'france'",
     "wrong_where"),
])
def test_the_first_part_that_differs_names_the_failure(gold: str, pred: str, expected: str) -> None:
    assert mismatch_category_sql(gold, pred) == expected


@pytest.mark.parametrize("pred", [
    JOIN,
    # aliases, qualifiers and identifier case
    "SELECT singer.name FROM singer JOIN concert ON singer.singer_id = concert.singer_id WHERE concert.year = 2015",
    "select S.NAME from SINGER as s join Concert as C on s.Singer_ID = c.singer_id where C.Year = 2015",
    # the joined tables, and the sides of the key, swapped
    "SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T2.singer_id = T1.singer_id WHERE T1.year = 2015",
    # JOIN ... USING, and a comma join with the key in WHERE
    "SELECT singer.name FROM singer JOIN concert USING (singer_id) WHERE concert.year = 2015",
    "SELECT s.name FROM singer s, concert c WHERE c.year = 2015 AND s.singer_id = c.singer_id",
    # formatting
    "SELECT  T1.name\n  FROM singer AS T1\n  JOIN concert AS T2 ON (T1.singer_id = T2.singer_id)\n"
    "WHERE (T2.year = 2015);",
])
def test_the_same_query_written_otherwise_differs_in_nothing(pred: str) -> None:
    """Nothing structural differs: wrong_result (what differs is beyond these parts, e.g. the data)."""
    assert mismatch_category_sql(JOIN, pred) == "wrong_result"


@pytest.mark.parametrize(("gold", "pred"), [
    ('SELECT name FROM singer WHERE country = "France" AND age > 30',
     "SELECT name FROM singer WHERE age > 30 AND country = 'France'"),  # Spider's double-quoted string, conditions
    ("SELECT country, count(*) AS n FROM singer GROUP BY country ORDER BY n DESC",
     "SELECT country, count(*) FROM singer GROUP BY country ORDER BY count(*) DESC"),  # a select alias
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)",
     "SELECT singer.name FROM singer WHERE singer.age > (SELECT avg(T9.age) FROM singer AS T9)"),
    ("SELECT a, b FROM t GROUP BY a, b", "SELECT a, b FROM t GROUP BY b, a"),
])
def test_normalised_away(gold: str, pred: str) -> None:
    assert mismatch_category_sql(gold, pred) == "wrong_result"


def test_the_order_of_the_checks() -> None:
    """Several parts differ: the first in the documented order names the failure."""
    pred = "SELECT DISTINCT T1.age FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.concert_id"
    assert mismatch_category_sql(JOIN, pred) == "wrong_join_key"
    assert mismatch_category_sql(ORDERED, "SELECT age FROM singer ORDER BY age LIMIT 3") == "wrong_order_by"
    assert list(MULTI_TABLE_MISMATCHES) == ["wrong_table", "missing_join", "wrong_join_key", "wrong_set_operation",
                                            "wrong_group_by", "wrong_order_by", "wrong_select", "wrong_where",
                                            "wrong_result"]
    assert set(MULTI_TABLE_MISMATCHES) <= set(MULTI_TABLE_CATEGORIES)
    assert "unknown_table" in MULTI_TABLE_CATEGORIES and "unknown_table" not in CATEGORIES  # WikiSQL's unchanged


@pytest.mark.parametrize("pred", [
    "SELEC name FROM singer",
    "",
    "SELECT name FROM singer; DROP TABLE singer",
    "DELETE FROM singer",
    "SELECT (((((((((((((((((((((((1)))))))))))))))))))))))",  # deeper than the parse allows
    "SELECT 1" + " + 1" * (MAX_SQL_CHARS // 4),  # longer than the parse allows
    "\udcff",
])
def test_unreadable_sql_is_wrong_result_without_raising(pred: str) -> None:
    start = time.perf_counter()
    assert mismatch_category_sql(JOIN, pred) == "wrong_result"
    assert mismatch_category_sql(pred, JOIN) == "wrong_result"  # gold that cannot be read, too
    assert time.perf_counter() - start < 2


def test_large_sql_within_the_caps_is_answered_quickly() -> None:
    years = ", ".join(str(i) for i in range(600))
    gold = f"{JOIN} AND T2.year NOT IN ({years})"
    start = time.perf_counter()
    assert mismatch_category_sql(gold, gold.replace("599)", "600)")) == "wrong_where"
    assert time.perf_counter() - start < 5
