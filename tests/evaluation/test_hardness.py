"""Spider hardness levels and their counts, and BIRD's difficulty labels. Every level and count below is what
test-suite-sql-eval's Evaluator.eval_hardness (and count_component1 / count_component2 / count_others) gives on
its own parse of the query (checked with benchmarks/parity_multi_table.py and the official code)."""

from __future__ import annotations

import pytest

from experiments.evaluation.hardness import (
    HardnessCounts,
    _level,
    bird_difficulty,
    hardness_counts,
    spider_hardness,
)

LEVELS: list[tuple[str, str]] = [
    # Spider paper-style examples, one per level
    ("SELECT COUNT(*) FROM cars_data WHERE cylinders > 4", "easy"),
    ("SELECT T2.name, COUNT(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
     "GROUP BY T1.stadium_id", "medium"),
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30", "hard"),
    ("SELECT AVG(life_expectancy) FROM country WHERE name NOT IN (SELECT T1.name FROM country AS T1 JOIN "
     "country_language AS T2 ON T1.code = T2.country_code WHERE T2.language = \"English\" AND T2.is_official = \"T\")",
     "extra"),
    # more of each
    ("SELECT name FROM singer", "easy"),
    ("SELECT name FROM singer ORDER BY age", "easy"),
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id", "easy"),
    ("SELECT count(*) FROM (SELECT country FROM singer GROUP BY country)", "easy"),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1 AND avg(age) > 20", "easy"),
    ("SELECT name FROM singer WHERE country LIKE '%an%'", "medium"),
    ("SELECT name FROM singer WHERE age > 20 OR country = 'France'", "medium"),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "medium"),
    ("SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'", "medium"),
    ("SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)", "hard"),
    ("SELECT name FROM singer UNION SELECT name FROM stadium UNION SELECT concert_name FROM concert", "hard"),
    ("SELECT name FROM singer WHERE age > 40 UNION SELECT name FROM singer WHERE age < 30 ORDER BY name LIMIT 3",
     "hard"),
    ("SELECT T3.name FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id = T2.concert_id "
     "JOIN singer AS T3 ON T1.singer_id = T3.singer_id WHERE T2.year = 2014", "hard"),
    ("SELECT name, capacity FROM stadium WHERE average > 100 ORDER BY capacity DESC LIMIT 2", "hard"),
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id "
     "ORDER BY count(*) DESC LIMIT 1", "extra"),
    ("SELECT name, age FROM singer UNION SELECT name, capacity FROM stadium", "extra"),
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer) AND country = 'France'", "extra"),
    ("SELECT name FROM singer WHERE age NOT BETWEEN 20 AND 30 AND country NOT LIKE 'F%'", "extra"),
    ("SELECT country, max(age) FROM singer GROUP BY country ORDER BY count(*) DESC", "extra"),
]


@pytest.mark.parametrize(("sql", "level"), LEVELS)
def test_official_levels(sql: str, level: str) -> None:
    assert spider_hardness(sql) == level


@pytest.mark.parametrize(("sql", "counts"), [
    # HAVING's aggregate calls count for nothing; its AND/OR connectives count as aggregations
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1", (1, 0, 0)),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1 OR max(age) > 20 OR min(age) < 18", (3, 0, 1)),
    # a NOT condition in WHERE counts as an aggregation (two of them: "more than one")
    ("SELECT name FROM singer WHERE age NOT BETWEEN 20 AND 30 AND country NOT LIKE 'F%'", (2, 0, 2)),
    # ORDER BY: both operands of one arithmetic operation
    ("SELECT stadium_id FROM stadium GROUP BY stadium_id ORDER BY max(highest) - min(lowest) DESC", (2, 0, 1)),
    # ORDER BY / LIMIT after a set operation belong to its last SELECT: not counted
    ("SELECT name FROM singer WHERE age > 40 UNION SELECT name FROM singer WHERE age < 30 ORDER BY name LIMIT 3",
     (1, 1, 0)),
    # a FROM subquery is a table, not a nested query; subqueries as values count once each
    ("SELECT count(*) FROM (SELECT country FROM singer GROUP BY country)", (0, 0, 0)),
    ("SELECT name FROM stadium WHERE capacity BETWEEN (SELECT min(capacity) FROM stadium) "
     "AND (SELECT avg(capacity) FROM stadium)", (1, 2, 0)),
    ("SELECT name FROM singer WHERE name LIKE '%a%' OR name LIKE '%e%' OR country = 'UK'", (5, 0, 1)),
])
def test_official_counts(sql: str, counts: tuple[int, int, int]) -> None:
    assert hardness_counts(sql) == HardnessCounts(*counts)


@pytest.mark.parametrize(("counts", "level"), [
    ((0, 0, 0), "easy"), ((1, 0, 0), "easy"),
    ((1, 0, 2), "medium"), ((2, 0, 1), "medium"), ((2, 0, 0), "medium"),
    ((1, 0, 3), "hard"), ((2, 0, 3), "hard"), ((3, 0, 2), "hard"), ((1, 1, 0), "hard"), ((0, 1, 0), "hard"),
    ((3, 0, 3), "extra"), ((4, 0, 0), "extra"), ((1, 1, 1), "extra"), ((2, 1, 0), "extra"), ((0, 2, 0), "extra"),
])
def test_thresholds(counts: tuple[int, int, int], level: str) -> None:
    component1, component2, others = counts
    assert _level(component1, component2, others) == level


@pytest.mark.parametrize("sql", ["DELETE FROM singer", "SELECT 1; SELECT 2", "SELECT FROM WHERE (", ""])
def test_not_one_select(sql: str) -> None:
    with pytest.raises(ValueError):
        spider_hardness(sql)


@pytest.mark.parametrize(("value", "expected"), [
    ("simple", "simple"), ("Moderate", "moderate"), (" challenging\n", "challenging"), (None, None), ("", None),
])
def test_bird_difficulty(value: object, expected: str | None) -> None:
    assert bird_difficulty(value) == expected


@pytest.mark.parametrize("value", ["hard", "extra", 3])
def test_bird_difficulty_refuses_other_labels(value: object) -> None:
    with pytest.raises(ValueError):
        bird_difficulty(value)
