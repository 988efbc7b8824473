"""Spider and BIRD in their release layouts, loaded into the multi-table model (schema.py).

Spider 1.0 (a directory, or a folder holding exactly one such directory, e.g. the release's `spider/`):

    tables.json                              schemas of the train and dev databases
    train_spider.json, train_others.json     train questions (train_others.json optional)
    dev.json                                 dev questions
    test.json, test_tables.json              test questions and schemas (optional; newer releases)
    database/<db_id>/<db_id>.sqlite          train and dev databases
    test_database/<db_id>/<db_id>.sqlite     test databases (a missing one is looked up in database/)

BIRD (a folder holding `train/` and a dev folder, `dev/` or the release's `dev_20240627/` (any `dev_*`), or either
split folder itself; the dev-only layout loads dev alone):

    train/train.json, train/train_tables.json, train/train_databases/<db_id>/<db_id>.sqlite
    dev_*/dev.json, dev_*/dev_tables.json, dev_*/dev_databases/<db_id>/<db_id>.sqlite

BIRD's questions hold `db_id`, `question`, `evidence` and `SQL` (capitalised), dev's also `question_id` and
`difficulty`; its schemas use Spider's format (a primary key may be a list of column indices: a composite key). A
database folder's `database_description/*.csv` is not read. The release ships `*_databases` zipped: unzip them first.

Everything here is untrusted input: no SQL is executed (each used database file is opened read-only and only its
table names are read from `sqlite_master`), a JSON file over MAX_JSON_BYTES is refused unread, and a db_id must be
a plain folder name (no path separator, not `.` or `..`), since it names a path. Anything malformed is a DataError
naming the file (and the item, counted from 0); questions with an empty question or an empty SQL are skipped and
counted in `skipped`.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.data.jsonl import parse_json
from experiments.data.records import DataError
from experiments.data.schema import (
    Column,
    Database,
    ForeignKey,
    MultiTableSplit,
    SchemaTable,
    SqlExample,
    skip_reason,
)

MAX_JSON_BYTES = 2 * 1024**3  # 2 GiB: far above any release file (BIRD's train.json is ~10 MB)

SPIDER_FILES = "tables.json, train_spider.json, dev.json and database/"


# ---------------------------------------------------------------------------------------------- JSON files


def read_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON file whose top level is a list of objects. Missing, over MAX_JSON_BYTES, not UTF-8, malformed, not a
    list, or an item that is not an object: a DataError naming the file (and the item)."""
    if not path.is_file():
        raise DataError(f"{path}: missing")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DataError(f"{path}: {size:,} bytes, over the {MAX_JSON_BYTES:,} bytes a data file may have; refused "
                        "unread")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    obj = parse_json(text, str(path))
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list at the top level, got {type(obj).__name__}")
    for index, item in enumerate(obj):
        if not isinstance(item, dict):
            raise DataError(f"{path} item {index}: expected a JSON object, got {type(item).__name__}")
    return obj


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise DataError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} is a {type(value).__name__}, not a string")
    return value


