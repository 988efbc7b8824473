"""The prepare stage's files: each subset as JSONL (example + prompt + target SQL) and the tables they use.

Later stages read only these, so any stage can run alone on an earlier run's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.data.jsonl import iter_jsonl
from experiments.data.prompt import build_prompt, render_sql
from experiments.data.records import DataError, Example, Table
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


def write_prepared(path: Path, examples: list[PreparedExample]) -> None:
    write_jsonl(path, (e.to_json() for e in examples))


def read_prepared(path: Path) -> list[PreparedExample]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the prepare stage first (stages='[prepare,...]') "
                                "or point at a run directory that has it")
    prepared = []
    for lineno, obj in iter_jsonl(path):
        try:
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
