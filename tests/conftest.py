"""What several test files share: a tiny WikiSQL release in the official layout, written per test; the players
table the scoring tests run against; a small database of several tables (Spider-like: concerts_database); a tiny
Mistral; a scripted stand-in model for execution-guided decoding on multi-table prompts; SQL that builds long texts
from short queries (hostile predictions); test-suite databases made from the bundled multi-table sample
(write_test_suite); the default smoke run, run once per session through the real command line."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from experiments.data.records import Table

TABLE = {
    "id": "1-1000-1",
    "header": ["Player", "No.", "School/Club Team", "Years in Toronto", "Height (ft)"],
    "types": ["text", "real", "text", "text", "real"],
    "rows": [
        ["Antonio Lang", 21, "Duke", "1999-2000", 6.75],
        ["Voshon Lenard", 2, "Minnesota", "2002-03", 6.33],
        ["Martin Lewis", 32, "Butler CC (KS)", "1996-97", 6.5],
        ["O'Neal Jones", 7, "Kansas", "1998", 6.9],
    ],
}


PLAYER_COLUMNS = ("Player", "No.", "Nationality", "Position", "Years in Toronto", "School/Club Team", "Height (ft)")
PLAYER_TYPES = ("text", "real", "text", "text", "text", "text", "real")
PLAYER_ROWS = (
    ("Antonio Lang", 21, "United States", "Guard-Forward", "1999-2000", "Duke", 6.75),
    ("Voshon Lenard", 2, "United States", "Guard", "2002-03", "Minnesota", 6.33),
    ("Martin Lewis", 32, "United States", "Guard-Forward", "1996-97", "Butler CC (KS)", 6.5),
    ("Brad Lohaus", 33, "United States", "Forward-Center", "1996", "Iowa", 7.0),
    ("Art Long", 42, "United States", "Forward-Center", "2002-03", "Cincinnati", 6.75),
    ("O'Neal Jones", 7, "Canada", "Guard", "1998", "Kansas", 6.9),
)


def players_table(columns: tuple[str, ...] = PLAYER_COLUMNS, players: tuple[str, ...] | None = None) -> Table:
    """The scoring tests' WikiSQL table (1-10015132-11): the named columns, and the named players' rows (all by
    default), in the table's order."""
    index = [PLAYER_COLUMNS.index(c) for c in columns]
    rows = tuple(tuple(row[i] for i in index) for row in PLAYER_ROWS if players is None or row[0] in players)
    return Table(id="1-10015132-11", header=columns, types=tuple(PLAYER_TYPES[i] for i in index), rows=rows)


def concerts_database(path: Path) -> Path:
    """A Spider-like database file at `path`: singers and concerts, with a foreign key, an AUTOINCREMENT key (so
    sqlite_sequence exists), an index, a view and statistics (sqlite_stat1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript("""
            PRAGMA foreign_keys = ON;
            CREATE TABLE singer (singer_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, country TEXT, age INT);
            CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, title TEXT, year INT,
                                  singer_id INT REFERENCES singer(singer_id));
            CREATE INDEX concert_year ON concert(year);
            CREATE VIEW old_singer AS SELECT name FROM singer WHERE age > 40;
            INSERT INTO singer (name, country, age) VALUES ('Joe', 'France', 52), ('Ann', 'Japan', 29),
                                                           ('Tim', 'France', 41);
            INSERT INTO concert VALUES (1, 'Spring', 2014, 1), (2, 'Summer', 2015, 1), (3, 'Autumn', 2015, 2);
            ANALYZE;
        """)
        conn.commit()
    finally:
        conn.close()
    return path


@dataclass(frozen=True)
class Question:
    """A multi-table question as scoring reads it (the shape of experiments.data.schema.SqlExample)."""

    id: str
    db_id: str
    question: str
    sql: str
    evidence: str | None = None
    difficulty: str | None = None


@dataclass(frozen=True)
class DatabaseFile:
    """A database as scoring reads it: its id and its SQLite file."""

    id: str
    path: Path


SPIDER_SAMPLE = Path(__file__).resolve().parents[1] / "src" / "experiments" / "data" / "spider_sample"


def write_test_suite(root: Path, changes: dict[str, list[str]], db_ids: tuple[str, ...] = ()) -> Path:
    """A test suite in the official layout under `root`: `<db_id>/<db_id>.sqlite`, a copy of the bundled sample's
    test database, for each of `db_ids` and of `changes`' keys, and for each SQL script in `changes[db_id]` a
    variant `<db_id>_<k>.sqlite` (k from 1): another copy with those statements applied."""
    for db_id in {*db_ids, *changes}:
        original = SPIDER_SAMPLE / "test_database" / db_id / f"{db_id}.sqlite"
        folder = root / db_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / original.name).write_bytes(original.read_bytes())
        for k, statement in enumerate(changes.get(db_id, []), start=1):
            variant = folder / f"{db_id}_{k}.sqlite"
            variant.write_bytes(original.read_bytes())
            conn = sqlite3.connect(variant)
            try:
                conn.executescript(statement)
                conn.commit()
            finally:
                conn.close()
    return root


NO_TABLE_SQL = "SELECT name FROM no_such_table"


def first_table(prompt: str) -> str:
    """The first table a multi-table prompt's schema creates (data/schema_prompt.py)."""
    found = re.search(r'CREATE TABLE "?(\w+)', prompt)
    assert found is not None, "no CREATE TABLE in the prompt"
    return found.group(1)


