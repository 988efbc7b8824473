"""The scope check beside the multi-table grammar (decoding/sql_scope.py): it never refuses the start of a query that
SQLite runs (every prefix of every gold query of the sample and of the probe set, character by character), and it
refuses, as early as the text shows it, a column of a table the query does not read or of the wrong alias."""

from __future__ import annotations

import random
import sqlite3

import pytest
from test_multi_table_grammar import CONCERTS, PROBES

from experiments.data.sources import spider_sample_dir
from experiments.data.spider import load_spider
from experiments.decoding.multi_table_grammar import MAX_ON_CONDITIONS
from experiments.decoding.sql_scope import ScopeReading, ScopeSchema, scope_violation

JOIN = "FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
OWES_T2 = "SELECT T2.name FROM concert AS T1 JOIN singer_in_concert AS T3 ON T1.concert_id = T3.concert_id"


@pytest.fixture(scope="module")
def concerts() -> ScopeSchema:
    return ScopeSchema(CONCERTS)


def assert_refused_where_sqlite_fails(schema: ScopeSchema, sql: str, sqlite_error: str, first_refused: str | None,
                                      reason: str, path) -> None:
    """SQLite refuses `sql` (its error matching `sqlite_error`) on an empty database of the schema's tables, and the
    check first refuses it at `first_refused` (None: only the whole query), giving a reason that holds `reason`."""
    conn = concerts_database(path)
    with pytest.raises(sqlite3.OperationalError, match=sqlite_error):
        conn.execute(sql)
    conn.close()
    refused = first_refused_prefix(schema, sql)
    assert refused == (first_refused or sql)
    assert reason in scope_violation(schema, refused, complete=refused == sql)


def first_refused_prefix(schema: ScopeSchema, sql: str) -> str | None:
    """The first prefix of `sql` (by character) the check refuses, the whole query read as complete last."""
    for cut in range(1, len(sql) + 1):
        if scope_violation(schema, sql[:cut]) is not None:
            return sql[:cut]
    return sql if scope_violation(schema, sql, complete=True) is not None else None


def test_every_prefix_of_every_gold_query_of_the_sample_is_in_scope():
    splits = load_spider(spider_sample_dir())
    schemas = {db_id: ScopeSchema(db) for split in splits.values() for db_id, db in split.databases.items()}
    refused = [(example.db_id, example.sql, prefix) for split in splits.values() for example in split.examples
               if (prefix := first_refused_prefix(schemas[example.db_id], example.sql)) is not None]
    assert sum(len(split.examples) for split in splits.values()) == 1620
    assert refused == []


@pytest.mark.parametrize("sql", PROBES)
def test_every_prefix_of_the_probe_queries_is_in_scope(concerts, sql):
    """Spider's SQL features: subqueries in FROM (their columns unchecked), correlated EXISTS, set operations, quoted
    and reserved names, table names as qualifiers, column aliases."""
    assert first_refused_prefix(concerts, sql) is None


