"""The per-database grammar for multi-table SQL (decoding/multi_table_grammar.py): it accepts every gold query of the
bundled Spider-layout sample as training tokenises it, and the SQL features of Spider's and BIRD's gold queries;
it refuses names the database does not have, a second statement, writes, and it makes a looping model end."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import llguidance
import pytest

from experiments.config import DataConfig, ModelConfig
from experiments.data.schema import Column, Database, ForeignKey, SchemaTable
from experiments.data.schema_prompt import build_schema_prompt, read_example_values, target_sql
from experiments.data.sources import spider_sample_dir
from experiments.data.spider import load_spider
from experiments.decoding.generate import newline_token_ids
from experiments.decoding.multi_table_grammar import (
    FUNCTIONS,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_FUNCTION_ARGS,
    MAX_JOINS,
    MAX_ON_CONDITIONS,
    MAX_SELECT_ITEMS,
    MAX_SET_OPERATIONS,
    MAX_SPACES,
    MAX_STRING_CHARS,
    RESERVED,
    database_grammar,
    join_limit,
)
from experiments.decoding.token_bytes import llguidance_tokenizer
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import encode_target


def _table(name: str, *columns: str, key: str | None = None) -> SchemaTable:
    return SchemaTable(name=name, columns=tuple(Column(c, "text") for c in columns),
                       primary_key=(key,) if key else ())


# Spider's concert_singer, plus BIRD-style names (spaces, parentheses, quotes) and names SQLite reserves
CONCERTS = Database(
    id="concert_singer",
    tables=(
        _table("stadium", "stadium_id", "location", "name", "capacity", "highest", "lowest", "average",
               key="stadium_id"),
        _table("singer", "singer_id", "name", "country", "song_name", "song_release_year", "age", "is_male",
               key="singer_id"),
        _table("concert", "concert_id", "concert_name", "theme", "stadium_id", "year", key="concert_id"),
        _table("singer_in_concert", "concert_id", "singer_id"),
        _table("frpm", "CDSCode", "School Name", "Free Meal Count (K-12)", "Enrollment (K-12)", 'Say "hi"'),
        _table("order", "group", "x"),
    ),
    foreign_keys=(ForeignKey("concert", "stadium_id", "stadium", "stadium_id"),
                  ForeignKey("singer_in_concert", "singer_id", "singer", "singer_id"),
                  ForeignKey("singer_in_concert", "concert_id", "concert", "concert_id")),
    path=Path("concert_singer.sqlite"),  # never opened: the grammar needs names only
)

JOIN = "FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
PROBES = [  # Spider's SQL features (and BIRD's habits), each a query SQLite accepts on CONCERTS
    "SELECT count(*) FROM singer",
    "SELECT name, country, age FROM singer ORDER BY age DESC",
    "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'",
    "SELECT song_name, song_release_year FROM singer ORDER BY age LIMIT 1",
    "SELECT DISTINCT country FROM singer WHERE age > 20",
    "SELECT country, count(*) FROM singer GROUP BY country",
    "SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer)",  # scalar subquery
    "SELECT location, name FROM stadium WHERE capacity BETWEEN 5000 AND 10000",
    f"SELECT T2.name, count(*) {JOIN} GROUP BY T1.stadium_id",
    f"SELECT T2.name, T2.capacity {JOIN} WHERE T1.year >= 2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1",
    "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)",  # IN (subquery)
    "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30",
    f"SELECT name FROM stadium EXCEPT SELECT T2.name {JOIN} WHERE T1.year = 2014",
    "SELECT name FROM singer WHERE age > 40 UNION ALL SELECT name FROM singer WHERE age < 20",
    "SELECT T2.concert_name, count(*) FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id = "
    "T2.concert_id GROUP BY T2.concert_id HAVING count(*) > (SELECT count(*) FROM singer_in_concert) / 10",
    "SELECT name FROM singer WHERE song_name LIKE '%Hey%'",
    'SELECT name FROM singer WHERE song_name NOT LIKE "%Hey%" AND country = "France"',  # Spider's double quotes
    "SELECT count(DISTINCT country) FROM singer",
    "SELECT avg(age) FROM (SELECT age, count(*) AS cnt FROM singer GROUP BY age)",  # nested in FROM
    "SELECT T.name FROM (SELECT name, capacity FROM stadium) AS T WHERE T.capacity > 10000",
    "SELECT name, CASE WHEN age >= 40 THEN 'senior' WHEN age >= 20 THEN 'adult' ELSE 'young' END FROM singer",
    "SELECT CAST(SUM(CASE WHEN is_male = 'T' THEN 1 ELSE 0 END) AS REAL) * 100 / COUNT(*) FROM singer",
    "SELECT name FROM singer WHERE song_name IS NOT NULL AND country IS NULL",
    "SELECT highest - lowest, (highest + lowest) / 2, capacity % 7, name || ' ' || location FROM stadium",
    "SELECT count(*) FROM singer WHERE age  >  20",  # Spider's spacing
    "SELECT T1.name ,  T2.name FROM singer AS T1 JOIN singer AS T2 ON T1.age = T2.age",
    "select name from singer where country = 'France' order by age asc",
    "SELECT NAME FROM Singer WHERE Age < 30",  # names as SQLite compares them
    "SELECT s.name FROM stadium AS s WHERE EXISTS (SELECT 1 FROM concert AS c WHERE c.stadium_id = s.stadium_id)",
    "SELECT name FROM singer WHERE NOT (age < 20 OR age > 60) AND country != 'France' AND age <> 33",
    "SELECT name FROM singer WHERE country IN ('France', 'Netherlands', 'United States')",
    "SELECT * FROM singer LIMIT 5 OFFSET 10",
    "SELECT T1.* FROM singer T1",
    "SELECT T1.name, count(T2.concert_id) FROM stadium AS T1 LEFT JOIN concert AS T2 ON T1.stadium_id = "
    "T2.stadium_id GROUP BY T1.stadium_id",
    "SELECT singer.name FROM singer, singer_in_concert WHERE singer.singer_id = singer_in_concert.singer_id",
    "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id JOIN concert AS "
    "T3 ON T2.concert_id = T3.concert_id JOIN stadium AS T4 ON T3.stadium_id = T4.stadium_id WHERE T4.capacity > 1",
    "SELECT `Free Meal Count (K-12)` / `Enrollment (K-12)` FROM frpm WHERE `School Name` = 'Alameda High'",
    'SELECT T1."Free Meal Count (K-12)", T1.[Say "hi"], T1."Say ""hi""" FROM frpm AS T1',
    'SELECT "group" FROM "order" WHERE `order`.x = 1',
    "SELECT SUBSTR(song_release_year, 1, 2), STRFTIME('%Y', '2014-01-01'), IIF(age > 30, 1, 0), "
    "ROUND(AVG(age), 2) FROM singer",
    "SELECT name FROM singer WHERE age > -1.5e3 AND age < 99.5 AND name = 'O''Neal'",
    "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert WHERE concert_id IN "
    "(SELECT concert_id FROM concert WHERE stadium_id IN (SELECT stadium_id FROM stadium WHERE capacity > 1)))",
    "SELECT name FROM singer;",
    " SELECT name FROM singer\n",  # SentencePiece's '▁SE' start and the newline inference stops at
    # a join condition with parentheses, CASE or a call once it holds the most predicates (OR stays allowed there)
    "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id AND T1.year > 1 AND "
    "T2.capacity > 1 AND (T1.year = 2 OR T2.capacity = 3) JOIN singer AS T3 ON T3.age = T1.year",
    "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id AND T1.year > 1 AND "
    "T2.capacity > 1 AND CASE WHEN T1.year = 2 OR T2.capacity = 3 THEN 1 ELSE 0 END JOIN singer AS T3 ON T3.age = 1",
    "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id AND T1.year > 1 AND "
    "T2.capacity > 1 AND iif(T1.year = 2 OR T2.capacity = 3, 1, 0) JOIN singer AS T3 ON T3.age = T1.year",
    "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON CASE WHEN T1.year > 2000 THEN T1.stadium_id WHEN "
    "T1.year > 1990 THEN T1.concert_id ELSE 0 END = T2.stadium_id JOIN singer AS T3 ON T3.age = T1.year",
    "SELECT T3.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id AND CASE T1.year WHEN 1 "
    "THEN 1 ELSE 0 END JOIN singer AS T3 ON T3.age = T1.year",
    "SELECT age - -1 FROM singer WHERE age-1 > 2*-1 AND age- -3 < abs(-1) - abs(-2) OR age -  -4 = 0",  # minus, minus
]
REJECTED = [
    "SELECT name FROM singers",  # unknown table
    "SELECT name FROM performer",
    "SELECT T1.name FROM singer AS T1 JOIN performer AS T2 ON T1.singer_id = T2.singer_id",
    "SELECT nationality FROM singer",  # unknown column, bare
    "SELECT count(*) FROM singer WHERE salary > 3",
    "SELECT nam FROM singer",  # a prefix of a name is not a name
    "SELECT T1.nationality FROM singer AS T1",  # unknown column, qualified
    "SELECT singer.salary FROM singer",
    'SELECT T1."nationality" FROM singer AS T1',
    "SELECT performer.name FROM singer",  # unknown table as a qualifier
    "SELECT group FROM frpm",  # reserved names are quoted
    'SELECT x FROM order',
    "SELECT 1; DROP TABLE singer",  # a second statement
    "SELECT name FROM singer; SELECT name FROM singer",
    "SELECT name FROM singer\nSELECT name FROM singer",
    "SELECT name FROM singer;;",
    "INSERT INTO singer VALUES (1)",  # writes and other statements
    "UPDATE singer SET age = 1",
    "DELETE FROM singer",
    "DROP TABLE singer",
    "PRAGMA table_info(singer)",
    "ATTACH DATABASE 'other.db' AS other",
    "CREATE TABLE t (a)",
    "SELECT name FROM singer -- comment",
    "SELECT name FROM singer WHERE age = 1 --1 AND age = 2",  # a minus then a negative number: SQLite's comment
    "SELECT age--1 FROM singer",
    "SELECT load_extension('x')",  # not a function the grammar knows
    "SELECTname FROM singer",  # words run together
    "SELECT name FROMsinger",
    "SELECT name FROM singer WHERE name = 'unterminated",
    "SELECT name FROM singer WHERE",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())  # Mistral's 32k SentencePiece tokenizer, byte fallback


