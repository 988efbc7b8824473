"""The multi-table data model (data/schema.py), the Spider and BIRD loaders (data/spider.py) and the val/test rule
for data sets without a test split (data/multi_table_subsets.py), on the bundled Spider-layout sample and on a
BIRD-layout copy of it written per test."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from experiments.data import spider as spider_module
from experiments.data.multi_table_subsets import draw_multi_table_subsets, split_dev_by_database, subset_pools
from experiments.data.records import DataError
from experiments.data.schema import Database, MultiTableSplit, SqlExample
from experiments.data.spider import load_bird, load_spider

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "experiments" / "data" / "spider_sample"
README_COUNTS = {"train": (26, 1170, 136), "dev": (5, 225, 30), "test": (5, 225, 30)}  # databases, questions, evidence


@pytest.fixture(scope="module")
def sample() -> dict[str, MultiTableSplit]:
    return load_spider(SAMPLE)


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def spider_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "spider"))


def bird_split(source: Path, root: Path, split: str, questions_file: str, db_folder: str, *,
               composite_keys: bool = False) -> None:
    """One BIRD split folder made from a sample split: SQL key, evidence always there ("" for none), dev's
    question_id and difficulty, {split}_tables.json, {split}_databases/<db>/ with a database_description/."""
    questions = []
    for n, q in enumerate(read(source / questions_file)):
        item = {"db_id": q["db_id"], "question": q["question"], "evidence": q.get("evidence", ""), "SQL": q["query"]}
        if split == "dev":
            item = {"question_id": n, **item, "difficulty": ("simple", "moderate", "challenging")[n % 3]}
        questions.append(item)
    write(root / f"{split}.json", questions)
    used = {q["db_id"] for q in questions}
    schemas = [s for s in read(source / ("test_tables.json" if db_folder == "test_database" else "tables.json"))
               if s["db_id"] in used]
    if composite_keys:  # BIRD writes a composite key as a list of column indices
        for schema in schemas:
            schema["primary_keys"] = [[k] if i % 2 else k for i, k in enumerate(schema["primary_keys"])]
    write(root / f"{split}_tables.json", schemas)
    for db_id in sorted(used):
        target = root / f"{split}_databases" / db_id
        target.mkdir(parents=True)
        shutil.copy(source / db_folder / db_id / f"{db_id}.sqlite", target / f"{db_id}.sqlite")
        (target / "database_description").mkdir()
        (target / "database_description" / "some_table.csv").write_text("original_column_name,column_description\n")


def bird_copy(tmp_path: Path, *, train: bool = True, dev_folder: str = "dev_20240627") -> Path:
    """BIRD's layout from the sample: train/ from its train split, dev_20240627/ from its dev split."""
    root = tmp_path / "bird"
    if train:
        bird_split(SAMPLE, root / "train", "train", "train_spider.json", "database")
    bird_split(SAMPLE, root / dev_folder, "dev", "dev.json", "database", composite_keys=True)
    return root


def same_content(database: Database) -> tuple[Any, ...]:
    return database.id, database.tables, database.foreign_keys


# ---------------------------------------------------------------------------------------------- the sample


def test_sample_loads_as_its_readme_says(sample: dict[str, MultiTableSplit]) -> None:
    assert sorted(sample) == ["dev", "test", "train"]
    for name, (databases, questions, with_evidence) in README_COUNTS.items():
        split = sample[name]
        assert split.name == name and split.skipped == {}
        assert len(split.databases) == databases and len(split.examples) == questions
        assert sum(e.evidence is not None for e in split.examples) == with_evidence
        assert [e.id for e in split.examples] == [f"{name}-{n}" for n in range(questions)]
        for example in split.examples:
            database = split.databases[example.db_id]
            assert database.path.is_file() and database.path.name == f"{example.db_id}.sqlite"
            assert example.sql.strip() and example.question.strip() and example.difficulty is None
    assert len({db for split in sample.values() for db in split.databases}) == 36
    assert all(db.path.parent.parent == SAMPLE / "test_database" for db in sample["test"].databases.values())
    assert all(db.path.parent.parent == SAMPLE / "database" for name in ("train", "dev")
               for db in sample[name].databases.values())
    assert sum(len(db.tables) for split in sample.values() for db in split.databases.values()) == 142