SCOPE_ERRORS = [  # (query, the first prefix refused, why): each one SQLite refuses with "no such column" or the like
    ("SELECT b.song_name FROM concert AS a JOIN stadium AS b ON a.stadium_id = b.stadium_id",
     "SELECT b.song_name FROM concert AS a JOIN stadium AS b", "'b' has no column 'song_name'"),  # the alias
    # a subquery standing for a value returns one column (SQLite: "sub-select returns 2 columns - expected 1")
    ("SELECT name FROM singer WHERE age IN (SELECT 2022, 2023)", "SELECT name FROM singer WHERE age IN (SELECT 2022,",
     "one column"),
    ("SELECT name, (SELECT year, theme FROM concert) FROM singer", "SELECT name, (SELECT year,", "one column"),
    # numbered aliases (T1, T2, ... as Spider and BIRD name them): one source may come between, not a second
    ("SELECT T2.song_name FROM concert AS T1 JOIN stadium AS T3 ON T1.stadium_id = T3.stadium_id JOIN stadium AS T4",
     "SELECT T2.song_name FROM concert AS T1 JOIN stadium AS T3 ON T1.stadium_id = T3.stadium_id JOIN st",
     "owes the select list 't2'"),
    ("SELECT T1.name FROM concert AS T2 JOIN stadium AS T3 ON T2.stadium_id = T3.stadium_id",
     "SELECT T1.name FROM concert AS T2 JOIN stadium AS T3", "leaves 't1'"),  # stadium has a name: T3 is refused
    # ...and the source that owes the alias takes no other alias, nor none (a model otherwise joins on and on)
    (f"{OWES_T2} JOIN singer AS s ON T3.singer_id = s.singer_id", f"{OWES_T2} JOIN singer AS s", "alias 's' leaves"),
    (f"{OWES_T2} JOIN singer ON T3.singer_id = singer.singer_id", f"{OWES_T2} JOIN singer ON",
     "singer takes no alias"),  # at `ON`: no alias is two letters long
    # ...and a bare select-list column no source has comes from the next source after one between
    ("SELECT name FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id = T2.concert_id JOIN concert AS "
     "T3 ON T2.concert_id = T3.concert_id", "SELECT name FROM singer_in_concert AS T1 JOIN concert AS T2 ON "
     "T1.concert_id = T2.concert_id JOIN co", "the next source must have 'name'"),
    # a bare select-list column is ambiguous once two tables read have it, whatever the FROM goes on to join or
    # alias: refused at the second table's name, once every table it may become has the column (`s` may still
    # become singer_in_concert, which has no name)
    ("SELECT name FROM singer AS T1 JOIN stadium AS T2 ON T1.age = T2.capacity",
     "SELECT name FROM singer AS T1 JOIN st", "column 'name' would be ambiguous"),
    ("SELECT name FROM singer JOIN stadium ON singer.age = stadium.capacity", "SELECT name FROM singer JOIN st",
     "column 'name' would be ambiguous"),
    ("SELECT name FROM singer, singer_in_concert AS a, stadium", "SELECT name FROM singer, singer_in_concert AS a, st",
     "column 'name' would be ambiguous"),
    # where an operand is expected, a word that may become no keyword starting one must become a name in scope
    ("SELECT name FROM singer ORDER BY max(b.age, 1)", "SELECT name FROM singer ORDER BY max(b",
     "no table in scope has a column starting 'b'"),  # not BETWEEN or BY after '('
    ("SELECT name FROM singer WHERE age = ending", "SELECT name FROM singer WHERE age = en",
     "no table in scope has a column starting 'en'"),  # not END after '='

    (f"SELECT T2.name {JOIN} WHERE T2.theme = 'x'", f"SELECT T2.name {JOIN} WHERE T2.t", "no column starting 't'"),
    ("SELECT name FROM concert WHERE year > 2000", "SELECT name FROM concert WH",
     "no table in scope has a column 'name'"),  # a select-list column of no table read, known when FROM ends
    ("SELECT T1.name FROM singer AS T1 WHERE age > (SELECT avg(T3.age) FROM concert)",
     "SELECT T1.name FROM singer AS T1 WHERE age > (SELECT avg(T3.age) FROM concert)", "'t3' is not a table"),
    ("SELECT T3.name FROM singer AS T1 WHERE age > 1", "SELECT T3.name FROM singer AS T1 WH",
     "'t3' is not a table or alias"),
    # a table behind an alias is hidden: one the select list names keeps its name (refused at the alias)
    ("SELECT singer.name FROM singer AS T1", "SELECT singer.name FROM singer A", "an alias would hide it"),
    ("SELECT singer.name FROM singer s", "SELECT singer.name FROM singer s", "an alias would hide it"),
    ("SELECT singer.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id",
     "SELECT singer.name FROM singer_in_concert AS T1 JOIN singer A", "'singer': an alias would hide it"),
    ("SELECT theme FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
     "SELECT theme FROM singer WH", "'theme'"),
    (f"SELECT count(*) {JOIN} WHERE capacity > 1 AND T1.location = 'x'",
     f"SELECT count(*) {JOIN} WHERE capacity > 1 AND T1.l", "'t1' has no column starting 'l'"),
    (f"SELECT count(*) {JOIN} ORDER BY T2.year", f"SELECT count(*) {JOIN} ORDER BY T2.y", "starting 'y'"),
    # a double-quoted word before '.' names a table or alias (SQLite never reads it as a string there)
    (f'SELECT T1.year {JOIN} WHERE "T2".song_name = 1', f'SELECT T1.year {JOIN} WHERE "T2".so',
     "'t2' has no column starting 'so'"),
    # a bare column still being written is refused once every column it may become is ambiguous
    ("SELECT T1.age FROM singer AS T1 JOIN stadium AS T2 ON name = 'x'",
     "SELECT T1.age FROM singer AS T1 JOIN stadium AS T2 ON na", "every column starting 'na' is ambiguous"),
    # each core of a set operation has its own FROM
    ("SELECT name FROM stadium UNION SELECT name FROM concert", None, "no table in scope has a column 'name'"),
]


