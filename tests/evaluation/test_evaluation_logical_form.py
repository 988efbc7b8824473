"""Logical forms: predicted SQL parsed back into WikiSQL's {sel, agg, conds}, compared as the official
evaluator does."""

from __future__ import annotations

import pytest

from experiments.data.prompt import render_sql
from experiments.data.records import Query, Table
from experiments.evaluation import logical_forms_match, parse_logical_form

TABLE = Table(
    id="1-1-1",
    header=("Player", "No.", "School/Club Team", "Height (ft)", "Year"),
    types=("text", "real", "text", "real", "text"),
    rows=(),
)

PARSED = [
    ('SELECT "Player" FROM "t" WHERE "No." = 21', Query(0, 0, ((1, 0, 21),))),
    ("select player from anything where `no.` = 21;", Query(0, 0, ((1, 0, 21),))),
    ("SELECT [School/Club Team] FROM [t] WHERE [Player] = 'Duke'", Query(2, 0, ((0, 0, "Duke"),))),
    ('SELECT MAX("Height (ft)") FROM t', Query(3, 1, ())),
    ('SELECT min(t."Height (ft)") AS m FROM t', Query(3, 2, ())),
    ('SELECT COUNT(Player) FROM t WHERE Year > 1990 AND "No." < -3.5',
     Query(0, 3, ((4, 1, 1990), (1, 2, -3.5)))),
    ('SELECT SUM("No.") FROM t WHERE (Player = \'a\')', Query(1, 4, ((0, 0, "a"),))),
    ('SELECT AVG("No.") FROM t WHERE 5 < "Height (ft)"', Query(1, 5, ((3, 1, 5),))),
]


@pytest.mark.parametrize(("sql", "expected"), PARSED)
def test_parses_wikisql_shape(sql: str, expected: Query) -> None:
    assert parse_logical_form(sql, TABLE) == expected


UNPARSEABLE = [
    "SELECT COUNT(*) FROM t",
    "SELECT COUNT(DISTINCT Player) FROM t",
    "SELECT DISTINCT Player FROM t",
    "SELECT Player, Year FROM t",
    "SELECT Player FROM t WHERE Year = 1990 OR Year = 1991",
    "SELECT Player FROM t WHERE Year >= 1990",
    "SELECT Player FROM t WHERE Year LIKE '19%'",
    "SELECT Player FROM t WHERE Year = \"1990\"",  # a column on both sides
    "SELECT Player FROM t ORDER BY Year",
    "SELECT Player FROM t LIMIT 1",
    "SELECT Player FROM t GROUP BY Player",
    "SELECT a.Player FROM t a JOIN t b ON a.Year = b.Year",
    "SELECT Nope FROM t",
    "SELECT Player FROM t WHERE Nope = 1",
    "SELECT 1",
    "SELECT Player FROM t; SELECT 1",
    "DROP TABLE t",
    "not sql at all (",
    "",
]


@pytest.mark.parametrize("sql", UNPARSEABLE)
def test_anything_else_has_no_logical_form(sql: str) -> None:
    assert parse_logical_form(sql, TABLE) is None


def test_comparison_is_order_insensitive_and_case_insensitive_on_values() -> None:
    gold = Query(0, 3, ((4, 0, "Duke"), (1, 1, 1990)))
    assert logical_forms_match(Query(0, 3, ((1, 1, 1990), (4, 0, "DUKE"))), gold)
    assert logical_forms_match(Query(0, 3, ((4, 0, "duke"), (1, 1, 1990.0))), gold)
    assert logical_forms_match(Query(0, 3, ((4, 0, "duke"), (1, 1, "1990"))), gold)
    assert not logical_forms_match(Query(0, 0, ((4, 0, "duke"), (1, 1, 1990))), gold)
    assert not logical_forms_match(Query(1, 3, ((4, 0, "duke"), (1, 1, 1990))), gold)
    assert not logical_forms_match(Query(0, 3, ((4, 0, "duke"), (1, 2, 1990))), gold)
    assert not logical_forms_match(Query(0, 3, ((4, 0, "duke"),)), gold)
    assert not logical_forms_match(None, gold)


GOLDS = [
    Query(0, 0, ((1, 0, 21.0),)),
    Query(3, 1, ((2, 0, "Butler CC (KS)"), (4, 0, "1990"))),
    Query(0, 0, ((0, 0, "O'Neal"),)),
    Query(1, 4, ((3, 1, "6.50"), (1, 2, "1,234"))),
    Query(2, 3, ((4, 0, 1990),)),
    Query(0, 0, ((3, 2, -1.5),)),
]


@pytest.mark.parametrize("gold", GOLDS)
def test_rendered_gold_parses_back_to_itself(gold: Query) -> None:
    assert logical_forms_match(parse_logical_form(render_sql(gold, TABLE), TABLE), gold)
