"""WikiSQL from each source into one model; deterministic subsets; clear errors on bad data."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TABLE, write_release

from experiments.config import DataConfig, DataSource
from experiments.data.hub import load_hub
from experiments.data.model import DataError, Query
from experiments.data.official import load_split, resolve_release
from experiments.data.sources import load_source
from experiments.data.subsets import draw_subset


def test_official_directory_loads_ids_by_source_line(release_dir):
    split = load_split(release_dir, "dev")
    assert [e.id for e in split.examples] == ["dev-0", "dev-1", "dev-2", "dev-3"]
    assert split.examples[0].query == Query(sel=1, agg=0, conds=((0, 0, "antonio lang"),))
    table = split.tables["1-1000-dev"]
    assert table.header[2] == "School/Club Team" and table.types[1] == "real"


def test_official_tarball_extracts_once_into_cache(tmp_path):
    release = write_release(tmp_path / "src" / "data")
    tarball = tmp_path / "data.tar.bz2"
    with tarfile.open(tarball, "w:bz2") as archive:
        archive.add(release, arcname="data")
    cache = tmp_path / "cache"
    directory = resolve_release(str(tarball), cache)
    assert (directory / "train.jsonl").is_file()
    assert resolve_release(str(tarball), cache) == directory  # second call reuses the extraction
    cfg = DataConfig(source=DataSource.official, path=str(tarball), cache_dir=str(cache))
    assert len(load_source(cfg)["test"].examples) == 4


def _corrupt(release_dir: Path, split: str, line: int, text: str) -> None:
    path = release_dir / f"{split}.jsonl"
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_malformed_json_names_file_and_line(release_dir):
    _corrupt(release_dir, "train", 3, '{"phase": 1, "table_id": ')
    with pytest.raises(DataError, match=r"train\.jsonl line 3: malformed JSON"):
        load_split(release_dir, "train")


@pytest.mark.parametrize(("sql", "table_id", "message"), [
    ({"sel": 1, "agg": 0, "conds": []}, "1-9999-9", r"line 2: .*table '1-9999-9'.*not in the tables file"),
    ({"sel": 9, "agg": 0, "conds": []}, None, r"line 2: .*sel=9 is out of range"),
    ({"sel": 0, "agg": 0, "conds": [[7, 0, "x"]]}, None, r"line 2: .*condition column 7 is out of range"),
])
def test_bad_examples_name_file_and_line(release_dir, sql, table_id, message):
    obj = {"phase": 1, "table_id": table_id or "1-1000-train", "question": "q?", "sql": sql}
    _corrupt(release_dir, "train", 2, json.dumps(obj))
    with pytest.raises(DataError, match=message):
        load_split(release_dir, "train")


def test_unsupported_operator_is_skipped_and_counted(release_dir):
    obj = {"phase": 1, "table_id": "1-1000-train", "question": "q?", "sql": {"sel": 0, "agg": 0,
                                                                              "conds": [[1, 3, 2]]}}
    _corrupt(release_dir, "train", 1, json.dumps(obj))
    split = load_split(release_dir, "train")
    assert split.skipped == {"unsupported_operator": 1}
    assert [e.id for e in split.examples] == ["train-1", "train-2", "train-3"]  # ids keep source lines


def _hub_row(n: int, table_id: str) -> dict:
    """One row in the exact schema of Salesforce/wikisql's Parquet conversion (every cell a string)."""
    row = TABLE["rows"][n % len(TABLE["rows"])]
    return {
        "phase": 1,
        "question": f"What number does {row[0]} wear?",
        "table": {"header": TABLE["header"], "page_title": "Toronto Raptors all-time roster", "page_id": "",
                  "types": TABLE["types"], "id": table_id, "section_title": "L", "caption": "L",
                  "rows": [[str(c) for c in r] for r in TABLE["rows"]], "name": "table_1000_1"},
        "sql": {"human_readable": f"SELECT No. FROM table WHERE Player = {row[0]}", "sel": 1, "agg": 0,
                "conds": {"column_index": [0, 4], "operator_index": [0, 1], "condition": [row[0], "6.0"]}},
    }


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_hub_parquet_conversion_schema(tmp_path, fmt):
    for hub_split in ("train", "validation", "test"):
        rows = [_hub_row(n, f"1-1000-{hub_split}") for n in range(3)]
        folder = tmp_path / "default" / hub_split
        folder.mkdir(parents=True)
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), folder / "0000.parquet")
        else:
            (folder / "0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_hub(str(tmp_path), revision="refs/convert/parquet", cache_dir=str(tmp_path / "hf-cache"))
    dev = splits["dev"]
    assert [e.id for e in dev.examples] == ["dev-0", "dev-1", "dev-2"]
    assert dev.examples[1].query == Query(sel=1, agg=0, conds=((0, 0, "Voshon Lenard"), (4, 1, "6.0")))
    table = dev.tables["1-1000-validation"]
    assert table.rows[0][1] == 21.0 and table.rows[0][0] == "Antonio Lang"  # real cells become numbers


def test_subsets_are_seeded_nested_and_in_source_order():
    items = list(range(1000))
    a = draw_subset(items, 100, seed=7, subset="train")
    assert a == draw_subset(items, 100, seed=7, subset="train")
    assert a == sorted(a) and len(set(a)) == 100
    assert set(draw_subset(items, 50, seed=7, subset="train")) <= set(a)  # smaller sizes nest
    assert a != draw_subset(items, 100, seed=8, subset="train")
    assert a != draw_subset(items, 100, seed=7, subset="test")
    assert draw_subset(items, None, seed=7, subset="train") == items
    # pinned: identical on any machine and Python version (Mersenne Twister from an int seed)
    assert draw_subset(list(range(20)), 5, seed=42, subset="train") == [0, 1, 3, 7, 10]