@pytest.mark.parametrize("sql,first_refused,reason", SCOPE_ERRORS)
def test_a_column_out_of_scope_is_refused_where_the_text_first_shows_it(concerts, sql, first_refused, reason,
                                                                      tmp_path):
    assert_refused_where_sqlite_fails(concerts, sql, "no such column|ambiguous|sub-select returns", first_refused,
                                      reason, tmp_path / "concerts.sqlite")


SET_OPERATION_WIDTHS = [  # (query, the first prefix refused): cores of a set operation with unequal select lists
    ("SELECT name, age FROM singer INTERSECT SELECT name FROM singer",
     "SELECT name, age FROM singer INTERSECT SELECT name FR"),  # fewer: at the word that can only become FROM
    ("SELECT name FROM singer UNION SELECT name, age FROM singer", "SELECT name FROM singer UNION SELECT name,"),
    ("SELECT T2.name, count(*) FROM singer AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id EXCEPT SELECT "
     "T2.name FROM singer AS T2", "SELECT T2.name, count(*) FROM singer AS T1 JOIN singer AS T2 ON T1.singer_id = "
     "T2.singer_id EXCEPT SELECT T2.name FR"),
    ("SELECT 1, 2 UNION SELECT 3", None),  # a core without FROM: where it ends
]


@pytest.mark.parametrize("sql,first_refused", SET_OPERATION_WIDTHS)
def test_a_set_operation_of_unequal_select_lists_is_refused_where_the_text_first_shows_it(concerts, sql,
                                                                                         first_refused, tmp_path):
    assert_refused_where_sqlite_fails(concerts, sql, "do not have the same number of result columns", first_refused,
                                      "result columns", tmp_path / "concerts.sqlite")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM singer UNION SELECT name FROM singer",  # a star's columns are not counted
    "SELECT name FROM singer UNION SELECT T1.* FROM singer AS T1",
    "SELECT name, age * 2 FROM singer EXCEPT SELECT name, max(age, 3) FROM singer",  # `*` and commas inside items
    "SELECT name FROM singer WHERE age IN (SELECT age FROM singer UNION SELECT capacity FROM stadium)",
    "SELECT frpm.CDSCode FROM frpm UNION SELECT name FROM singer",
])
def test_a_set_operation_of_equal_select_lists_passes(concerts, sql):
    assert first_refused_prefix(concerts, sql) is None


