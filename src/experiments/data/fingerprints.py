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
from typing import Any

from experiments.data.prepared import PreparedExample
from experiments.data.prompt import PROMPT_VERSION
from experiments.data.records import Example, Query, Table

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
    return _sha("\n".join(json.dumps({k: e.get(k) for k in keys}, sort_keys=True, ensure_ascii=False)
                          for e in examples))


@cache
def prompt_fingerprint() -> str:
    """PROMPT_VERSION plus the prepared form (prompt and target SQL) of a fixed canonical example."""
    prepared = PreparedExample.build(CANONICAL_EXAMPLE, CANONICAL_TABLE)
    return _sha(PROMPT_VERSION + "\n" + json.dumps(prepared.to_json(), sort_keys=True, ensure_ascii=False))
