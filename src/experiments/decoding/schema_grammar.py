"""Which grammar a prompt's schema gets, what its compiled form is cached by, and the self-check question of each
kind: one place that tells WikiSQL's one table from a multi-table database, so `SchemaConstraint` stays one class.

A WikiSQL `Table` gets `sql_grammar(table)` (decoding/grammar.py), keyed by its header and string bound (tables that
share a header share a grammar). A Spider or BIRD `Database` gets `database_grammar(database)`
(decoding/multi_table_grammar.py), keyed by its id and its table and column names, exactly what the grammar is built
from: the same database read twice (each prompt carries its own copy) compiles once, and two releases' databases
of one id but different tables never share a grammar.

`check_case(kind)` is the query the constraint's self-check must let a tokenizer write: rendered, prompted and
tokenised as training renders, prompts and tokenises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from experiments.data.prompt import TABLE_NAME, build_prompt, render_sql
from experiments.data.records import Query, Table
from experiments.data.schema import Column, Database, ForeignKey, SchemaTable
from experiments.data.schema_prompt import build_schema_prompt, target_sql
from experiments.decoding.grammar import max_string_chars, sql_grammar
from experiments.decoding.multi_table_grammar import database_grammar

Schema = Table | Database


class SchemaKind(str, Enum):
    table = "table"  # WikiSQL: one table per question
    database = "database"  # Spider, BIRD: one database per question


# WikiSQL's self-check: quotes in a name and a value, a number, an aggregation, two conditions
CHECK_TABLE = Table(id="self-check", header=("Player", "No.", "School/Club Team"), types=("text", "real", "text"),
                    rows=(("O'Neal Jones", 7, "Kansas"), ("Antonio Lang", 21, "Duke")))
CHECK_QUERY = Query(sel=1, agg=3, conds=((0, 0, "O'Neal Jones"), (1, 1, 6.5)))
# The multi-table self-check: two tables joined by a foreign key, names that need quotes (a space), and a query with
# a join, aliases, a quoted qualified column, a string holding a quote, a number, an aggregate and GROUP BY
CHECK_DATABASE = Database(
    id="self-check",
    tables=(SchemaTable("school", (Column("school_id", "number"), Column("name", "text")), ("school_id",)),
            SchemaTable("Player Stats", (Column("player_id", "number"), Column("Player Name", "text"),
                                         Column("school_id", "number"), Column("points", "number")), ("player_id",))),
    foreign_keys=(ForeignKey("Player Stats", "school_id", "school", "school_id"),),
    path=Path("self-check.sqlite"),  # never opened: the prompt shows no values, the grammar needs names only
)
CHECK_QUESTION = "For each school, how many players named O'Neal Jones scored over 6.5 points?"
CHECK_SQL = ('SELECT T2.name, count(*) FROM "Player Stats" AS T1 JOIN school AS T2 ON T1.school_id = T2.school_id '
             "WHERE T1.\"Player Name\" = 'O''Neal Jones' AND T1.points > 6.5 GROUP BY T2.name")


@dataclass(frozen=True)
class CheckCase:
    """A schema, a prompt about it and the target SQL its grammar must accept, as training would see them."""

    schema: Schema
    prompt: str
    sql: str


def schema_kind(schema: Schema) -> SchemaKind:
    if isinstance(schema, Database):
        return SchemaKind.database
    if isinstance(schema, Table):
        return SchemaKind.table
    raise TypeError(f"a grammar needs a WikiSQL Table or a multi-table Database, not {type(schema).__name__}")


def describe_schema(schema: Schema) -> str:
    """How an error message names the schema: `table '1-10015132-11'` or `database 'concert_singer'`."""
    return f"{schema_kind(schema).value} {schema.id!r}"


def grammar_for(schema: Schema, table_name: str = TABLE_NAME) -> str:
    """The Lark grammar of the SQL a question on `schema` may be answered with (`table_name`: WikiSQL's)."""
    if schema_kind(schema) is SchemaKind.database:
        return database_grammar(schema)
    return sql_grammar(schema, table_name)


def grammar_key(schema: Schema) -> tuple:
    """What the schema's grammar is made of, so equal keys mean equal grammars (see the module docstring)."""
    if schema_kind(schema) is SchemaKind.database:
        names = tuple((table.name, tuple(column.name for column in table.columns)) for table in schema.tables)
        return SchemaKind.database, schema.id, names
    return SchemaKind.table, schema.header, max_string_chars(schema)


def check_case(kind: SchemaKind, table_name: str = TABLE_NAME) -> CheckCase:
    """The self-check's schema, prompt and target for `kind`, built by the code that builds training's."""
    if kind is SchemaKind.database:
        prompt = build_schema_prompt(CHECK_QUESTION, CHECK_DATABASE, {}, max_schema_chars=10_000)
        return CheckCase(CHECK_DATABASE, prompt.text, target_sql(CHECK_SQL))
    prompt = build_prompt("How many numbers are over 6.5 for O'Neal Jones?", CHECK_TABLE)
    return CheckCase(CHECK_TABLE, prompt, render_sql(CHECK_QUERY, CHECK_TABLE, table_name))