def test_a_query_repeating_itself_is_refused_where_the_repeat_is_complete(concerts, tmp_path):
    """A model that starts to loop writes the same span again and again to the token cap (`OR X OR X OR ...`, a
    subquery nested in a copy of itself); SQLite would run it, but no gold query of the sample repeats even one token
    span back to back (test_every_prefix_of_every_gold_query_of_the_sample_is_in_scope), so the check refuses the
    last token of a span of REPEAT_TOKENS or more that repeats the span just before it."""
    condition = "T1.singer_id = T2.stadium_id"
    looping = f"SELECT T1.name FROM singer AS T1 JOIN stadium AS T2 ON {condition} OR {condition} OR {condition}"
    conn = concerts_database(tmp_path / "concerts.sqlite")
    conn.execute(looping)
    conn.close()
    refused = f"SELECT T1.name FROM singer AS T1 JOIN stadium AS T2 ON {condition} OR {condition} OR"
    assert first_refused_prefix(concerts, looping) == refused  # `X OR` twice
    assert "repeat" in scope_violation(concerts, refused)
    nested = "SELECT name FROM singer WHERE age = (SELECT max(age) FROM singer WHERE age = (SELECT max(age)"
    assert first_refused_prefix(concerts, nested + " FROM singer))") == nested  # `FROM ... max(age)` twice
    assert first_refused_prefix(concerts, "SELECT name, name, age, age FROM singer") is None  # short repeats pass


def test_a_double_quoted_qualifier_picks_its_table(concerts, tmp_path):
    """`"T2".name` is stadium's name, though singer has one too: not an ambiguous bare `name`."""
    sql = 'SELECT "T1".name FROM singer AS T1 JOIN stadium AS T2 ON T1.singer_id = T2.stadium_id WHERE "T2".name = 1'
    conn = concerts_database(tmp_path / "concerts.sqlite")
    conn.execute(sql)
    conn.close()
    assert first_refused_prefix(concerts, sql) is None


def test_a_trailing_alias_already_referred_to_is_checked_as_written(concerts):
    """`AS T2` after `SELECT T2.song_name` stops the model at the alias, not one word later; an alias not yet
    referred to may still grow (T2 -> T21)."""
    select = "SELECT b.song_name FROM concert AS a JOIN stadium AS "
    assert scope_violation(concerts, select + "b") is not None
    assert scope_violation(concerts, select + "c") is None
    assert scope_violation(concerts, "SELECT T2.song_name FROM singer AS T2") is None
    numbered = "SELECT T2.song_name FROM concert AS T1 JOIN stadium AS T3 ON T1.stadium_id = T3.stadium_id JOIN " \
               "singer AS "
    assert scope_violation(concerts, numbered + "T") is None  # may become T2
    assert scope_violation(concerts, numbered + "T2") is None
    assert scope_violation(concerts, numbered + "T4") is not None  # leaves T2 unbound
    assert scope_violation(concerts, "SELECT b.song_name FROM singer A") is None  # may become AS
    eleven = "SELECT T1.name, T11.year FROM singer AS T1 JOIN concert AS T1"
    assert scope_violation(concerts, eleven) is None  # may still become T11
    assert scope_violation(concerts, eleven + " ") is not None  # T1 bound twice


def test_numbered_aliases_used_in_the_select_list_are_bound_within_one_source(concerts):
    """The one convention the check holds a query to beyond what SQLite refuses: an alias named T1, T2, ... that
    the select list used is bound by the next source once FROM has numbered one past it (every gold query of the
    sample binds them in order); one source may come between, the table a join goes through."""
    sql = "SELECT T1.name FROM singer_in_concert AS T2 JOIN singer AS T1 ON T2.singer_id = T1.singer_id"
    conn = concerts_database(":memory:")
    conn.execute(sql)  # SQLite runs it, and so does the check (one source between)
    assert first_refused_prefix(concerts, sql) is None
    two_between = "SELECT T1.name FROM concert AS T2 JOIN singer_in_concert AS T3 ON T2.concert_id = T3.concert_id " \
                  "JOIN singer AS T1 ON T3.singer_id = T1.singer_id"
    conn.execute(two_between)  # SQLite runs it too
    assert first_refused_prefix(concerts, two_between) == "SELECT T1.name FROM concert AS T2 JOIN singer_"
    assert scope_violation(concerts, "SELECT T1.name FROM concert AS T2 JOIN s") is None  # may become singer
    assert first_refused_prefix(concerts, "SELECT T1.name FROM concert AS T2 LEFT OUTER JOIN singer AS T1") is None
    assert first_refused_prefix(concerts, two_between.replace("T1", "T01").replace("T2", "T02")) is None  # not T1
    unnumbered = two_between.replace("T1", "x")
    assert first_refused_prefix(concerts, unnumbered) is None