def test_schema_follows_tables_json(sample: dict[str, MultiTableSplit]) -> None:
    entry = next(s for s in read(SAMPLE / "tables.json") if s["db_id"] == "hospital")
    database = sample["dev"].databases.get("hospital") or sample["train"].databases["hospital"]
    assert [t.name for t in database.tables] == entry["table_names_original"]
    columns = [(c.name, c.type) for t in database.tables for c in t.columns]
    assert columns == [(name, type_) for (table, name), type_ in zip(entry["column_names_original"],
                                                                     entry["column_types"], strict=True) if table >= 0]
    assert database.table("PHYSICIAN") is database.tables[1]
    assert database.tables[1].primary_key == ("physician_id",)
    fk = database.foreign_keys[0]
    assert (fk.table, fk.column, fk.ref_table, fk.ref_column) == ("physician", "department_id", "department",
                                                                  "department_id")


def test_round_trip_through_json(sample: dict[str, MultiTableSplit]) -> None:
    for database in sample["test"].databases.values():
        assert Database.from_json(json.loads(json.dumps(database.to_json()))) == database
    examples = [*sample["dev"].examples[:50],
                SqlExample("dev-9", "x", "q?", "SELECT 1", evidence="e", difficulty="moderate")]
    for example in examples:
        assert SqlExample.from_json(json.loads(json.dumps(example.to_json()))) == example


