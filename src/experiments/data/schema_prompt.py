"""The one prompt of a multi-table question (Spider, BIRD): the database's CREATE TABLE statements with their keys
and a few values of each column read from the database, then the evidence (BIRD) and the question, then the SQL.

The sections are WikiSQL's (`### Schema`, `### Question`, `### SQL`, data/prompt.py), with `### Evidence` between
schema and question when a question has a hint. A schema longer than `data.schema_max_chars` is shortened by a
fixed rule, never silently: first the example values go, then the columns no word of the question or evidence
names (keys kept); what each prompt lost is returned with it, and the prepare stage counts it in data/report.json.
A prompt still over the budget is kept whole, and counted; training drops examples longer than its token budget
and counts those too.

Database contents are untrusted: example values are read through a read-only, immutable connection with a time
limit, at most a few per column, each shortened and flattened to one line so no value can fake a prompt section.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.data.prompt import SQL_SECTION, quote_identifier
from experiments.data.schema import Database, SchemaTable

MULTI_TABLE_PROMPT_VERSION = "mt1"
MAX_VALUE_CHARS = 40  # an example value longer than this is cut, with "..."
VALUES_TIME_LIMIT_S = 5.0  # reading one database's example values
_WORDS = re.compile(r"[0-9a-z]+")
_WHITESPACE = re.compile(r"\s+")
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n]+[ \t]*")

ColumnValues = Mapping[str, Mapping[str, Sequence[str]]]  # table -> column -> values as SQL literals


@dataclass(frozen=True)
class SchemaPrompt:
    """A question's prompt and how its schema was shortened to fit the budget: `full`, `no_values`,
    `question_columns` (values gone and the columns no question word names), or `over_budget` (still too long,
    kept whole)."""

    text: str
    shortening: str


def _literal(value: object) -> str | None:
    if value is None or isinstance(value, bytes):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    text = _WHITESPACE.sub(" ", str(value)).strip()
    if not text:
        return None
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "..."
    return "'" + text.replace("'", "''") + "'"


def read_example_values(database: Database, per_column: int) -> dict[str, dict[str, list[str]]]:
    """Up to `per_column` distinct non-NULL values of each column, as SQL literals, read from the database file
    (read-only, immutable, within VALUES_TIME_LIMIT_S for the whole database: what is not read by then is left
    out). Nothing with `per_column=0`."""
    values: dict[str, dict[str, list[str]]] = {}
    if per_column <= 0:
        return values
    deadline = time.monotonic() + VALUES_TIME_LIMIT_S
    uri = f"{Path(database.path).resolve().as_uri()}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        for table in database.tables:
            for column in table.columns:
                sql = (f"SELECT DISTINCT {quote_identifier(column.name)} FROM {quote_identifier(table.name)} "
                       f"WHERE {quote_identifier(column.name)} IS NOT NULL LIMIT {int(per_column) * 3}")
                try:
                    rows = conn.execute(sql).fetchall()
                except sqlite3.Error:
                    if time.monotonic() > deadline:
                        return values
                    continue
                literals = [lit for lit in (_literal(row[0]) for row in rows) if lit is not None]
                values.setdefault(table.name, {})[column.name] = list(dict.fromkeys(literals))[:per_column]
    finally:
        conn.close()
    return values


def _table_sql(database: Database, table: SchemaTable, values: ColumnValues, keep: set[str] | None) -> str:
    lines = []
    keys = {k.casefold() for k in table.primary_key}
    linked = {fk.column.casefold() for fk in database.foreign_keys if fk.table.casefold() == table.name.casefold()}
    for column in table.columns:
        folded = column.name.casefold()
        if keep is not None and folded not in keep and folded not in keys and folded not in linked:
            continue
        line = f"  {quote_identifier(column.name)} {column.type.upper()}"
        if len(table.primary_key) == 1 and folded in keys:
            line += " PRIMARY KEY"
        shown = values.get(table.name, {}).get(column.name)
        if shown:
            line += f",  -- e.g. {', '.join(shown)}"
        else:
            line += ","
        lines.append(line)
    if len(table.primary_key) > 1:
        lines.append(f"  PRIMARY KEY ({', '.join(quote_identifier(k) for k in table.primary_key)}),")
    for fk in database.foreign_keys:
        if fk.table.casefold() == table.name.casefold():
            lines.append(f"  FOREIGN KEY ({quote_identifier(fk.column)}) REFERENCES "
                         f"{quote_identifier(fk.ref_table)} ({quote_identifier(fk.ref_column)}),")
    if lines:  # the last item takes no comma (a value comment after it keeps its own)
        last = lines[-1]
        lines[-1] = last.replace(",  -- e.g.", "  -- e.g.", 1) if ",  -- e.g." in last else last.rstrip(",")
    return f"CREATE TABLE {quote_identifier(table.name)} (\n" + "\n".join(lines) + "\n);"


def schema_text(database: Database, values: ColumnValues | None = None, keep_columns: set[str] | None = None) -> str:
    """The database's CREATE TABLE statements, with example values as comments; only `keep_columns` (casefolded
    names) and the keys when given."""
    return "\n".join(_table_sql(database, t, values or {}, keep_columns) for t in database.tables)


def _named_columns(database: Database, words: set[str]) -> set[str]:
    named = set()
    for table in database.tables:
        for column in table.columns:
            if set(_WORDS.findall(column.name.casefold().replace("_", " "))) & words:
                named.add(column.name.casefold())
    return named


def build_schema_prompt(question: str, database: Database, values: ColumnValues, max_schema_chars: int,
                        evidence: str | None = None) -> SchemaPrompt:
    """Schema, evidence (when there is one), question, SQL section; the schema shortened by the rule above."""
    question = _WHITESPACE.sub(" ", question).strip()
    evidence = _WHITESPACE.sub(" ", evidence).strip() if evidence else ""
    schema, shortening = schema_text(database, values), "full"
    if len(schema) > max_schema_chars:
        schema, shortening = schema_text(database), "no_values"
    if len(schema) > max_schema_chars:
        words = set(_WORDS.findall(f"{question} {evidence}".casefold()))
        schema, shortening = schema_text(database, keep_columns=_named_columns(database, words)), "question_columns"
        if len(schema) > max_schema_chars:
            shortening = "over_budget"
    hint = f"### Evidence\n{evidence}\n" if evidence else ""
    return SchemaPrompt(f"### Schema\n{schema}\n{hint}### Question\n{question}\n{SQL_SECTION}", shortening)


def target_sql(sql: str) -> str:
    """Gold SQL as the model learns to write it: one line (the infer stage stops at a newline: line breaks become
    one space; other spacing is kept, as it may sit inside a string literal), no trailing semicolon."""
    return _LINE_BREAKS.sub(" ", sql).strip().rstrip(";").strip()