def test_a_word_still_being_written_may_become_a_keyword_a_qualifier_or_a_longer_name(concerts):
    assert scope_violation(concerts, f"SELECT T2.name {JOIN} WHERE T2.cap") is None  # -> capacity
    assert scope_violation(concerts, f"SELECT T2.name {JOIN} WHERE T") is None  # -> T1.
    assert scope_violation(concerts, f"SELECT T2.name {JOIN} WHERE year > 1 ORD") is None  # -> ORDER
    assert scope_violation(concerts, "SELECT name FROM sing") is None  # -> singer
    assert scope_violation(concerts, "SELECT x FROM") is None  # -> "order".x, bound later
    assert scope_violation(concerts, "SELECT x FROM stadium") is None  # a JOIN may still bring x
    assert scope_violation(concerts, "SELECT x FROM stadium", complete=True) is not None


def test_correlated_subqueries_see_the_enclosing_querys_tables(concerts):
    assert scope_violation(concerts, "SELECT name FROM singer AS T1 WHERE EXISTS (SELECT 1 FROM concert WHERE "
                                     "T1.age > 1 AND age > 1)", complete=True) is None
    assert scope_violation(concerts, "SELECT name FROM singer WHERE age > (SELECT avg(capacity) FROM stadium "
                                     "WHERE country = 'x')", complete=True) is None


@pytest.mark.parametrize("text", [
    "SELECT name FROM concert GR",  # -> GROUP: concert has no name, and a JOIN could still bring one
    "SELECT name FROM concert OR",  # -> ORDER (OR cannot stand after a FROM source)
    "SELECT name FROM concert WH",
    "SELECT name FROM concert EX",
])
def test_a_clause_word_still_being_written_ends_the_from_clause_at_once(concerts, text):
    """A model that writes ` GR` 'OUP' must be stopped at ` GR`, while a JOIN can still bring the missing table:
    one token later nothing but BY could follow."""
    assert scope_violation(concerts, text) is not None
    assert scope_violation(concerts, text[:-1]) is None  # one letter may be an alias (or JOIN, ON, ...)


def test_after_a_join_conditions_operand_a_clause_word_ends_the_from_clause_at_its_first_letter(concerts):
    """After a complete operand of ON no alias can follow: ` W` can only be WHERE, and ` O` only ORDER once the
    condition holds the grammar's most predicates (MAX_ON_CONDITIONS; an AND or OR could otherwise follow). Else
    the model is let into a word every continuation of which is refused, and the row is left to the grammar."""
    for text in (f"SELECT T3.name {JOIN} GR", f"SELECT T3.name {JOIN} W", f"SELECT T3.name {JOIN} U"):
        assert "'t3' is not a table" in scope_violation(concerts, text)
    for text in (f"SELECT T3.name {JOIN} O", f"SELECT T3.name {JOIN} J", f"SELECT T3.name {JOIN} L"):
        assert scope_violation(concerts, text) is None  # OR, a JOIN, LEFT JOIN or LIKE may follow

    def on(predicates: int, last: str = "T2.capacity > 1") -> str:
        return f"SELECT T3.name {JOIN}" + " AND T2.capacity > 1" * (predicates - 2) + f" OR {last}"

    assert scope_violation(concerts, on(MAX_ON_CONDITIONS - 1) + " O") is None
    assert "'t3' is not a table" in scope_violation(concerts, on(MAX_ON_CONDITIONS) + " O")
    # BETWEEN's AND and a CASE's words start no predicate
    assert scope_violation(concerts, on(MAX_ON_CONDITIONS - 1, "T2.capacity BETWEEN 1 AND 2") + " O") is None
    case = "CASE WHEN T2.capacity > 1 AND T2.lowest > 1 OR T2.highest > 1 THEN 1 END = 1"
    assert scope_violation(concerts, on(MAX_ON_CONDITIONS - 1, case) + " O") is None
    assert "'t3' is not a table" in scope_violation(concerts, on(MAX_ON_CONDITIONS, case) + " O")