@pytest.fixture(scope="module")
def info(tokenizer) -> llguidance.LLTokenizer:
    return llguidance_tokenizer(tokenizer, tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def concerts(info) -> llguidance.LLMatcher:
    return compiled(info, CONCERTS)


def compiled(info: llguidance.LLTokenizer, database: Database) -> llguidance.LLMatcher:
    matcher = llguidance.LLMatcher(info, database_grammar(database), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return matcher


def accepts_text(matcher: llguidance.LLMatcher, info: llguidance.LLTokenizer, text: str) -> bool:
    """Whether `text` is a complete query of the grammar, after which EOS ends it."""
    matcher = matcher.deep_copy()
    return (matcher.consume_tokens(info.tokenize_str(text)) and matcher.is_accepting()
            and matcher.consume_token(info.eos_token) and matcher.is_stopped())


def accepts_tokens(matcher: llguidance.LLMatcher, ids: list[int]) -> bool:
    """Whether the grammar lets the model write exactly these tokens, the last one ending the row."""
    matcher = matcher.deep_copy()
    return matcher.consume_tokens(ids) and matcher.is_stopped()


@pytest.mark.parametrize("sql", PROBES)
def test_probes_are_sqlite_queries_on_the_probe_database(sql, tmp_path):
    """The probe set is real SQL: SQLite compiles every probe against CONCERTS' tables."""
    conn = sqlite3.connect(tmp_path / "concerts.sqlite")
    for table in CONCERTS.tables:
        columns = ", ".join('"' + c.name.replace('"', '""') + '"' for c in table.columns)
        conn.execute(f'CREATE TABLE "{table.name}" ({columns})')
    conn.execute("EXPLAIN " + sql.strip().rstrip(";"))
    conn.close()


@pytest.mark.parametrize("sql", PROBES)
def test_grammar_accepts_spiders_sql_features(concerts, info, sql):
    assert accepts_text(concerts, info, sql)


@pytest.mark.parametrize("sql", REJECTED)
def test_grammar_rejects_unknown_names_second_statements_and_writes(concerts, info, sql):
    assert not accepts_text(concerts, info, sql)


def test_every_gold_query_of_the_sample_as_training_tokenises_it(tokenizer, info):
    """Each database's grammar accepts each of its gold queries (train, dev, test): the tokens training writes after
    the prompt, then EOS (or a newline and EOS), and the SQL tokenised on its own ('▁SE' 'LECT' ...)."""
    started = time.perf_counter()
    splits = load_spider(spider_sample_dir())
    databases = {db_id: db for split in splits.values() for db_id, db in split.databases.items()}
    matchers = {db_id: compiled(info, database) for db_id, database in databases.items()}
    data = DataConfig()
    eos, newline = tokenizer.eos_token_id, newline_token_ids(tokenizer)[0]
    values: dict[str, dict] = {}
    rejected, checked = [], 0
    for split in splits.values():
        for example in split.examples:
            database, matcher = databases[example.db_id], matchers[example.db_id]
            if example.db_id not in values:
                values[example.db_id] = read_example_values(database, data.example_values)
            prompt = build_schema_prompt(example.question, database, values[example.db_id], data.schema_max_chars,
                                         evidence=example.evidence).text
            sql = target_sql(example.sql)
            trained = encode_target(tokenizer, prompt, sql)
            alone = tokenizer(sql, add_special_tokens=False).input_ids
            checked += 1
            if not (accepts_tokens(matcher, trained + [eos]) and accepts_tokens(matcher, trained + [newline, eos])
                    and accepts_tokens(matcher, alone + [eos])):
                rejected.append((example.db_id, sql))
    assert (len(databases), checked) == (36, 1620)
    assert rejected == []
    assert time.perf_counter() - started < 120  # about 10 s on 2 shared cores


def test_sqlite_does_not_read_the_reserved_words_bare_as_names_and_the_grammar_quotes_them(concerts, info):
    """Each RESERVED word, bare, is an error or something else than the table or column of that name (CURRENT_DATE
    is today's date), so the grammar offers such names quoted only."""
    conn = sqlite3.connect(":memory:")
    for word in sorted(RESERVED):
        conn.execute(f'CREATE TABLE "{word}" ("{word}")')
        conn.execute(f'INSERT INTO "{word}" VALUES (?)', ("the name",))
        misread = 0
        for sql in (f'SELECT "{word}" FROM {word}', f'SELECT {word} FROM "{word}"'):
            try:
                misread += conn.execute(sql).fetchall() != [("the name",)]
            except sqlite3.OperationalError:
                misread += 1
        assert misread, word
    conn.close()
    assert accepts_text(concerts, info, 'SELECT "group", [group], `group` FROM "order"')
    assert accepts_text(concerts, info, 'SELECT "ORDER"."GROUP" FROM `Order`')


def test_table_aliases_follow_one_bounded_rule(concerts, info):
    """A letter and at most two digits: T1 ... T99, t1, a, T; nothing longer (a word could be read as a keyword)."""
    for alias in ("T1", "t2", "T99", "a", "T", "x7"):
        assert accepts_text(concerts, info, f"SELECT {alias}.name FROM singer AS {alias}")
        assert accepts_text(concerts, info, f"SELECT {alias}.name FROM singer {alias}")
    for alias in ("T100", "abc", "T1a", "1T"):
        assert not accepts_text(concerts, info, f"SELECT {alias}.name FROM singer AS {alias}")


def test_grammar_makes_a_looping_model_end_its_query(concerts, info):
    """Each list, literal, gap and nesting stops at its bound; a query at every bound is still accepted."""
    def select(items: int) -> str:
        return "SELECT " + ", ".join(["name"] * items) + " FROM singer"

    assert accepts_text(concerts, info, select(MAX_SELECT_ITEMS))
    assert not accepts_text(concerts, info, select(MAX_SELECT_ITEMS + 1))

    def where(conditions: int, joiner: str = " AND ") -> str:
        return "SELECT name FROM singer WHERE " + joiner.join(["age > 1"] * conditions)

    assert accepts_text(concerts, info, where(MAX_CONDITIONS))
    assert not accepts_text(concerts, info, where(MAX_CONDITIONS + 1))
    assert not accepts_text(concerts, info, where(MAX_CONDITIONS + 1, " OR "))

    def string(chars: int) -> str:
        return f"SELECT name FROM singer WHERE name = '{'x' * chars}'"

    assert accepts_text(concerts, info, string(MAX_STRING_CHARS))
    assert not accepts_text(concerts, info, string(MAX_STRING_CHARS + 1))
    assert accepts_text(concerts, info, "SELECT" + " " * MAX_SPACES + "name FROM singer")
    assert not accepts_text(concerts, info, "SELECT" + " " * (MAX_SPACES + 1) + "name FROM singer")
    assert not accepts_text(concerts, info, "SELECT name FROM singer WHERE age = 1" + "0" * 30)

    def nested(depth: int) -> str:
        return "SELECT " + "(" * depth + "1" + ")" * depth

    assert accepts_text(concerts, info, nested(MAX_DEPTH))
    assert not accepts_text(concerts, info, nested(MAX_DEPTH + 1))

    def joins(count: int) -> str:
        return "SELECT T0.name FROM singer AS T0" + "".join(
            f" JOIN singer AS T{n} ON T{n}.age = T0.age" for n in range(1, count + 1))

    assert join_limit(CONCERTS) == len(CONCERTS.tables) < MAX_JOINS
    many = Database(id="many", tables=tuple(_table(f"t{n}", "a") for n in range(MAX_JOINS + 3)), foreign_keys=(),
                    path=Path("many.sqlite"))
    assert join_limit(many) == MAX_JOINS  # a database of many tables keeps the grammar's own bound
    assert accepts_text(concerts, info, joins(len(CONCERTS.tables)))  # one join per table, self-joins included
    assert not accepts_text(concerts, info, joins(len(CONCERTS.tables) + 1))

    def on(conditions: int, joiner: str) -> str:  # JOIN's ON has one predicate; then `conditions - 1` more
        return "SELECT T1.theme " + JOIN + "".join(f"{joiner}T2.lowest = {n}" for n in range(1, conditions))

    assert accepts_text(concerts, info, on(MAX_ON_CONDITIONS, " OR "))
    assert accepts_text(concerts, info, on(MAX_ON_CONDITIONS, " AND "))
    assert not accepts_text(concerts, info, on(MAX_ON_CONDITIONS + 1, " OR "))
    assert not accepts_text(concerts, info, on(MAX_ON_CONDITIONS + 1, " AND "))

    def compound(operations: int) -> str:
        return " UNION ".join(["SELECT name FROM singer"] * (operations + 1))

    assert accepts_text(concerts, info, compound(MAX_SET_OPERATIONS))
    assert not accepts_text(concerts, info, compound(MAX_SET_OPERATIONS + 1))


def test_each_function_takes_the_number_of_arguments_sqlite_accepts(concerts, info):
    """`abs(a, b)` or `length(x, y)` is no SQL SQLite runs ("wrong number of arguments"): the grammar offers each
    function with the counts SQLite accepts, up to MAX_FUNCTION_ARGS; `*` only in count, DISTINCT before one."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE singer (name, age)")

    def runs(sql: str) -> bool:
        try:
            conn.execute(sql)
        except sqlite3.OperationalError:
            return False
        return True

    for function in FUNCTIONS:
        for count in range(MAX_FUNCTION_ARGS + 2):
            sql = f"SELECT {function}({', '.join(['age'] * count)}) FROM singer"
            assert accepts_text(concerts, info, sql) == (runs(sql) and count <= MAX_FUNCTION_ARGS), sql
    for sql, accepted in [("SELECT count(*) FROM singer", True), ("SELECT count(DISTINCT age) FROM singer", True),
                          ("SELECT sum(*) FROM singer", False), ("SELECT abs(*) FROM singer", False)]:
        assert runs(sql) == accepted
        assert accepts_text(concerts, info, sql) == accepted, sql
    conn.close()


def test_grammar_refuses_a_database_without_columns():
    with pytest.raises(ValueError, match="no tables or no columns"):
        database_grammar(Database(id="empty", tables=(), foreign_keys=(), path=Path("empty.sqlite")))
