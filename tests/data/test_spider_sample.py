"""The bundled multi-table sample in Spider's release layout (src/experiments/data/spider_sample/), read from
disk with plain json and sqlite3: the layout, schemas that match the SQLite files, every gold query executing
read-only to a non-empty result, database-disjoint splits, SQL feature coverage (regexes here, independent of
the generator's), evidence, sizes, package data, and the generator re-creating the same files."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "experiments"
SAMPLE = PACKAGE / "data" / "spider_sample"
SCRIPT = ROOT / "scripts" / "make_spider_sample.py"
SPLITS = ("train", "dev", "test")
QUESTION_FILES = {"train": "train_spider.json", "dev": "dev.json", "test": "test.json"}
SCHEMA_KEYS = {"db_id", "table_names_original", "table_names", "column_names_original", "column_names",
               "column_types", "primary_keys", "foreign_keys"}
QUESTION_KEYS = {"db_id", "question", "question_toks", "query", "query_toks", "query_toks_no_value"}
SPIDER_TYPES = {"INTEGER": "number", "REAL": "number", "TEXT": "text", "DATE": "time", "BOOLEAN": "boolean"}

JOINS = r"\bJOIN\b"
FEATURES = {
    "join of 2 tables": lambda q: len(re.findall(JOINS, q)) == 1,
    "join of 3 tables": lambda q: len(re.findall(JOINS, q)) == 2,
    "join of 4 tables": lambda q: len(re.findall(JOINS, q)) == 3,
    "T1/T2 aliases": lambda q: " AS T1 " in q and " AS T2 " in q,
    "GROUP BY": lambda q: "GROUP BY" in q,
    "HAVING": lambda q: "HAVING" in q,
    "ORDER BY ... LIMIT": lambda q: re.search(r"ORDER BY .* LIMIT \d+$", q) is not None,
    "IN (subquery)": lambda q: re.search(r"(?<!NOT) IN \(SELECT", q) is not None,
    "NOT IN (subquery)": lambda q: "NOT IN (SELECT" in q,
    "scalar subquery": lambda q: re.search(r"[<>=] \(SELECT", q) is not None,
    "INTERSECT": lambda q: "INTERSECT" in q,
    "UNION": lambda q: "UNION" in q,
    "EXCEPT": lambda q: "EXCEPT" in q,
    **{agg: (lambda q, agg=agg: re.search(rf"\b{agg}\(", q, re.I) is not None)
       for agg in ("count", "sum", "avg", "min", "max")},
    "LIKE": lambda q: " LIKE '" in q,
    "BETWEEN": lambda q: re.search(r"BETWEEN \S+ AND ", q) is not None,
    "IN (list)": lambda q: re.search(r" IN \('", q) is not None,
    "DISTINCT": lambda q: "DISTINCT" in q,
}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def questions(split: str) -> list[dict[str, Any]]:
    return read_json(SAMPLE / QUESTION_FILES[split])


@cache
def schemas() -> dict[str, tuple[str, dict[str, Any]]]:
    """db_id -> (the folder its SQLite file is in, its schema)."""
    out = {}
    for name, folder in (("tables.json", "database"), ("test_tables.json", "test_database")):
        for s in read_json(SAMPLE / name):
            assert s["db_id"] not in out, f"{s['db_id']} listed twice"
            out[s["db_id"]] = (folder, s)
    return out


def db_file(db_id: str) -> Path:
    folder, _ = schemas()[db_id]
    return SAMPLE / folder / db_id / f"{db_id}.sqlite"


@cache
def connect(db_id: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_file(db_id)}?mode=ro", uri=True, check_same_thread=False)


def split_dbs(split: str) -> set[str]:
    return {q["db_id"] for q in questions(split)}


def test_layout() -> None:
    for name in ("README.md", "tables.json", "test_tables.json", *QUESTION_FILES.values()):
        assert (SAMPLE / name).is_file(), name
    on_disk = {(p.parent.parent.name, p.parent.name) for p in SAMPLE.glob("*/*/*.sqlite")}
    assert on_disk == {(folder, db_id) for db_id, (folder, _) in schemas().items()}
    for p in SAMPLE.glob("*/*/*.sqlite"):
        assert p.stem == p.parent.name
    assert {p.name for p in SAMPLE.iterdir()} == {"README.md", "tables.json", "test_tables.json", "database",
                                                  "test_database", *QUESTION_FILES.values()}
    # Spider's convention: the test split's databases (only) under test_database/, with test_tables.json.
    test_dbs = {d for d, (folder, _) in schemas().items() if folder == "test_database"}
    assert test_dbs == split_dbs("test")
    assert {d for d, (folder, _) in schemas().items() if folder == "database"} == split_dbs("train") | split_dbs("dev")


def test_counts_and_size() -> None:
    dbs = schemas()
    assert len(dbs) >= 30
    total = sum(len(questions(s)) for s in SPLITS)
    assert 1300 <= total <= 1700
    shares = {s: len(questions(s)) / total for s in SPLITS}
    assert 0.62 <= shares["train"] <= 0.78 and 0.1 <= shares["dev"] <= 0.2 and 0.1 <= shares["test"] <= 0.2
    for db_id, (_, s) in dbs.items():
        assert 2 <= len(s["table_names_original"]) <= 6, db_id
        conn = connect(db_id)
        for table in s["table_names_original"]:
            (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert 5 <= n <= 100, (db_id, table, n)
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 3_000_000
    for p in SAMPLE.glob("*/*/*.sqlite"):
        (page_size,) = sqlite3.connect(f"file:{p}?mode=ro", uri=True).execute("PRAGMA page_size").fetchone()
        assert page_size == 1024, p


@pytest.mark.parametrize("db_id", sorted({d for f in ("tables.json", "test_tables.json")
                                          for d in (s["db_id"] for s in read_json(SAMPLE / f))}))
def test_schema_matches_sqlite(db_id: str) -> None:
    _, s = schemas()[db_id]
    assert set(s) == SCHEMA_KEYS
    conn = connect(db_id)
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
    assert s["table_names_original"] == tables
    assert len(s["table_names"]) == len(tables)
    expected_cols: list[list[Any]] = [[-1, "*"]]
    expected_types = ["text"]
    expected_pks = []
    index: dict[tuple[str, str], int] = {}
    for ti, table in enumerate(tables):
        for _, name, ctype, _, _, pk in conn.execute(f"PRAGMA table_info({table})"):
            index[(table, name)] = len(expected_cols)
            if pk:
                expected_pks.append(len(expected_cols))
            expected_cols.append([ti, name])
            expected_types.append(SPIDER_TYPES[ctype])
    assert s["column_names_original"] == expected_cols
    assert [c[0] for c in s["column_names"]] == [c[0] for c in expected_cols]
    assert s["column_names"][0] == [-1, "*"]
    assert s["column_types"] == expected_types
    assert s["primary_keys"] == expected_pks
    assert len(expected_pks) == len(tables)  # one primary key per table
    expected_fks = []
    for table in tables:
        for row in sorted(conn.execute(f"PRAGMA foreign_key_list({table})"), key=lambda r: r[0]):
            parent, child_col, parent_col = row[2], row[3], row[4]
            expected_fks.append([index[(table, child_col)], index[(parent, parent_col)]])
    assert sorted(s["foreign_keys"]) == sorted(expected_fks)
    assert expected_fks
    assert not conn.execute("PRAGMA foreign_key_check").fetchall()


@pytest.mark.parametrize("split", SPLITS)
def test_gold_queries_execute(split: str) -> None:
    for q in questions(split):
        assert QUESTION_KEYS <= set(q) <= QUESTION_KEYS | {"evidence"}, q
        rows = connect(q["db_id"]).execute(q["query"]).fetchall()
        assert rows and any(v is not None for v in rows[0]), q["query"]
        assert q["question"].strip() and "SELECT" not in q["question"]


def test_order_by_limit_cuts_no_tie() -> None:
    """Where a query keeps the first k rows, rows k and k+1 differ in the sort key: the gold result is unique."""
    checked = 0
    for s in SPLITS:
        for q in questions(s):
            m = re.search(r" ORDER BY (.+?)(?: DESC| ASC)? LIMIT (\d+)$", q["query"])
            if not m:
                continue
            k = int(m.group(2))
            keyed = re.sub(r"^SELECT (?:DISTINCT )?.+? FROM ", f"SELECT {m.group(1)} FROM ", q["query"][: m.start(2)])
            keys = connect(q["db_id"]).execute(keyed.removesuffix(" LIMIT ")).fetchall()
            assert len(keys) <= k or keys[k - 1] != keys[k], q["query"]
            checked += 1
    assert checked >= 100


def test_splits_share_no_database() -> None:
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not split_dbs(a) & split_dbs(b), (a, b)
    assert set().union(*(split_dbs(s) for s in SPLITS)) == set(schemas())


@pytest.mark.parametrize("split", SPLITS)
def test_features_covered(split: str) -> None:
    counts: Counter[str] = Counter()
    for q in questions(split):
        for name, has in FEATURES.items():
            counts[name] += bool(has(q["query"]))
    missing = [name for name in FEATURES if not counts[name]]
    assert not missing, f"{split}: no question with {missing}"
    # Spider writes joins with aliases
    assert all(" AS T1 " in q["query"] for q in questions(split) if " JOIN " in q["query"])


def test_evidence() -> None:
    total = sum(len(questions(s)) for s in SPLITS)
    with_evidence = [q for s in SPLITS for q in questions(s) if "evidence" in q]
    assert 0.1 <= len(with_evidence) / total <= 0.15
    for s in SPLITS:
        assert any("evidence" in q for q in questions(s)), s
    for q in with_evidence:
        assert re.fullmatch(r"[\w-]+ refers to [\w ]+ (?:>=|<) -?[\d.]+", q["evidence"]), q["evidence"]


def test_tokens() -> None:
    for s in SPLITS:
        for q in questions(s):
            assert "".join(q["question_toks"]) == q["question"].replace(" ", "")
            assert "".join(q["query_toks"]).replace(" ", "") == q["query"].replace(" ", "")
            assert len(q["query_toks_no_value"]) == len(q["query_toks"])


def test_readme_states_prompt_lengths() -> None:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "## Prompt length" in text and "characters per token" in text
    assert "test_database/" in text and "`sql` field is omitted" in text


def test_package_data_lists_every_file() -> None:
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = patterns["experiments"]
    for p in SAMPLE.rglob("*"):
        if p.is_file():
            rel = PurePosixPath(p.relative_to(PACKAGE).as_posix())
            assert any(len(rel.parts) == len(PurePosixPath(pat).parts) and rel.match(pat) for pat in patterns), rel


def test_generator_is_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "spider_sample"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, capture_output=True, timeout=120)
    for name in ("README.md", "tables.json", "test_tables.json", *QUESTION_FILES.values()):
        assert (out / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    ours = sorted(p.relative_to(SAMPLE) for p in SAMPLE.glob("*/*/*.sqlite"))
    assert sorted(p.relative_to(out) for p in out.glob("*/*/*.sqlite")) == ours
    for rel in ours:
        a = sqlite3.connect(f"file:{SAMPLE / rel}?mode=ro", uri=True)
        b = sqlite3.connect(f"file:{out / rel}?mode=ro", uri=True)
        try:
            assert list(a.iterdump()) == list(b.iterdump()), rel
        finally:
            a.close()
            b.close()