def test_a_word_that_may_be_another_keyword_is_not_read_as_a_clause(concerts):
    assert scope_violation(concerts, "SELECT name FROM concert IN") is None  # INNER JOIN or INTERSECT
    assert scope_violation(concerts, "SELECT name FROM concert LE") is None  # LEFT JOIN
    assert scope_violation(concerts, f"SELECT T3.name {JOIN} AN") is None  # AND
    assert scope_violation(concerts, "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON GR") is None  # an operand


@pytest.mark.parametrize("sql", [
    "SELECT T1.name FROM singer AS T1 JOIN stadium AS T2 ON T1.age = max(T2.lowest, T2.highest)",
    "SELECT singer.name FROM singer JOIN singer_in_concert ON singer.singer_id IN (singer_in_concert.singer_id, "
    "singer_in_concert.concert_id)",
])
def test_a_comma_between_arguments_in_a_join_condition_is_no_comma_join(concerts, sql, tmp_path):
    conn = concerts_database(tmp_path / "concerts.sqlite")
    conn.execute(sql)
    conn.close()
    assert first_refused_prefix(concerts, sql) is None


def test_an_alias_bound_twice_in_one_from_is_refused_at_the_alias(concerts):
    """SQLite then calls every T1.x ambiguous; a self-join with two aliases stays allowed."""
    assert scope_violation(concerts, "SELECT count(*) FROM singer AS T1 JOIN singer_in_concert AS T1") is not None
    assert scope_violation(concerts, "SELECT count(*) FROM singer AS T1 JOIN singer AS T2 ON T1.age = T2.age",
                           complete=True) is None


AGGREGATE_MISUSE = [  # (query, the first prefix refused): each one SQLite refuses
    ("SELECT name FROM singer WHERE count(*) > 1", "SELECT name FROM singer WHERE count("),
    ("SELECT name FROM singer WHERE age = max(age)", "SELECT name FROM singer WHERE age = max(age)"),
    ("SELECT country FROM singer GROUP BY avg(age)", "SELECT country FROM singer GROUP BY avg"),  # no name but avg
    (f"SELECT T1.theme {JOIN} AND sum(T2.capacity) > 1", f"SELECT T1.theme {JOIN} AND sum"),
    ("SELECT name FROM singer WHERE age > 1 AND min(age) < 30", "SELECT name FROM singer WHERE age > 1 AND min(age)"),
    # in ORDER BY of a query that does not aggregate (what a small model wrote for "the ... with the most ...")
    ("SELECT name FROM singer ORDER BY count(*) DESC LIMIT 1",  # `count` may still become `country`
     "SELECT name FROM singer ORDER BY count("),
    ("SELECT name FROM stadium ORDER BY count   (*)", "SELECT name FROM stadium ORDER BY count "),
    ("SELECT name FROM singer ORDER BY max(sum(age)) DESC", "SELECT name FROM singer ORDER BY max(sum"),
    ("SELECT name FROM singer ORDER BY max(age) DESC", "SELECT name FROM singer ORDER BY max(age)"),
    # in a subquery, over the enclosing query's columns only: the enclosing query's aggregate, in its WHERE / ON
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM concert)",
     "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM concert)"),
    ("SELECT T1.name FROM singer AS T1 WHERE T1.age > (SELECT max(T1.age) FROM concert AS T2 WHERE T2.year > 1)",
     "SELECT T1.name FROM singer AS T1 WHERE T1.age > (SELECT max(T1.age) FROM concert AS T2 WH"),
    (f"SELECT T1.theme {JOIN} AND T2.capacity > (SELECT sum(T2.capacity) FROM singer)",
     f"SELECT T1.theme {JOIN} AND T2.capacity > (SELECT sum(T2.capacity) FROM singer)"),
]


