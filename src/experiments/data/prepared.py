"""The prepare stage's files: each subset as JSONL (example + prompt + target SQL) and the tables (WikiSQL) or
databases (Spider, BIRD) they use.

Later stages read only these, so any stage can run alone on an earlier run's directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.data.jsonl import iter_jsonl
from experiments.data.prompt import build_prompt, render_sql
from experiments.data.records import DataError, Example, Table
from experiments.data.schema import Database, SqlExample
from experiments.fileio import write_jsonl


@dataclass(frozen=True)
class PreparedExample:
    example: Example
    prompt: str
    target: str  # gold SQL, without EOS

    @classmethod
    def build(cls, example: Example, table: Table) -> PreparedExample:
        return cls(example=example, prompt=build_prompt(example.question, table),
                   target=render_sql(example.query, table))

    def to_json(self) -> dict[str, Any]:
        return {**self.example.to_json(), "prompt": self.prompt, "target": self.target}


@dataclass(frozen=True)
class PreparedSqlExample:
    """A multi-table question with its prompt (data/schema_prompt.py) and its gold SQL as the model learns it."""

    example: SqlExample
    prompt: str
    target: str  # gold SQL on one line, without EOS

    def to_json(self) -> dict[str, Any]:
        return {**self.example.to_json(), "prompt": self.prompt, "target": self.target}


Prepared = PreparedExample | PreparedSqlExample


def write_prepared(path: Path, examples: list[PreparedExample] | list[PreparedSqlExample]) -> None:
    write_jsonl(path, (e.to_json() for e in examples))


def read_prepared(path: Path) -> list[Prepared]:
    """The subset's prepared examples: WikiSQL's (a table and a logical form) or multi-table ones (a db_id and SQL
    text), as the prepare stage wrote them."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the prepare stage first (stages='[prepare,...]') "
                                "or point at a run directory that has it")
    prepared = []
    for lineno, obj in iter_jsonl(path):
        try:
            if "db_id" in obj:
                prepared.append(PreparedSqlExample(example=SqlExample.from_json(obj), prompt=str(obj["prompt"]),
                                                   target=str(obj["target"])))
            else:
                prepared.append(PreparedExample(example=Example.from_json(obj), prompt=str(obj["prompt"]),
                                                target=str(obj["target"])))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path} line {lineno}: not a prepared example ({err!r})") from None
    return prepared


def write_tables(path: Path, tables: list[Table]) -> None:
    write_jsonl(path, (t.to_json() for t in tables))


def read_tables(path: Path) -> dict[str, Table]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the prepare stage first")
    return {obj["id"]: Table.from_json(obj) for _, obj in iter_jsonl(path)}


def write_databases(path: Path, databases: list[Database]) -> None:
    write_jsonl(path, (d.to_json() for d in databases))


def read_databases(path: Path) -> dict[str, Database]:
    """The databases a multi-table run's subsets use (schemas and the SQLite files' paths), by db_id."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the prepare stage first")
    databases = {}
    for lineno, obj in iter_jsonl(path):
        try:
            database = Database.from_json(obj)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path} line {lineno}: not a database ({err!r})") from None
        databases[database.id] = database
    return databases


def prompt_schemas(examples: Sequence[Prepared], tables: Mapping[str, Table] | None,
                   databases: Mapping[str, Database] | None) -> list[Table] | list[Database]:
    """Each example's WikiSQL table or multi-table database (read_tables', read_databases' maps), for decoding: the
    grammar reads the table, execution guidance runs candidates on the table or the database file."""
    found: list = []
    for p in examples:
        if isinstance(p, PreparedSqlExample):
            schema = None if databases is None else databases.get(p.example.db_id)
            what = f"database {p.example.db_id!r}"
        else:
            schema = None if tables is None else tables.get(p.example.table_id)
            what = f"table {p.example.table_id!r}"
        if schema is None:
            raise DataError(f"example {p.example.id}: its {what} is not among the prepared ones; run prepare again")
        found.append(schema)
    return found
