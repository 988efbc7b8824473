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
from experiments.data.official import load_split, resolve_release
from experiments.data.records import DataError, Query
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


def test_asking_a_split_for_more_examples_than_it_has_is_an_error(tmp_path):
    from experiments.config import load_config
    from experiments.stages.prepare import run_prepare

    cfg = load_config(["experiment=smoke", "data=sample", "data_size.val=1000", "tracking=none"])
    with pytest.raises(DataError) as info:
        run_prepare(cfg, tmp_path / "run")
    message = str(info.value)
    assert "data_size.val=1000" in message and "'dev' of data=sample" in message
    assert "only 160 usable examples" in message and "data_size.val=null" in message
    with pytest.raises(DataError, match="must be >= 0"):
        draw_subset(list(range(5)), -1, seed=0, subset="val")
    assert draw_subset(list(range(5)), 5, seed=0, subset="val") == list(range(5))  # all of them is fine


def test_the_hub_unreachable_fails_with_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what an offline machine with an empty cache sees, without waiting
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError) as info:
        load_hub(None, revision="refs/convert/parquet", cache_dir=str(tmp_path / "hf-datasets"))
    message = str(info.value)
    assert "Salesforce/wikisql@refs/convert/parquet" in message
    assert "data=official data.path=DIR_OR_TARBALL" in message and "HF_HUB_OFFLINE=1" in message


@pytest.mark.parametrize("content", [b"<html>404: Not Found</html>", b"BZh91AY&SY" + b"\x00" * 64, "cut"])
def test_an_unreadable_release_tarball_fails_naming_it(tmp_path, content):
    tarball = tmp_path / "data.tar.bz2"
    if content == "cut":  # a real tarball, cut short (an interrupted copy)
        release = write_release(tmp_path / "src" / "data", examples_per_split=200)
        with tarfile.open(tarball, "w:bz2") as archive:
            archive.add(release, arcname="data")
        content = tarball.read_bytes()[: tarball.stat().st_size // 2]
    tarball.write_bytes(content)
    with pytest.raises(DataError) as info:
        resolve_release(str(tarball), tmp_path / "cache")
    message = str(info.value)
    assert str(tarball) in message and "not a readable WikiSQL release tarball" in message
    assert "unpacked release directory" in message


def test_the_official_release_offline_fails_naming_the_url_and_the_way_out(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from experiments.data.official import RELEASE_URL

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        load_source(DataConfig(source=DataSource.official, cache_dir=str(tmp_path / "cache")))  # no data.path
    message = str(info.value)
    assert RELEASE_URL in message and "name resolution" in message
    assert "data=official data.path=DIR_OR_TARBALL" in message
    assert not list((tmp_path / "cache").iterdir())  # no half download left to be taken for a whole one


# ---------------------------------------------------------------- one release, read through both loaders

RELEASE_EXAMPLES = [  # (question, sql) on TABLE: numbers in text and real columns, a float, an empty question, OP
    ("What number does antonio lang wear?", {"sel": 1, "agg": 0, "conds": [[0, 0, "antonio lang"]]}),
    ("   ", {"sel": 1, "agg": 0, "conds": []}),
    ("Who was in Toronto in 1998?", {"sel": 0, "agg": 0, "conds": [[3, 0, 1998]]}),
    ("How many players are taller than 6.5 ft?", {"sel": 0, "agg": 3, "conds": [[4, 1, 6.5]]}),
    ("Which school had number 21?", {"sel": 2, "agg": 0, "conds": [[1, 0, 21]]}),
    ("Which school had number 32.0?", {"sel": 2, "agg": 0, "conds": [[1, 0, 32.0], [3, 0, "1996-97"]]}),
    ("Unsupported", {"sel": 0, "agg": 0, "conds": [[1, 3, 2]]}),
    ("Tallest from Kansas?", {"sel": 4, "agg": 1, "conds": [[2, 0, "Kansas"]]}),
]


def write_release_both_ways(root: Path) -> tuple[Path, Path]:
    """The same release in the official layout and as the Hub's conversion of it: the conversion script
    (huggingface/datasets' wikisql.py) stores every cell and condition value as str() of the release's value,
    and the conditions column-wise."""
    official, hub = root / "official", root / "hub"
    official.mkdir(parents=True)
    for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        table = dict(TABLE, id=f"1-1000-{split}")
        (official / f"{split}.tables.jsonl").write_text(json.dumps(table) + "\n")
        lines = [{"phase": 1, "table_id": table["id"], "question": q, "sql": sql} for q, sql in RELEASE_EXAMPLES]
        (official / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        rows = [{"phase": 1, "question": q,
                 "table": {**table, "rows": [[str(c) for c in r] for r in table["rows"]], "page_title": "",
                           "page_id": "", "section_title": "", "caption": "", "name": ""},
                 "sql": {"human_readable": "", "sel": sql["sel"], "agg": sql["agg"],
                         "conds": {"column_index": [c[0] for c in sql["conds"]],
                                   "operator_index": [c[1] for c in sql["conds"]],
                                   "condition": [str(c[2]) for c in sql["conds"]]}}}
                for q, sql in RELEASE_EXAMPLES]
        (hub / "default" / hub_split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), hub / "default" / hub_split / "0000.parquet")
    return official, hub


def test_the_hub_and_the_official_release_give_the_same_examples(tmp_path):
    from experiments.config import load_config
    from experiments.data.prepared import read_prepared
    from experiments.runs.files import RunFiles
    from experiments.stages.prepare import run_prepare

    official, hub = write_release_both_ways(tmp_path)
    runs = {}
    for name, overrides in (("official", ["data=official", f"data.path={official}"]),
                            ("hub", ["data=hub", f"data.path={hub}", f"data.cache_dir={tmp_path / 'hf'}"])):
        cfg = load_config(["experiment=smoke",
                           *overrides, "data_size.train=null", "data_size.val=null", "data_size.test=4"])
        run_prepare(cfg, tmp_path / name)
        runs[name] = RunFiles(tmp_path / name)
    for subset in ("train", "val", "test"):
        a, b = (read_prepared(runs[name].split(subset)) for name in ("official", "hub"))
        assert [p.to_json() for p in a] == [p.to_json() for p in b]  # ids, questions, logical forms, prompts, SQL
    report = {name: json.loads(files.data_report.read_text()) for name, files in runs.items()}
    for subset in ("train", "val", "test"):
        for key in ("ids_sha", "examples_sha", "available", "skipped"):
            assert report["official"]["subsets"][subset][key] == report["hub"]["subsets"][subset][key], key
    assert report["hub"]["subsets"]["train"]["skipped"] == {"empty_question": 1, "unsupported_operator": 1}
    gold = {p.example.id: p.target for p in read_prepared(runs["hub"].split("train"))}
    assert gold["train-2"] == """SELECT "Player" FROM "t" WHERE "Years in Toronto" = '1998'"""  # text column
    assert gold["train-5"] == ("""SELECT "School/Club Team" FROM "t" WHERE "No." = 32 """  # a real column: a number
                               """AND "Years in Toronto" = '1996-97'""")