def concerts_database(path) -> sqlite3.Connection:
    """An empty SQLite database of CONCERTS' tables and columns."""
    conn = sqlite3.connect(path)
    for table in CONCERTS.tables:
        columns = ", ".join('"' + c.name.replace('"', '""') + '"' for c in table.columns)
        conn.execute(f'CREATE TABLE "{table.name}" ({columns})')
    return conn


@pytest.mark.parametrize("sql,first_refused", AGGREGATE_MISUSE)
def test_an_aggregate_where_sqlite_refuses_one_is_refused_as_soon_as_it_is_certain(concerts, sql, first_refused,
                                                                                  tmp_path):
    assert first_refused is not None
    assert_refused_where_sqlite_fails(concerts, sql, "misuse of aggregate|not allowed in the GROUP BY", first_refused,
                                      "aggregate", tmp_path / "concerts.sqlite")


AGGREGATES_ALLOWED = [
    "SELECT name FROM singer WHERE max(age, 30) > 40",  # MIN and MAX of two arguments are scalar functions
    "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)",  # the subquery's own select list
    "SELECT country FROM singer GROUP BY country HAVING count(*) > 1 ORDER BY max(age)",
    "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert GROUP BY singer_id "
    "HAVING count(*) > 1)",
    "SELECT country FROM singer GROUP BY country ORDER BY count(*) DESC LIMIT 1",
    "SELECT count(*) FROM singer ORDER BY max(age)",  # the select list aggregates
    "SELECT name FROM singer ORDER BY max(age, song_release_year)",
    "SELECT name FROM singer ORDER BY (SELECT count(*) FROM concert)",
    "SELECT name FROM singer UNION SELECT name FROM stadium ORDER BY name",
    "SELECT name FROM singer WHERE age > (SELECT avg(age + year) FROM concert)",  # one of its own columns
    "SELECT name, (SELECT avg(age) FROM concert) FROM singer",  # the enclosing select list may aggregate
    "SELECT name FROM singer WHERE age > (SELECT max(age, year) FROM concert)",
    "SELECT name FROM singer WHERE age > (SELECT count(*) FROM concert)",
    "SELECT country FROM singer GROUP BY country HAVING avg(age) > (SELECT avg(age) FROM concert)",
    # an aggregate over the outer query's column in a select-list subquery makes the outer query aggregate
    "SELECT T1.name, (SELECT max(T1.age) FROM concert AS T2) FROM singer AS T1 ORDER BY count(*) DESC",
    "SELECT (SELECT max(age) FROM concert) FROM singer ORDER BY (SELECT min(age) FROM concert)",
    # a subquery in the aggregate's arguments refers to the subquery's own table
    "SELECT name FROM singer WHERE age > (SELECT max(age + (SELECT count(*) FROM stadium WHERE capacity = year)) "
    "FROM concert)",
    # SQLite never computes an EXISTS subquery's select list or ORDER BY, and may drop a subquery's ORDER BY
    "SELECT name FROM singer AS T1 WHERE EXISTS (SELECT count(T1.age) FROM concert AS T2 WHERE T2.year = 1)",
    "SELECT name FROM singer WHERE NOT EXISTS (SELECT 1 FROM concert ORDER BY count(*))",
    "SELECT T.name FROM (SELECT name FROM singer ORDER BY avg(age)) AS T JOIN stadium AS S ON T.name = S.name",
]


