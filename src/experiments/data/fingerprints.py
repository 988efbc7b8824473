"""Fingerprints that make comparisons between runs honest: two runs are only comparable example by example when
they were scored on the same test examples, and their numbers only mean the same thing when the same prompt
template, schema formatting and SQL rendering produced their training and inference text.

`prompt_fingerprint` renders one fixed, awkward example through the real preparation code, so any change to the
template, the schema line, identifier/literal quoting or number formatting changes it; no one has to remember
to bump `PROMPT_VERSION` (which is hashed in as well).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from experiments.data.prepared import PreparedExample
from experiments.data.prompt import PROMPT_VERSION
from experiments.data.records import Example, Query, Table
from experiments.data.schema import Column, Database, ForeignKey, SchemaTable
from experiments.data.schema_prompt import MULTI_TABLE_PROMPT_VERSION, build_schema_prompt, target_sql

# Quotes in names and values, a real and a text column, an aggregate, every comparison operator, a float,
# an integer-valued float, numeric text in a real column and whitespace to normalise in the question.
CANONICAL_TABLE = Table(
    id="1-fingerprint-1",
    header=("Player", 'Nick "name"', "No.", "Height (ft)", "School/Club Team"),
    types=("text", "text", "real", "real", "text"),
    rows=(("O'Neal Jones", "big o", 7, 6.9, "Kansas"),),
)
CANONICAL_EXAMPLE = Example(
    id="test-0", table_id=CANONICAL_TABLE.id,
    question="  How many players from  O'Neal's school wear a number\tover 5.0 and are under 7 ft? ",
    query=Query(sel=2, agg=3, conds=((4, 0, "Kansas"), (2, 1, 5.0), (3, 2, "7"), (1, 0, "o'neal"))),
)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ids_fingerprint(ids: Iterable[str]) -> str:
    """The ids of a subset, in order."""
    return _sha("\n".join(ids))


def examples_fingerprint(examples: Iterable[Mapping[str, Any]]) -> str:
    """What a subset's examples say (id, table, question, logical form), so two sources whose ids coincide
    (the bundled sample's test-3 and the official release's test-3) are told apart."""
    keys = ("id", "table_id", "question", "sql")
    multi_table_keys = ("id", "db_id", "question", "sql", "evidence")  # Spider, BIRD: SQL text and a database
    return _sha("\n".join(json.dumps({k: e.get(k) for k in (multi_table_keys if "db_id" in e else keys)},
                                     sort_keys=True, ensure_ascii=False) for e in examples))


@cache
def prompt_fingerprint() -> str:
    """PROMPT_VERSION plus the prepared form (prompt and target SQL) of a fixed canonical example."""
    prepared = PreparedExample.build(CANONICAL_EXAMPLE, CANONICAL_TABLE)
    return _sha(PROMPT_VERSION + "\n" + json.dumps(prepared.to_json(), sort_keys=True, ensure_ascii=False))


# Two tables, a key and a foreign key, quotes and a space in names, values, evidence and a two-line gold query.
CANONICAL_DATABASE = Database(
    id="fingerprint_db", path=Path("fingerprint.sqlite"),
    tables=(SchemaTable("singer", (Column("singer_id", "number"), Column('Nick "name"', "text")), ("singer_id",)),
            SchemaTable("concert hall", (Column("hall_id", "number"), Column("singer_id", "number")), ("hall_id",))),
    foreign_keys=(ForeignKey("concert hall", "singer_id", "singer", "singer_id"),),
)
CANONICAL_VALUES = {"singer": {"singer_id": ["1", "2"], 'Nick "name"': ["'O''Neal'"]}}


@cache
def multi_table_prompt_fingerprint(max_schema_chars: int) -> str:
    """MULTI_TABLE_PROMPT_VERSION plus the prompt and target of a fixed multi-table example at this schema budget
    (data.schema_max_chars), which changes the prompt."""
    prompt = build_schema_prompt("  Which singers'  halls? ", CANONICAL_DATABASE, CANONICAL_VALUES, max_schema_chars,
                                 evidence="hall refers to  concert hall")
    target = target_sql('SELECT T1."Nick ""name"""\n  FROM singer AS T1 JOIN "concert hall" AS T2;')
    return _sha(f"{MULTI_TABLE_PROMPT_VERSION}\n{max_schema_chars}\n{prompt.text}\n{prompt.shortening}\n{target}")
