"""The bundled WikiSQL-format sample (src/experiments/data/sample/), read from disk with plain json: sizes,
table-disjoint splits, coverage of aggregations / operators / condition counts, WikiSQL-like headers and
case-differing values, and every gold query executing to a non-empty, NULL-free result in SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from experiments.data.prompt import format_number, quote_identifier, render_sql
from experiments.data.records import Query, Table

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "src" / "experiments" / "data" / "sample"
SPLITS = ("train", "dev", "test")
AGGS = range(6)  # '', MAX, MIN, COUNT, SUM, AVG
OPS = range(3)  # =, >, <
TABLE_KEYS = {"id", "header", "types", "rows", "page_title", "section_title", "caption", "name"}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def examples(split: str) -> list[dict[str, Any]]:
    return read_jsonl(SAMPLE / f"{split}.jsonl")


@cache
def tables(split: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in read_jsonl(SAMPLE / f"{split}.tables.jsonl")}


def all_examples() -> list[tuple[str, dict[str, Any]]]:
    return [(split, e) for split in SPLITS for e in examples(split)]


def all_tables() -> list[dict[str, Any]]:
    return [t for split in SPLITS for t in tables(split).values()]


@cache
def database(split: str, table_id: str) -> sqlite3.Connection:
    """The table in SQLite as the evaluator sees it: text columns compare case-insensitively."""
    t = tables(split)[table_id]
    conn = sqlite3.connect(":memory:")
    columns = ", ".join(f"{quote_identifier(h)} {'TEXT COLLATE NOCASE' if ty == 'text' else 'REAL'}"
                        for h, ty in zip(t["header"], t["types"], strict=True))
    conn.execute(f"CREATE TABLE {quote_identifier(t['name'])} ({columns})")
    marks = ", ".join("?" * len(t["header"]))
    conn.executemany(f"INSERT INTO {quote_identifier(t['name'])} VALUES ({marks})", t["rows"])
    return conn


def is_case_variant(example: dict[str, Any], table: dict[str, Any]) -> bool:
    for col, op, value in example["sql"]["conds"]:
        if op == 0 and table["types"][col] == "text":
            cells = [row[col] for row in table["rows"]]
            if value not in cells and value.lower() in {c.lower() for c in cells}:
                return True
    return False


def test_files_are_the_official_layout():
    for split in SPLITS:
        assert (SAMPLE / f"{split}.jsonl").is_file()
        assert (SAMPLE / f"{split}.tables.jsonl").is_file()
        for e in examples(split):
            assert set(e) == {"phase", "table_id", "question", "sql"}
            assert set(e["sql"]) == {"sel", "agg", "conds"}
            assert all(len(c) == 3 for c in e["sql"]["conds"])
        for t in tables(split).values():
            assert t.keys() >= TABLE_KEYS
            prefix, page, part = t["id"].split("-")
            assert prefix == "1" and page.isdigit() and part.isdigit()
            assert t["name"] == f"table_{page}_{part}"
    assert (SAMPLE / "README.md").is_file()
    # small enough to ship in the wheel
    assert sum(p.stat().st_size for p in SAMPLE.iterdir() if p.is_file()) < 2_000_000


def test_sizes():
    assert len(all_tables()) >= 60
    assert len(all_examples()) >= 500
    for split in SPLITS:
        assert len(tables(split)) >= 10 and len(examples(split)) >= 100
        used = {e["table_id"] for e in examples(split)}
        assert used == set(tables(split)), "every table is asked about, and every example's table is there"


def test_splits_are_table_disjoint():
    ids = [t["id"] for t in all_tables()]
    assert len(ids) == len(set(ids))
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(tables(a)) & set(tables(b))


def test_tables_are_wikisql_like():
    for t in all_tables():
        assert 4 <= len(t["header"]) <= 8, t["id"]
        assert 5 <= len(t["rows"]) <= 25, t["id"]
        assert len(t["types"]) == len(t["header"]) and set(t["types"]) == {"text", "real"}, t["id"]
        assert len({h.lower() for h in t["header"]}) == len(t["header"]), t["id"]
        assert Table.from_json(t).id == t["id"]
        for row in t["rows"]:
            assert len(row) == len(t["header"])
            for cell, ty in zip(row, t["types"], strict=True):
                if ty == "text":
                    assert isinstance(cell, str) and cell
                else:
                    assert isinstance(cell, int | float) and not isinstance(cell, bool)
    headers = {h for t in all_tables() for h in t["header"]}
    for ch in (" ", "/", ".", "#", "("):
        assert any(ch in h for h in headers), f"no header with {ch!r}"
    assert any(ch.isdigit() for t in all_tables() for row in t["rows"] for cell, ty in zip(row, t["types"],
               strict=True) if ty == "text" for ch in cell), "text cells with digits, like '1995–96'"
    assert len({t["page_title"] for t in all_tables()}) >= 60


@pytest.mark.parametrize("split", SPLITS)
def test_every_aggregation_operator_and_condition_count_in_each_split(split):
    aggs = Counter(e["sql"]["agg"] for e in examples(split))
    ops = Counter(c[1] for e in examples(split) for c in e["sql"]["conds"])
    nconds = Counter(len(e["sql"]["conds"]) for e in examples(split))
    assert all(aggs[a] > 0 for a in AGGS), aggs
    assert all(ops[o] > 0 for o in OPS), ops
    assert all(nconds[k] > 0 for k in range(5)), nconds
    assert set(nconds) <= set(range(5))


def test_condition_counts_overall():
    nconds = Counter(len(e["sql"]["conds"]) for _, e in all_examples())
    for k in (0, 3, 4):
        assert nconds[k] >= 15, nconds
    assert nconds[1] + nconds[2] > len(all_examples()) / 2, "mostly one or two conditions, like WikiSQL"


def test_logical_forms_are_well_typed():
    for split, e in all_examples():
        t = tables(split)[e["table_id"]]
        q = e["sql"]
        ncols = len(t["header"])
        assert 0 <= q["sel"] < ncols and q["agg"] in AGGS
        if q["agg"] in (1, 2, 4, 5):  # MAX, MIN, SUM, AVG
            assert t["types"][q["sel"]] == "real", e
        assert len({c for c, _, _ in q["conds"]}) == len(q["conds"])
        for col, op, value in q["conds"]:
            assert 0 <= col < ncols and op in OPS
            if t["types"][col] == "real":
                assert isinstance(value, int | float) and not isinstance(value, bool), e
            else:
                assert isinstance(value, str) and op == 0, e


def test_questions_mention_their_values_and_not_sql():
    for split, e in all_examples():
        t = tables(split)[e["table_id"]]
        question = e["question"]
        assert question.strip() == question and question[0].isupper() and question[-1] in "?."
        assert "SELECT" not in question and '"' not in question
        for col, _, value in e["sql"]["conds"]:
            shown = value if t["types"][col] == "text" else format_number(value)
            assert shown in question, (shown, question)


def test_many_condition_values_differ_in_case_from_the_cells():
    pairs = all_examples()
    varied = sum(is_case_variant(e, tables(split)[e["table_id"]]) for split, e in pairs)
    assert varied >= 0.3 * len(pairs), f"{varied}/{len(pairs)}"
    for split in SPLITS:
        assert any(is_case_variant(e, tables(split)[e["table_id"]]) for e in examples(split))


def test_every_gold_query_returns_a_non_empty_result_without_null():
    for split, e in all_examples():
        t = tables(split)[e["table_id"]]
        query = Query.from_json(e["sql"])
        conn = database(split, e["table_id"])
        sql = render_sql(query, Table.from_json(t), table_name=t["name"])
        result = conn.execute(sql).fetchall()
        assert result, (split, e, sql)
        assert all(v is not None for row in result for v in row), (split, e, sql)
        count = Query(sel=query.sel, agg=3, conds=query.conds)
        matched = conn.execute(render_sql(count, Table.from_json(t), table_name=t["name"])).fetchone()[0]
        assert matched > 0, (split, e, sql)


def test_case_differing_values_match_only_case_insensitively():
    """The gold SQL relies on NOCASE text columns: compared case-sensitively, the value matches no cell."""
    checked = 0
    for split, e in all_examples():
        t = tables(split)[e["table_id"]]
        if checked >= 20 or len(e["sql"]["conds"]) != 1 or not is_case_variant(e, t):
            continue
        col, _, value = e["sql"]["conds"][0]
        strict = sum(1 for row in t["rows"] if row[col] == value)
        where = f"{quote_identifier(t['header'][col])} = ?"
        loose = database(split, e["table_id"]).execute(
            f"SELECT COUNT(*) FROM {quote_identifier(t['name'])} WHERE {where}", (value,)).fetchone()[0]
        assert strict == 0 and loose > 0
        checked += 1
    assert checked == 20


def test_generator_reproduces_the_bundled_files(tmp_path):
    """The sample is exactly what `python scripts/make_sample.py` writes (fixed seed, deterministic)."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    bundled = sorted(p.name for p in SAMPLE.iterdir() if p.is_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == bundled
    for name in bundled:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