@pytest.mark.parametrize("sql", AGGREGATES_ALLOWED)
def test_aggregates_where_sqlite_allows_them_pass(concerts, sql, tmp_path):
    conn = concerts_database(tmp_path / "concerts.sqlite")
    conn.execute(sql)
    conn.close()
    assert first_refused_prefix(concerts, sql) is None


CONTINUATIONS = ["", " ", "e", "_id", ".", ". n", "(", ")", ",", "'", "''", " T1.", " T9.x", " WHERE", " GR", " AS T1",
                 " JOIN singer AS T2 ON", " (SELECT", " count(", ";"]


def chunks(sql: str, seed: int) -> list[str]:
    """`sql` cut into pieces of 1-6 characters, as a tokenizer might write it (seeded)."""
    rng, pieces, at = random.Random(seed), [], 0
    while at < len(sql):
        size = rng.randint(1, 6)
        pieces.append(sql[at:at + size])
        at += size
    return pieces


def readings_agree(schema: ScopeSchema, sql: str, seed: int) -> list[tuple[str, bool, str | None, str | None]]:
    """Follows `sql` piece by piece as decoding does (a reading per step, carried on from the last) and returns
    every check where the reading's verdict differs from a full read: the next piece, and continuations that bind,
    qualify, close or end, each also as the query's end."""
    differ, reading, text = [], ScopeReading(schema, ""), ""
    for piece in [*chunks(sql, seed), ""]:
        for extra in {piece, *CONTINUATIONS}:
            for complete in (False, True):
                got, want = reading.violation(text + extra, complete), scope_violation(schema, text + extra, complete)
                if got != want:
                    differ.append((text + extra, complete, got, want))
        text += piece
        reading = reading.extended(text)
    return differ


def test_a_reading_carried_on_step_by_step_gives_what_a_full_read_gives():
    """The scope check reads only a row's unsettled tail for each candidate token (ScopeReading): its verdicts are
    exactly the full reader's, on the gold queries of the sample's test split, the probes and the refused queries,
    each cut into pieces two ways, for every piece and continuations that bind, qualify, close or end."""
    splits = load_spider(spider_sample_dir())
    schemas = {db_id: ScopeSchema(db) for db_id, db in splits["test"].databases.items()}
    cases = [(schemas[example.db_id], example.sql) for example in splits["test"].examples]
    concerts = ScopeSchema(CONCERTS)
    cases += [(concerts, sql) for sql in [*PROBES, *(case[0] for case in SCOPE_ERRORS),
                                         *(case[0] for case in AGGREGATE_MISUSE), *AGGREGATES_ALLOWED]]
    differ = [found for schema, sql in cases for seed in range(2) for found in readings_agree(schema, sql, seed)]
    assert differ == []


def test_a_reading_of_another_text_reads_afresh(concerts):
    reading = ScopeReading(concerts, "SELECT T2.name FROM stadium AS T2 WHERE T2.capacity > 1 AND ")
    assert reading.violation("SELECT name FROM concert WHERE") == "no table in scope has a column 'name'"
    other = "SELECT name FROM stadium WHERE"
    assert reading.extended(other).violation(other + " capacity > 1", complete=True) is None


@pytest.mark.parametrize("sql", [
    "SELECT T.name FROM (SELECT name, age FROM singer) AS T",  # a derived table
    "SELECT name FROM singer AS S WHERE EXISTS (SELECT singer_id, concert_id FROM singer_in_concert)",
    "SELECT name FROM singer WHERE age IN (SELECT max(age, 30) FROM singer)",  # a comma inside a call
    "SELECT name FROM singer WHERE age IN (SELECT age FROM singer GROUP BY country, age ORDER BY age, country)",
])
def test_only_a_subquery_standing_for_a_value_is_held_to_one_column(concerts, sql):
    conn = concerts_database(":memory:")
    conn.execute(sql)
    assert first_refused_prefix(concerts, sql) is None