def _optional_text(obj: dict[str, Any], key: str, where: str) -> str | None:
    """A string that may be absent, null or blank (all read as None)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} is a {type(value).__name__}, not a string")
    return value if value.strip() else None


def _db_id(obj: dict[str, Any], where: str) -> str:
    db_id = _text(obj, "db_id", where)
    if not db_id or db_id in (".", "..") or any(c in db_id for c in "/\\\0") or db_id != db_id.strip():
        raise DataError(f"{where}: db_id {db_id[:100]!r} is not a plain folder name")
    return db_id


# ---------------------------------------------------------------------------------------------- schemas


def _index(value: Any, size: int, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: {what} {value!r} is not an integer")
    if not 0 <= value < size:
        raise DataError(f"{where}: {what} {value} is out of range (0..{size - 1})")
    return value


def parse_schema(obj: dict[str, Any], where: str) -> Database:
    """One entry of a Spider/BIRD tables.json, with no file yet (path is set where the split finds it)."""
    db_id = _db_id(obj, where)
    where = f"{where} (db_id {db_id!r})"
    for key in ("table_names_original", "column_names_original", "column_types"):
        if not isinstance(obj.get(key), list):
            raise DataError(f"{where}: {key!r} is missing or not a list")
    table_names = obj["table_names_original"]
    if not all(isinstance(t, str) and t for t in table_names):
        raise DataError(f"{where}: 'table_names_original' holds something other than non-empty strings")
    folded = [t.casefold() for t in table_names]
    if len(set(folded)) != len(folded):
        raise DataError(f"{where}: 'table_names_original' names a table twice (compared case-insensitively)")
    raw_columns, types = obj["column_names_original"], obj["column_types"]
    if len(raw_columns) != len(types):
        raise DataError(f"{where}: {len(raw_columns)} entries in 'column_names_original' but {len(types)} in "
                        "'column_types'")
    columns: list[tuple[int, str, str]] = []  # (table index or -1, name, type), by column index
    for i, (column, type_) in enumerate(zip(raw_columns, types, strict=True)):
        if not (isinstance(column, list) and len(column) == 2 and isinstance(column[1], str)):
            raise DataError(f"{where}: column {i} is not a [table index, name] pair")
        table = column[0]
        if table != -1:  # -1 is Spider's '*'
            table = _index(table, len(table_names), f"column {i}'s table index", where)
        if not isinstance(type_, str):
            raise DataError(f"{where}: column {i}'s type {type_!r} is not a string")
        columns.append((table, column[1], type_))

    def column_ref(value: Any, what: str) -> tuple[int, str]:
        table, name, _ = columns[_index(value, len(columns), what, where)]
        if table == -1:
            raise DataError(f"{where}: {what} {value} is the '*' column, not a column of a table")
        return table, name

    keys: list[list[str]] = [[] for _ in table_names]
    primary = obj.get("primary_keys", [])
    if not isinstance(primary, list):
        raise DataError(f"{where}: 'primary_keys' is not a list")
    for entry in primary:  # an index, or (BIRD) a list of the indices of one composite key
        for value in entry if isinstance(entry, list) else [entry]:
            table, name = column_ref(value, "primary key column")
            keys[table].append(name)
    foreign: list[ForeignKey] = []
    pairs = obj.get("foreign_keys", [])
    if not isinstance(pairs, list):
        raise DataError(f"{where}: 'foreign_keys' is not a list")
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DataError(f"{where}: foreign key {pair!r} is not a [column, referenced column] pair")
        (table, name), (ref_table, ref_name) = column_ref(pair[0], "foreign key column"), column_ref(
            pair[1], "foreign key's referenced column")
        foreign.append(ForeignKey(table_names[table], name, table_names[ref_table], ref_name))
    tables = tuple(
        SchemaTable(name=t, columns=tuple(Column(name, type_) for table, name, type_ in columns if table == n),
                    primary_key=tuple(keys[n]))
        for n, t in enumerate(table_names))
    return Database(id=db_id, tables=tables, foreign_keys=tuple(foreign), path=Path())


def read_schemas(path: Path) -> dict[str, Database]:
    """Every schema in a tables.json, by db_id; a db_id given twice is a DataError."""
    schemas: dict[str, Database] = {}
    for index, obj in enumerate(read_json_list(path)):
        database = parse_schema(obj, f"{path} item {index}")
        if database.id in schemas:
            raise DataError(f"{path} item {index}: db_id {database.id!r} appears twice")
        schemas[database.id] = database
    return schemas


def sqlite_tables(path: Path) -> list[str]:
    """The table names in a SQLite file (sqlite_* internals left out), read from `sqlite_master` of the file opened
    read-only; executes nothing from the file."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as err:
        raise DataError(f"{path}: not a readable SQLite database ({type(err).__name__}: {err}); is it a Git LFS "
                        "pointer or a download cut short?") from None
    return [str(name) for (name,) in rows if not str(name).lower().startswith("sqlite_")]


def check_database_file(database: Database, schema_file: Path) -> None:
    """The tables `schema_file` lists for `database` are exactly those in its SQLite file (case-insensitively)."""
    in_file = {name.casefold(): name for name in sqlite_tables(database.path)}
    in_schema = {table.name.casefold(): table.name for table in database.tables}
    missing = sorted(in_schema[k] for k in in_schema.keys() - in_file.keys())
    extra = sorted(in_file[k] for k in in_file.keys() - in_schema.keys())
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{schema_file} lists tables {missing} that {database.path} lacks")
        if extra:
            parts.append(f"{database.path} has tables {extra} that {schema_file} does not list")
        raise DataError(f"database {database.id!r}: the schema and the SQLite file disagree: {'; '.join(parts)}")


# ---------------------------------------------------------------------------------------------- splits

Locate = Callable[[str], Path]
Schemas = dict[str, tuple[Database, Path]]  # db_id -> (its schema, the tables.json it comes from)


def _schemas(*paths: Path) -> Schemas:
    """The schemas of tables.json files, a later file's entry replacing an earlier one's for the same db_id."""
    return {db_id: (database, path) for path in paths for db_id, database in read_schemas(path).items()}


def load_questions(name: str, files: Sequence[Path], sql_key: str, schemas: Schemas, locate: Locate) -> MultiTableSplit:
    """One split from its question files, read in order (ids "{name}-{n}", n counted over all of them, skipped
    questions included). Each database a kept question uses gets its file (locate(db_id)) and is checked against it
    once."""
    split = MultiTableSplit(name=name, examples=[], databases={})
    n = 0
    for path in files:
        for index, obj in enumerate(read_json_list(path)):
            where = f"{path} item {index}"
            example = SqlExample(id=f"{name}-{n}", db_id=_db_id(obj, where), question=_text(obj, "question", where),
                                 sql=_text(obj, sql_key, where), evidence=_optional_text(obj, "evidence", where),
                                 difficulty=_optional_text(obj, "difficulty", where))
            n += 1
            reason = skip_reason(example)
            if reason is not None:
                split.skipped[reason] = split.skipped.get(reason, 0) + 1
                continue
            if example.db_id not in split.databases:
                if example.db_id not in schemas:
                    files_read = " or ".join(sorted({str(p) for _, p in schemas.values()})) or "the schema file"
                    raise DataError(f"{where}: db_id {example.db_id!r} has no schema in {files_read}")
                schema, schema_file = schemas[example.db_id]
                database = replace(schema, path=locate(example.db_id))
                if not database.path.is_file():
                    raise DataError(f"{database.path}: missing; it is the SQLite file of database "
                                    f"{example.db_id!r} ({where} uses it)")
                check_database_file(database, schema_file)
                split.databases[example.db_id] = database
            split.examples.append(example)
    return split