def test_train_others_is_appended_and_skips_are_counted(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    train = read(root / "train_spider.json")
    others = [dict(train[0], question="  "), dict(train[1], query=""), train[2]]
    write(root / "train_others.json", others)
    split = load_spider(root)["train"]
    assert split.skipped == {"empty_question": 1, "empty_sql": 1}
    assert len(split.examples) == len(train) + 1
    assert split.examples[-1].id == f"train-{len(train) + 2}"  # n counts the skipped questions too
    assert split.examples[-1].question == train[2]["question"]


def test_no_test_json_means_train_and_dev_only(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    (root / "test.json").unlink()
    assert sorted(load_spider(root)) == ["dev", "train"]


def test_test_database_falls_back_to_database(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    shutil.move(root / "test_database" / "gym", root / "database" / "gym")
    test = load_spider(root)["test"]
    assert test.databases["gym"].path == root / "database" / "gym" / "gym.sqlite"
    assert test.databases["bank"].path == root / "test_database" / "bank" / "bank.sqlite"


def test_parent_folder_of_the_release_is_accepted(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    assert len(load_spider(root.parent)["dev"].examples) == 225


# ---------------------------------------------------------------------------------------------- BIRD


def test_bird_layout_loads_to_the_same_questions_and_databases(sample: dict[str, MultiTableSplit],
                                                               tmp_path: Path) -> None:
    root = bird_copy(tmp_path)
    bird = load_bird(root)
    assert sorted(bird) == ["dev", "train"]
    for name in ("train", "dev"):
        got, want = bird[name], sample[name]
        assert got.skipped == {}
        assert [(e.id, e.db_id, e.question, e.sql, e.evidence) for e in got.examples] == \
            [(e.id, e.db_id, e.question, e.sql, e.evidence) for e in want.examples]
        assert sorted(map(same_content, got.databases.values())) == sorted(map(same_content, want.databases.values()))
        folder = "train" if name == "train" else "dev_20240627"
        assert all(db.path == root / folder / f"{name}_databases" / db.id / f"{db.id}.sqlite"
                   for db in got.databases.values())
    assert [e.difficulty for e in bird["dev"].examples[:3]] == ["simple", "moderate", "challenging"]
    assert all(e.difficulty is None for e in bird["train"].examples)


@pytest.mark.parametrize("dev_folder", ["dev", "dev_20240627"])
def test_bird_dev_only_layouts(tmp_path: Path, dev_folder: str) -> None:
    root = bird_copy(tmp_path, train=False, dev_folder=dev_folder)
    from_parent, from_folder = load_bird(root), load_bird(root / dev_folder)
    assert sorted(from_parent) == sorted(from_folder) == ["dev"]
    assert from_parent["dev"].examples == from_folder["dev"].examples
    assert len(from_parent["dev"].examples) == 225 and len(from_parent["dev"].databases) == 5
    assert sorted(load_bird(root.parent / "bird" / dev_folder)) == ["dev"]


def test_bird_train_folder_itself(tmp_path: Path) -> None:
    root = bird_copy(tmp_path)
    assert sorted(load_bird(root / "train")) == ["train"]


def test_bird_errors(tmp_path: Path) -> None:
    root = bird_copy(tmp_path, train=False)
    dev = root / "dev_20240627"
    questions = read(dev / "dev.json")
    write(dev / "dev.json", [*questions[:4], {k: v for k, v in questions[4].items() if k != "SQL"}])
    with pytest.raises(DataError, match=r"dev\.json item 4: missing 'SQL'"):
        load_bird(root)
    write(dev / "dev.json", questions)
    shutil.make_archive(str(dev / "dev_databases"), "zip", dev, "dev_databases")
    shutil.rmtree(dev / "dev_databases")
    with pytest.raises(DataError, match=r"dev_databases: missing; unzip .*dev_databases\.zip"):
        load_bird(root)
    shutil.copytree(dev, root / "dev")
    with pytest.raises(DataError, match="several BIRD dev folders"):
        load_bird(root)
    with pytest.raises(DataError, match="dev_databases.zip: not a directory"):
        load_bird(dev / "dev_databases.zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no BIRD data"):
        load_bird(empty)


# ---------------------------------------------------------------------------------------------- malformed input


def test_missing_tables_json(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    (root / "tables.json").unlink()
    with pytest.raises(DataError, match=r"tables\.json: missing"):
        load_spider(root)


def test_missing_question_file(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    (root / "dev.json").unlink()
    with pytest.raises(DataError, match=re.escape(f"{root / 'dev.json'}: missing")):
        load_spider(root)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("dev.json", '[\n  {"db_id": "x",\n   "question": }\n]\n',
     r"dev\.json: malformed JSON \(Expecting value at line 3 column 16\)"),
    ("dev.json", '[{"db_id": "x",', r"dev\.json: malformed JSON \(.* at column 16\)"),
    ("tables.json", '{"db_id": "x"}', r"tables\.json: expected a JSON list at the top level, got dict"),
    ("dev.json", "[1]", r"dev\.json item 0: expected a JSON object, got int"),
    ("dev.json", b"[\"\xff\"]", r"dev\.json: not valid UTF-8"),
])
def test_bad_json(tmp_path: Path, name: str, text: str | bytes, message: str) -> None:
    root = spider_copy(tmp_path)
    (root / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=message):
        load_spider(root)


def test_oversized_json_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = spider_copy(tmp_path)
    monkeypatch.setattr(spider_module, "MAX_JSON_BYTES", 1000)
    with pytest.raises(DataError, match=r"tables\.json: [\d,]+ bytes, over the 1,000 bytes .* refused unread"):
        load_spider(root)


@pytest.mark.parametrize(("change", "message"), [
    (lambda q: q.pop("query"), r"dev\.json item 17: missing 'query'"),
    (lambda q: q.pop("question"), r"dev\.json item 17: missing 'question'"),
    (lambda q: q.update(query=["SELECT 1"]), r"dev\.json item 17: 'query' is a list, not a string"),
    (lambda q: q.update(evidence=3), r"dev\.json item 17: 'evidence' is a int, not a string"),
    (lambda q: q.update(db_id="nowhere"), r"dev\.json item 17: db_id 'nowhere' has no schema in .*tables\.json"),
    (lambda q: q.update(db_id="../database/hospital"), r"dev\.json item 17: db_id .* is not a plain folder name"),
])
def test_bad_question(tmp_path: Path, change: Any, message: str) -> None:
    root = spider_copy(tmp_path)
    questions = read(root / "dev.json")
    change(questions[17])
    write(root / "dev.json", questions)
    with pytest.raises(DataError, match=message):
        load_spider(root)


def test_missing_sqlite_file(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    db_id = read(root / "dev.json")[0]["db_id"]
    (root / "database" / db_id / f"{db_id}.sqlite").unlink()
    with pytest.raises(DataError, match=rf"{db_id}\.sqlite: missing; it is the SQLite file of database '{db_id}' "
                                        r"\(.*dev\.json item 0 uses it\)"):
        load_spider(root)


def test_unreadable_sqlite_file(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    db_id = read(root / "dev.json")[0]["db_id"]
    (root / "database" / db_id / f"{db_id}.sqlite").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(DataError, match=rf"{db_id}\.sqlite: not a readable SQLite database"):
        load_spider(root)


def edit_schema(root: Path, db_id: str, change: Any, name: str = "tables.json") -> int:
    schemas = read(root / name)
    index = next(i for i, s in enumerate(schemas) if s["db_id"] == db_id)
    change(schemas[index])
    write(root / name, schemas)
    return index


def test_schema_and_file_disagree(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    db_id = read(root / "dev.json")[0]["db_id"]

    def rename_first_table(schema: dict[str, Any]) -> None:
        schema["table_names_original"][0] = "no_such_table"

    edit_schema(root, db_id, rename_first_table)
    sqlite = root / "database" / db_id / f"{db_id}.sqlite"
    with pytest.raises(DataError, match=re.escape(f"{root / 'tables.json'} lists tables ['no_such_table'] that "
                                                  f"{sqlite} lacks")) as caught:
        load_spider(root)
    assert f"{sqlite} has tables [" in str(caught.value)


def test_table_names_compare_case_insensitively(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    db_id = read(root / "dev.json")[0]["db_id"]
    edit_schema(root, db_id, lambda s: s.update(table_names_original=[t.upper() for t in s["table_names_original"]]))
    assert load_spider(root)["dev"].databases[db_id].tables[0].name.isupper()


def test_unused_schema_is_not_checked_against_a_file(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    schemas = read(root / "tables.json")
    write(root / "tables.json", [*schemas, dict(schemas[0], db_id="unused_db")])
    assert "unused_db" not in load_spider(root)["train"].databases


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["foreign_keys"].append([999, 1]), r"foreign key column 999 is out of range \(0\.\.\d+\)"),
    (lambda s: s["foreign_keys"].append([1, 0]), r"foreign key's referenced column 0 is the '\*' column"),
    (lambda s: s["primary_keys"].append(-2), r"primary key column -2 is out of range"),
    (lambda s: s["column_names_original"].__setitem__(1, [7, "x"]), r"column 1's table index 7 is out of range"),
    (lambda s: s["column_types"].pop(), r"\d+ entries in 'column_names_original' but \d+ in 'column_types'"),
    (lambda s: s.pop("table_names_original"), r"'table_names_original' is missing or not a list"),
    (lambda s: s["table_names_original"].append(s["table_names_original"][0].upper()),
     r"'table_names_original' names a table twice"),
])
def test_bad_schema_entry(tmp_path: Path, change: Any, message: str) -> None:
    root = spider_copy(tmp_path)
    index = edit_schema(root, "hospital", change)
    with pytest.raises(DataError, match=rf"tables\.json item {index} \(db_id 'hospital'\): {message}"):
        load_spider(root)


def test_db_id_given_twice(tmp_path: Path) -> None:
    root = spider_copy(tmp_path)
    schemas = read(root / "tables.json")
    write(root / "tables.json", [*schemas, schemas[0]])
    with pytest.raises(DataError, match=rf"tables\.json item {len(schemas)}: db_id '{schemas[0]['db_id']}' appears "
                                        "twice"):
        load_spider(root)


# ---------------------------------------------------------------------------------------------- subsets


def test_dev_only_val_and_test_share_no_database(tmp_path: Path) -> None:
    bird = load_bird(bird_copy(tmp_path))
    pools = subset_pools(bird, seed=7)
    assert sorted(pools) == ["test", "train", "val"]
    val, test = pools["val"].examples, pools["test"].examples
    assert not {e.db_id for e in val} & {e.db_id for e in test}
    assert sorted(e.id for e in val + test) == sorted(e.id for e in bird["dev"].examples)
    assert val == sorted(val, key=lambda e: int(e.id.split("-")[1]))  # source order kept
    assert abs(len(val) - len(test)) <= max(sum(e.db_id == db for e in val + test) for db in bird["dev"].databases)
    assert pools["train"].examples == bird["train"].examples
    # deterministic: the same seed gives the same split, on a fresh load too
    again = subset_pools(load_bird(tmp_path / "bird"), seed=7)
    assert [e.id for e in again["val"].examples] == [e.id for e in val]
    seeds = {tuple(sorted({e.db_id for e in split_dev_by_database(bird["dev"].examples, s)[0]})) for s in range(20)}
    assert len(seeds) > 1  # the seed picks the split


def test_split_is_pinned(sample: dict[str, MultiTableSplit]) -> None:
    """Stable across machines and Python versions: a change here changes every BIRD run's val/test sets."""
    val, test = split_dev_by_database(sample["dev"].examples, seed=0)
    assert (sorted({e.db_id for e in val}), sorted({e.db_id for e in test})) == (["real_estate", "winery", "zoo"],
                                                                                  ["cinema", "hospital"])
    assert (len(val), len(test)) == (135, 90)  # 5 databases of 45 questions: the closest split


def test_with_a_test_split_val_is_dev_and_test_is_test(sample: dict[str, MultiTableSplit]) -> None:
    pools = subset_pools(sample, seed=0)
    assert pools["val"].examples == sample["dev"].examples
    assert pools["test"].examples == sample["test"].examples


def test_draws_are_nested_and_errors_name_the_pool(tmp_path: Path) -> None:
    bird = load_bird(bird_copy(tmp_path, train=False))
    small = draw_multi_table_subsets(bird, {"val": 10, "test": 10}, seed=3)
    large = draw_multi_table_subsets(bird, {"val": 40, "test": None}, seed=3)
    assert set(e.id for e in small["val"]) <= set(e.id for e in large["val"])
    assert set(e.id for e in small["test"]) <= set(e.id for e in large["test"])
    with pytest.raises(DataError, match=r"data_size\.val=1000: the val half of the dev split \(split by database\) "
                                        r"has only \d+"):
        draw_multi_table_subsets(bird, {"val": 1000}, seed=3)
    with pytest.raises(DataError, match=r"data_size\.train: no train examples loaded"):
        draw_multi_table_subsets(bird, {"train": 5}, seed=3)


def test_one_dev_database_cannot_be_split() -> None:
    examples = [SqlExample(f"dev-{n}", "only", "q?", "SELECT 1") for n in range(3)]
    with pytest.raises(DataError, match="needs at least 2"):
        split_dev_by_database(examples, seed=0)


def test_odd_characters_in_the_path_and_files_left_unchanged(tmp_path: Path) -> None:
    """The read-only URI quotes the path (a '?', '#' or '%' in it would otherwise cut it short), and opening a
    database changes nothing in its file."""
    root = Path(shutil.copytree(SAMPLE, tmp_path / "odd ?dir #1 %20"))
    before = {p: p.read_bytes() for p in root.rglob("*.sqlite")}
    splits = load_spider(root)
    assert len(splits["dev"].databases) == 5
    assert {p: p.read_bytes() for p in root.rglob("*.sqlite")} == before
    assert sorted(p.name for p in (root / "database" / "hospital").iterdir()) == ["hospital.sqlite"]
