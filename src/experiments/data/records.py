"""One in-memory model of WikiSQL, whatever the source: tables, logical-form queries, examples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

AGG_OPS: tuple[str, ...] = ("", "MAX", "MIN", "COUNT", "SUM", "AVG")
COND_OPS: tuple[str, ...] = ("=", ">", "<", "OP")
SOURCE_SPLITS: tuple[str, ...] = ("train", "dev", "test")

Cell = str | int | float | None
CondValue = str | int | float


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Table:
    id: str
    header: tuple[str, ...]
    types: tuple[str, ...]  # "text" | "real" per column
    rows: tuple[tuple[Cell, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "header": list(self.header), "types": list(self.types),
                "rows": [list(r) for r in self.rows]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Table:
        header = tuple(str(h) for h in obj["header"])
        types = tuple(str(t) for t in obj.get("types") or ["text"] * len(header))
        return cls(id=str(obj["id"]), header=header, types=types,
                   rows=tuple(tuple(r) for r in obj["rows"]))


@dataclass(frozen=True)
class Query:
    """WikiSQL's logical form: SELECT agg(sel) FROM table WHERE conds (ANDed)."""

    sel: int
    agg: int
    conds: tuple[tuple[int, int, CondValue], ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"sel": self.sel, "agg": self.agg, "conds": [list(c) for c in self.conds]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Query:
        return cls(sel=int(obj["sel"]), agg=int(obj["agg"]),
                   conds=tuple((int(c), int(o), v) for c, o, v in obj.get("conds", [])))


@dataclass(frozen=True)
class Example:
    id: str  # "{split}-{n}": n is the 0-based line of the example in its source split
    table_id: str
    question: str
    query: Query

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "table_id": self.table_id, "question": self.question, "sql": self.query.to_json()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Example:
        return cls(id=str(obj["id"]), table_id=str(obj["table_id"]), question=str(obj["question"]),
                   query=Query.from_json(obj["sql"]))


@dataclass
class SplitData:
    """One source split with the tables its examples refer to, and what was skipped while loading it."""

    name: str
    examples: list[Example]
    tables: dict[str, Table]
    skipped: dict[str, int] = field(default_factory=dict)

    def admit(self, example: Example, where: str) -> None:
        """Keep `example`, or count why it is skipped (skip_reason: the same rule for every source); one that
        cannot be scored is a DataError naming `where`."""
        reason = skip_reason(example)
        if reason is not None:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            return
        validate_example(example, self.tables, where)
        self.examples.append(example)


def release_query(sel: int, agg: int, conds: Iterable[Sequence[Any]]) -> Query:
    """A logical form as both WikiSQL sources give it: condition values as text, `str()` of the release's JSON
    value, which is what the Hub's conversion stored (it cannot tell 6299 from "6299"). So the release and the Hub
    load into identical examples, prompts, gold SQL and fingerprints; render_sql still writes numeric text in a
    real column as a number, and a text column compares equal to either form in SQLite."""
    return Query(sel=int(sel), agg=int(agg), conds=tuple((int(c), int(o), str(v)) for c, o, v in conds))


def skip_reason(example: Example) -> str | None:
    """Why a source example cannot be used (the same rule for every source, so seeded subsets coincide): an empty
    question, or the release's unused 'OP' operator."""
    if not example.question.strip():
        return "empty_question"
    if any(op == 3 for _, op, _ in example.query.conds):
        return "unsupported_operator"
    return None


def validate_example(example: Example, tables: dict[str, Table], where: str) -> None:
    """Raise DataError (naming `where`, e.g. 'train.jsonl line 12') if the example cannot be scored."""
    table = tables.get(example.table_id)
    if table is None:
        raise DataError(f"{where}: example {example.id} refers to table {example.table_id!r}, "
                        "which is not in the tables file")
    ncols = len(table.header)
    q = example.query
    if not 0 <= q.sel < ncols:
        raise DataError(f"{where}: example {example.id}: sel={q.sel} is out of range for table "
                        f"{table.id!r} with {ncols} columns")
    if not 0 <= q.agg < len(AGG_OPS):
        raise DataError(f"{where}: example {example.id}: agg={q.agg} is not one of 0..{len(AGG_OPS) - 1}")
    for col, op, _ in q.conds:
        if not 0 <= col < ncols:
            raise DataError(f"{where}: example {example.id}: condition column {col} is out of range for "
                            f"table {table.id!r} with {ncols} columns")
        if not 0 <= op < 3:
            raise DataError(f"{where}: example {example.id}: condition operator {op} is not one of 0..2 (=, >, <)")
