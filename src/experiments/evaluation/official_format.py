"""Our predictions in the format of WikiSQL's official `evaluate.py`, so anyone can re-score them with it.

    python evaluate.py official_source.jsonl official_tables.db official_predictions.jsonl

`official_source.jsonl` holds the evaluated examples in the release's format, `official_predictions.jsonl`
the parsed logical forms (or `{"error": ...}`) line by line in the same order, `official_tables.jsonl` and
`official_tables.db` their tables in the release's layouts (the .db: `table_<id with - as _>`, columns
`col0..colN`, text lower-cased, which is what the official DBEngine reads).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from experiments.data.prompt import number_or_none, quote_identifier
from experiments.data.records import Example, Query, Table
from experiments.fileio import replace_file, write_jsonl
from experiments.sql.sqlite_tables import sqlite_text

SOURCE_FILE = "official_source.jsonl"
PREDICTIONS_FILE = "official_predictions.jsonl"
TABLES_FILE = "official_tables.jsonl"
DB_FILE = "official_tables.db"


def _official_cell(value: object, column_type: str) -> object:
    if value is None:
        return None
    if column_type == "real":
        number = number_or_none(value)
        return sqlite_text(str(value)).lower() if number is None else number
    return sqlite_text(str(value)).lower()


def _write_db(tables: Sequence[Table], path: Path) -> None:
    """Built beside `path` and renamed over it, so a crash never leaves a half-filled database."""
    replace_file(path, lambda tmp: _fill_db(tables, tmp))


def _fill_db(tables: Sequence[Table], path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        for table in tables:
            name = quote_identifier(sqlite_text("table_" + table.id.replace("-", "_")))
            columns = ", ".join(f"col{i} {kind.upper()}" for i, kind in enumerate(table.types))
            conn.execute(f"CREATE TABLE {name} ({columns})")
            if table.rows and table.header:
                placeholders = ", ".join("?" * len(table.header))
                conn.executemany(f"INSERT INTO {name} VALUES ({placeholders})",
                                 ([_official_cell(v, t) for v, t in zip(row, table.types, strict=True)]
                                  for row in table.rows))
        conn.commit()
    finally:
        conn.close()


def write_official_files(examples: Sequence[Example], tables: Mapping[str, Table],
                         predicted: Sequence[Query | str], out_dir: Path) -> None:
    """`predicted[i]` is example i's parsed logical form, or an error string where it has none."""
    out_dir = Path(out_dir)
    used = [tables[tid] for tid in dict.fromkeys(e.table_id for e in examples) if tid in tables]
    pairs = list(zip(examples, predicted, strict=True))
    write_jsonl(out_dir / SOURCE_FILE, ({"phase": 1, "table_id": example.table_id, "question": example.question,
                                         "sql": example.query.to_json()} for example, _ in pairs))
    write_jsonl(out_dir / PREDICTIONS_FILE, ({"query": query.to_json()} if isinstance(query, Query)
                                             else {"error": query} for _, query in pairs))
    write_jsonl(out_dir / TABLES_FILE, (table.to_json() for table in used))
    _write_db(used, out_dir / DB_FILE)
