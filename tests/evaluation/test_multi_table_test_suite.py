"""Test-suite accuracy (eval.test_suite_path): a prediction counts only if it matches on the question's database and
on every variant of it, so SQL that is right by accident on one database's contents is found out."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SPIDER_SAMPLE, write_test_suite
from conftest import DatabaseFile as Database
from conftest import Question as Example

from experiments.evaluation.multi_table_scoring import score_multi_table
from experiments.evaluation.suite_databases import find_suite_databases

OLDEST = "UPDATE client SET age = 95 WHERE client_id = 5"  # the oldest client was 88 in the sample


DATABASES = [Database(db_id, SPIDER_SAMPLE / "test_database" / db_id / f"{db_id}.sqlite") for db_id in ("bank", "gym")]
EXAMPLES = [
    Example("t0", "bank", "How old is the oldest client?", "SELECT max(age) FROM client"),
    Example("t1", "bank", "How many clients are there?", "SELECT count(*) FROM client"),
    Example("t2", "gym", "How many members are there?", "SELECT count(*) FROM member"),
]


def score(suite_root: Path, predictions: dict[str, str], **limits):
    suite = find_suite_databases(suite_root, {e.db_id for e in EXAMPLES})
    scored = score_multi_table(EXAMPLES, DATABASES, predictions, semantics="spider", progress=False,
                               test_suite=suite, **limits)
    return {r.id: r for r in scored.results}, scored.metrics


@pytest.mark.parametrize("max_open", [1, 4])
def test_a_prediction_right_by_accident_fails_on_a_variant_and_a_right_one_passes(tmp_path, max_open):
    root = write_test_suite(tmp_path / "suite", {"bank": [OLDEST, "DELETE FROM client WHERE client_id > 30"]},
                            db_ids=("gym",))
    results, metrics = score(root, {"t0": "SELECT 88",  # the right number on the original only
                                    "t1": "SELECT COUNT(client_id) FROM client",  # right on every database
                                    "t2": "SELECT count(*) FROM member"}, max_open=max_open)
    assert results["t0"].exec_match and results["t0"].test_suite_match is False
    assert results["t0"].test_suite_failure == {"database": "bank_1.sqlite", "category": "wrong_table",
                                                "error": None}
    assert results["t1"].exec_match and results["t1"].test_suite_match is True
    assert results["t1"].test_suite_failure is None
    assert results["t2"].test_suite_match is True  # gold verbatim: a folder with the original alone
    assert metrics["execution_accuracy"] == 1.0 and metrics["test_suite_accuracy"] == pytest.approx(2 / 3)
    assert metrics["test_suite_databases"] == 4 and metrics["test_suite_gold_errors"] == 0


def test_a_prediction_wrong_on_its_own_database_runs_on_no_variant(tmp_path):
    root = write_test_suite(tmp_path / "suite", {"bank": [OLDEST]}, db_ids=("gym",))
    results, metrics = score(root, {"t0": "SELECT 95", "t1": "SELECT count(*) FROM client", "t2": "SELECT 1"})
    # 95 is right on the variant, but the question's own database says 88: no test-suite match, nothing run
    assert not results["t0"].exec_match and results["t0"].test_suite_match is False
    assert results["t0"].test_suite_failure is None
    assert [results[i].test_suite_match for i in ("t1", "t2")] == [True, False]
    assert metrics["test_suite_accuracy"] == pytest.approx(1 / 3)


def test_gold_that_fails_on_a_variant_is_a_counted_miss_never_a_match(tmp_path):
    root = write_test_suite(tmp_path / "suite", {"bank": ["ALTER TABLE client RENAME TO customer"]},
                            db_ids=("gym",))
    results, metrics = score(root, {e.id: e.sql for e in EXAMPLES})
    assert results["t0"].exec_match and results["t0"].test_suite_match is False
    assert results["t0"].test_suite_failure["category"] == "gold_error"
    assert "no such table: client" in results["t0"].test_suite_failure["error"]
    assert metrics["test_suite_gold_errors"] == 2 and metrics["test_suite_accuracy"] == pytest.approx(1 / 3)
    assert any("2 gold queries failed on a test-suite database" in w for w in metrics["warnings"])


def test_variants_are_the_folders_sqlite_files_in_name_order(tmp_path):
    root = write_test_suite(tmp_path / "suite", {"bank": ["SELECT 1", "SELECT 1"]}, db_ids=("gym",))
    (root / "bank" / "bank.sqlite-journal").write_bytes(b"")
    (root / "bank" / "notes.txt").write_text("not a database")
    (root / "bank" / "extra.sqlite").mkdir()
    suite = find_suite_databases(root, ["bank", "gym", "bank"])
    assert [p.name for p in suite["bank"]] == ["bank.sqlite", "bank_1.sqlite", "bank_2.sqlite"]
    assert [p.name for p in suite["gym"]] == ["gym.sqlite"]


def test_a_database_without_its_folder_or_variants_stops_before_scoring(tmp_path):
    root = write_test_suite(tmp_path / "suite", {}, db_ids=("bank",))
    with pytest.raises(FileNotFoundError, match=r"suite/gym: no test-suite folder for database 'gym'"):
        find_suite_databases(root, ["bank", "gym"])
    (root / "gym").mkdir()
    (root / "gym" / "gym.db").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"suite/gym: no \*\.sqlite file"):
        find_suite_databases(root, ["bank", "gym"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_suite_databases(tmp_path / "nowhere", ["bank"])
    with pytest.raises(ValueError, match="cannot name a test-suite folder"):
        find_suite_databases(root, ["../suite/bank"])
    with pytest.raises(ValueError, match="no test-suite database for 'gym'"):
        score_multi_table(EXAMPLES, DATABASES, {"t0": "SELECT 88"}, semantics="spider", progress=False,
                          test_suite={"bank": (root / "bank" / "bank.sqlite",)})


def test_without_a_test_suite_nothing_changes(tmp_path):
    scored = score_multi_table(EXAMPLES, DATABASES, {"t0": "SELECT 88"}, semantics="spider", progress=False)
    assert scored.results[0].exec_match and scored.results[0].test_suite_match is None
    assert not any(key.startswith("test_suite") for key in scored.metrics)
