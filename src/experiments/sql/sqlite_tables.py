"""WikiSQL tables as SQLite tables: real header names as columns, one file per run, built once.

Text columns are `TEXT COLLATE NOCASE` so `=`, `<`, `>` on text ignore case the way WikiSQL's lower-cased
official database does; real columns are `REAL`, so numbers compare as numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from experiments.data.prompt import number_or_none, quote_identifier
from experiments.data.records import Cell, DataError, Table
from experiments.fileio import replace_file
from experiments.sql.sqlite_sandbox import fold_identifier

__all__ = ["META_TABLE", "ROWID_NAMES", "create_table_sql", "fold_identifier", "materialize_tables",
           "sqlite_column_names", "sqlite_table_name", "sqlite_text", "write_tables_sqlite"]

META_TABLE = "_materialized_tables"  # table_id -> SQLite name + content fingerprint (for idempotence)
_PLAIN_ID = re.compile(r"[0-9a-z-]+")
_UNSAFE = re.compile(r"[^0-9A-Za-z]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
ROWID_NAMES = frozenset({"rowid", "oid", "_rowid_"})


def sqlite_text(text: str) -> str:
    """`text` as SQLite can hold it: a lone UTF-16 surrogate (valid in JSON and in Python, not in UTF-8) becomes
    U+FFFD. Table cells, header names and every SQL run go through this, so they still compare equal."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def sqlite_table_name(table_id: str) -> str:
    """A safe, deterministic, collision-free SQLite name for a WikiSQL table id.

    Ids of digits, lower-case letters and '-' (all of WikiSQL's) become the official `table_1_10015132_11`;
    anything else is sanitised and suffixed with a hash of the id so two ids never share a name.
    """
    if _PLAIN_ID.fullmatch(table_id):
        return "table_" + table_id.replace("-", "_")
    digest = hashlib.sha1(table_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"table_{_UNSAFE.sub('_', table_id).strip('_').lower()}_{digest}"


def sqlite_column_names(header: Iterable[str]) -> tuple[str, ...]:
    """The header as SQLite column names: unchanged, except a (case-insensitive) repeat gets `_2`, `_3`...

    SQLite refuses two columns with the same name; the first keeps the real name, so SQL naming it reads
    the first of the duplicates, as a person reading the header would expect. (Lone surrogates: see sqlite_text.)
    """
    names: list[str] = []
    seen: set[str] = set()
    for name in map(sqlite_text, header):
        candidate, k = name, 2
        while fold_identifier(candidate) in seen:
            candidate, k = f"{name}_{k}", k + 1
        seen.add(fold_identifier(candidate))
        names.append(candidate)
    return tuple(names)


def _cell(value: Cell, column_type: str) -> Cell:
    """Real columns store numeric text as numbers (so gold conditions match); anything else is kept as-is."""
    if value is None:
        return None
    if column_type == "real":
        number = number_or_none(value)
        if number is not None:
            return number
        return sqlite_text(value) if isinstance(value, str) else value
    return sqlite_text(value if isinstance(value, str) else str(value))


def _fingerprint(table: Table) -> str:
    payload = json.dumps(table.to_json(), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(payload.encode("utf-8", "surrogatepass")).hexdigest()


def create_table_sql(table: Table) -> str:
    columns = ", ".join(
        f"{quote_identifier(name)} {'REAL' if kind == 'real' else 'TEXT COLLATE NOCASE'}"
        for name, kind in zip(sqlite_column_names(table.header), table.types, strict=True)
    )
    return f"CREATE TABLE {quote_identifier(sqlite_table_name(table.id))} ({columns})"


def materialize_tables(tables: Iterable[Table], db_path: Path) -> None:
    """Create (or add to) the SQLite file with one table per WikiSQL table; once per run, not per example.

    Idempotent: a table already there with the same content is left alone; one whose content changed is
    rebuilt, so a stale file never silently scores against old data.
    """
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} "
                     "(table_id TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL)")
        known = dict(conn.execute(f"SELECT table_id, fingerprint FROM {META_TABLE}").fetchall())
        conn.execute("BEGIN")
        done: set[str] = set()
        for table in tables:
            if table.id in done:
                continue
            done.add(table.id)
            fingerprint = _fingerprint(table)
            if known.get(table.id) == fingerprint:
                continue
            name = sqlite_table_name(table.id)
            conn.execute(f"DROP TABLE IF EXISTS {quote_identifier(name)}")
            conn.execute(create_table_sql(table))
            for i, row in enumerate(table.rows):
                if len(row) != len(table.header):
                    raise DataError(f"table {table.id!r}: row {i} has {len(row)} cells but the header has "
                                    f"{len(table.header)} columns")
            if table.rows:
                placeholders = ", ".join("?" * len(table.header))
                conn.executemany(
                    f"INSERT INTO {quote_identifier(name)} VALUES ({placeholders})",
                    ([_cell(v, t) for v, t in zip(row, table.types, strict=True)] for row in table.rows),
                )
            conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?, ?)",
                         (table.id, name, fingerprint))
        conn.execute("COMMIT")
    finally:
        conn.close()


def write_tables_sqlite(path: Path, tables: Iterable[Table]) -> None:
    """data/tables.sqlite, built in a temporary file renamed into place: a crash never leaves a half-built database
    that the eval stage would take for a whole one."""
    replace_file(path, lambda tmp: materialize_tables(tables, tmp))