def _sqlite_in(folder: Path) -> Locate:
    return lambda db_id: folder / db_id / f"{db_id}.sqlite"


def find_spider_dir(directory: Path) -> Path:
    """`directory` if it holds tables.json, else its one subfolder that does (the release unpacks into spider/)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; a Spider directory holds {SPIDER_FILES}")
    if (directory / "tables.json").is_file():
        return directory
    found = sorted(p for p in directory.iterdir() if p.is_dir() and (p / "tables.json").is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{directory}: several Spider directories in it ({', '.join(p.name for p in found)}); "
                        "point at one")
    raise DataError(f"{directory / 'tables.json'}: missing; a Spider directory holds {SPIDER_FILES}")


def load_spider(directory: Path) -> dict[str, MultiTableSplit]:
    """Spider 1.0's splits: "train" (train_spider.json + train_others.json), "dev", and "test" where test.json is
    there (schemas from test_tables.json, then tables.json; files in test_database/, then database/)."""
    directory = find_spider_dir(directory)
    tables = directory / "tables.json"
    for required in ("train_spider.json", "dev.json"):
        if not (directory / required).is_file():
            raise DataError(f"{directory / required}: missing; a Spider directory holds {SPIDER_FILES}")
    schemas = _schemas(tables)
    database = _sqlite_in(directory / "database")
    train_files = [directory / "train_spider.json"]
    if (directory / "train_others.json").is_file():
        train_files.append(directory / "train_others.json")
    splits = {"train": load_questions("train", train_files, "query", schemas, database),
              "dev": load_questions("dev", [directory / "dev.json"], "query", schemas, database)}
    if (directory / "test.json").is_file():
        test_tables = directory / "test_tables.json"
        test_schemas = {**schemas, **_schemas(test_tables)} if test_tables.is_file() else schemas

        def test_database(db_id: str) -> Path:
            path = _sqlite_in(directory / "test_database")(db_id)
            return path if path.is_file() else database(db_id)

        splits["test"] = load_questions("test", [directory / "test.json"], "query", test_schemas, test_database)
    return splits


# ---------------------------------------------------------------------------------------------- BIRD

BIRD_SPLITS: tuple[str, ...] = ("train", "dev")


def _is_bird_split_dir(folder: Path, split: str) -> bool:
    return folder.is_dir() and (folder / f"{split}.json").is_file()


def find_bird_dirs(directory: Path) -> dict[str, Path]:
    """The BIRD split folders at `directory`: the folder itself (holding train.json or dev.json), or its
    subfolders `train/` and `dev/` or `dev_*/` (e.g. the release's dev_20240627/)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected BIRD's train/ and dev/ (or dev_*/) folders, or one "
                        "of them")
    own = {split: directory for split in BIRD_SPLITS if _is_bird_split_dir(directory, split)}
    if own:
        return own
    found: dict[str, Path] = {}
    if _is_bird_split_dir(directory / "train", "train"):
        found["train"] = directory / "train"
    devs = sorted(p for p in directory.iterdir() if (p.name == "dev" or p.name.startswith("dev_"))
                  and _is_bird_split_dir(p, "dev"))
    if len(devs) > 1:
        raise DataError(f"{directory}: several BIRD dev folders ({', '.join(p.name for p in devs)}); keep one")
    if devs:
        found["dev"] = devs[0]
    if not found:
        raise DataError(f"{directory}: no BIRD data: expected train/train.json and dev/dev.json (or "
                        "dev_<date>/dev.json), or a folder holding one of them")
    return found


def load_bird_split(folder: Path, split: str) -> MultiTableSplit:
    questions, tables = folder / f"{split}.json", folder / f"{split}_tables.json"
    databases = folder / f"{split}_databases"
    if not tables.is_file():
        raise DataError(f"{tables}: missing; a BIRD {split} folder holds {split}.json, {split}_tables.json and "
                        f"{split}_databases/")
    if not databases.is_dir():
        zipped = databases.with_name(databases.name + ".zip")
        hint = f"; unzip {zipped} here first" if zipped.is_file() else ""
        raise DataError(f"{databases}: missing{hint}")
    return load_questions(split, [questions], "SQL", _schemas(tables), _sqlite_in(databases))


def load_bird(directory: Path) -> dict[str, MultiTableSplit]:
    """BIRD's splits found at `directory` (find_bird_dirs): "train" and/or "dev"."""
    return {split: load_bird_split(folder, split) for split, folder in find_bird_dirs(directory).items()}
