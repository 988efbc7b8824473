"""One in-memory model of a multi-table Text-to-SQL data set (Spider, BIRD), whatever the source: databases as the
prompt and the scorer need them (tables, columns, keys, the SQLite file) and question/SQL examples.

WikiSQL keeps its own model (records.py): one table per question, a logical form instead of SQL text. Here the gold
query is SQL text, scored by executing it against the example's database file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.data.records import DataError

__all__ = ["Column", "DataError", "Database", "ForeignKey", "MultiTableSplit", "SchemaTable", "SqlExample"]


@dataclass(frozen=True)
class Column:
    name: str  # as in the SQLite file (Spider's and BIRD's `column_names_original`)
    type: str  # the data set's type: text, number, time, boolean, others (Spider); BIRD's own words

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Column:
        return cls(name=str(obj["name"]), type=str(obj["type"]))


@dataclass(frozen=True)
class SchemaTable:
    name: str  # as in the SQLite file (`table_names_original`)
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()  # column names; more than one for a composite key

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "columns": [c.to_json() for c in self.columns],
                "primary_key": list(self.primary_key)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SchemaTable:
        return cls(name=str(obj["name"]), columns=tuple(Column.from_json(c) for c in obj["columns"]),
                   primary_key=tuple(str(k) for k in obj.get("primary_key", ())))


@dataclass(frozen=True)
class ForeignKey:
    """`table.column` references `ref_table.ref_column` (names as in the SQLite file)."""

    table: str
    column: str
    ref_table: str
    ref_column: str

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "ref_table": self.ref_table,
                "ref_column": self.ref_column}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ForeignKey:
        return cls(table=str(obj["table"]), column=str(obj["column"]), ref_table=str(obj["ref_table"]),
                   ref_column=str(obj["ref_column"]))


@dataclass(frozen=True)
class Database:
    id: str  # Spider's and BIRD's db_id
    tables: tuple[SchemaTable, ...]
    foreign_keys: tuple[ForeignKey, ...]
    path: Path  # the SQLite file

    def table(self, name: str) -> SchemaTable | None:
        """The table called `name`, compared case-insensitively as SQLite compares identifiers; None if none."""
        folded = name.casefold()
        return next((t for t in self.tables if t.name.casefold() == folded), None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tables": [t.to_json() for t in self.tables],
                "foreign_keys": [k.to_json() for k in self.foreign_keys], "path": str(self.path)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Database:
        return cls(id=str(obj["id"]), tables=tuple(SchemaTable.from_json(t) for t in obj["tables"]),
                   foreign_keys=tuple(ForeignKey.from_json(k) for k in obj.get("foreign_keys", ())),
                   path=Path(obj["path"]))


@dataclass(frozen=True)
class SqlExample:
    id: str  # "{split}-{n}": n is the 0-based position of the question in its split's files, read in order
    db_id: str
    question: str
    sql: str  # the gold query (Spider's `query`, BIRD's `SQL`)
    evidence: str | None = None  # BIRD's external-knowledge hint; None where there is none
    difficulty: str | None = None  # BIRD dev's simple / moderate / challenging; None where not given

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "db_id": self.db_id, "question": self.question, "sql": self.sql,
                "evidence": self.evidence, "difficulty": self.difficulty}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SqlExample:
        evidence, difficulty = obj.get("evidence"), obj.get("difficulty")
        return cls(id=str(obj["id"]), db_id=str(obj["db_id"]), question=str(obj["question"]), sql=str(obj["sql"]),
                   evidence=None if evidence is None else str(evidence),
                   difficulty=None if difficulty is None else str(difficulty))


@dataclass
class MultiTableSplit:
    """One source split: its usable examples, the databases they use (by db_id), and what was skipped (by
    reason) while loading it."""

    name: str
    examples: list[SqlExample]
    databases: dict[str, Database]
    skipped: dict[str, int] = field(default_factory=dict)


def skip_reason(example: SqlExample) -> str | None:
    """Why a source question cannot be used (the same rule for every multi-table source): an empty question or an
    empty gold SQL."""
    if not example.question.strip():
        return "empty_question"
    if not example.sql.strip():
        return "empty_sql"
    return None