class ScriptedSqlModel:
    """Stands in for a model in generate_sql: for every multi-table prompt its k candidates are NO_TABLE_SQL (a table
    no database has), then a count over first_table(prompt), which only that question's database is sure to have.
    Execution guidance on the question's own database keeps the second; without guidance the first stays."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.generation_config = SimpleNamespace(pad_token_id=None)
        self.training = False

    def eval(self) -> ScriptedSqlModel:
        return self.train(False)

    def train(self, mode: bool = True) -> ScriptedSqlModel:
        self.training = mode
        return self

    def generate(self, input_ids, attention_mask, eos_token_id, pad_token_id, num_return_sequences=1, **_):
        import torch

        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            table = first_table(self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True))
            for sql in [NO_TABLE_SQL, f"SELECT count(*) FROM {table}"][:num_return_sequences]:
                rows.append(ids.tolist() + self.tokenizer.encode(sql, add_special_tokens=False) + [eos_token_id[0]])
        longest = max(len(r) for r in rows)
        return torch.tensor([r + [pad_token_id] * (longest - len(r)) for r in rows])


def long_text_sql(char: str, tens: int, times: int = 1) -> str:
    """SQL for `char * times * 10**tens`, built with replace() so that the SQL itself stays short."""
    expr = f"'{char}'"
    for _ in range(tens):
        expr = f"replace({expr}, '{char}', '{char * 10}')"
    return f"replace({expr}, '{char}', '{char * times}')" if times > 1 else expr


def tiny_mistral_config(vocab_size: int = 32000, **overrides):
    """A 2-layer Mistral of hidden size 64 (random weights large enough to give distinct logits), with SDPA."""
    from transformers import MistralConfig

    config = MistralConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3, **overrides)
    config._attn_implementation = "sdpa"
    return config


def write_release(root: Path, examples_per_split: int = 4) -> Path:
    """A valid release directory: the same table in each split (ids made distinct), simple questions."""
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        table = dict(TABLE, id=f"1-1000-{split}")
        (root / f"{split}.tables.jsonl").write_text(json.dumps(table) + "\n")
        lines = []
        for n in range(examples_per_split):
            row = TABLE["rows"][n % len(TABLE["rows"])]
            lines.append(json.dumps({"phase": 1, "table_id": table["id"],
                                     "question": f"What number does {row[0].lower()} wear?",
                                     "sql": {"sel": 1, "agg": 0, "conds": [[0, 0, row[0].lower()]]}}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    return write_release(tmp_path / "release")


def run_cli(*args: str, cwd: Path, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python -m experiments ARGS` (or under `launcher`, e.g. torchrun) as a user would type it."""
    command = [*launcher, "-m", "experiments", *args] if launcher else [sys.executable, "-m", "experiments", *args]
    # A guard against a hung run, not a speed check: the learn preset takes about 11 minutes on 2 idle cores
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=2400)


@dataclass
class SmokeRun:
    result: subprocess.CompletedProcess
    run_dir: Path
    outputs_dir: Path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """`experiments` with no arguments but where to write: the default smoke preset, single process, on CPU."""
    root = tmp_path_factory.mktemp("smoke")
    result = run_cli("experiment=smoke", f"outputs_dir={root / 'outputs'}", f"hydra.run.dir={root / 'run'}", cwd=root)
    return SmokeRun(result, root / "run", root / "outputs")
