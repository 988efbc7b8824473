"""The prepare and eval stages on multi-table data (the bundled Spider-layout sample): prompts with each question's
schema, the databases recorded, predictions scored on each question's database with Spider's or BIRD's semantics,
and the outputs (results, analysis, reports, metrics.json last) written once, no model needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_test_suite

import experiments.fileio as fileio
from experiments.analysis.breakdown import interval_metrics
from experiments.config import load_config
from experiments.data.prepared import PreparedSqlExample, read_databases, read_prepared
from experiments.runs.files import RunFiles
from experiments.stages.evaluate import run_eval
from experiments.stages.prepare import run_prepare
from experiments.tracking.metric_names import eval_logged


def prepared_run(tmp_path: Path, *overrides: str):
    cfg = load_config(["experiment=spider_smoke", "tracking=none", *overrides])
    run_prepare(cfg, tmp_path)
    return cfg, RunFiles(tmp_path)


def test_prepare_writes_schema_prompts_databases_and_the_report(tmp_path):
    cfg, files = prepared_run(tmp_path, "data.example_values=2")
    test = read_prepared(files.split("test"))
    assert len(test) == 225 and all(isinstance(p, PreparedSqlExample) for p in test)
    databases = read_databases(files.databases_jsonl)
    assert {p.example.db_id for p in test} <= set(databases)
    first = test[0]
    assert first.prompt.startswith("### Schema\nCREATE TABLE") and first.prompt.endswith("### SQL\n")
    assert "-- e.g." in first.prompt and "\n" not in first.target
    report = json.loads(files.data_report.read_text())
    assert report["prompt_version"] == "mt1" and report["databases"] == len(databases) == 36
    assert report["subsets"]["test"]["schemas"] == {"full": 225}
    assert report["subsets"]["val"]["drawn"] == 32 and report["subsets"]["val"]["databases"] == 5
    # val and test share no database
    val = read_prepared(files.split("val"))
    assert not {p.example.db_id for p in val} & {p.example.db_id for p in test}


def test_a_small_schema_budget_is_counted_never_silent(tmp_path):
    _, files = prepared_run(tmp_path, "data.schema_max_chars=400")
    schemas = json.loads(files.data_report.read_text())["subsets"]["test"]["schemas"]
    assert sum(schemas.values()) == 225 and schemas.get("full", 0) < 225
    assert set(schemas) <= {"full", "no_values", "question_columns", "over_budget"}


def write_predictions(path: Path, test) -> dict[str, str]:
    """Gold for every question but three: one wrong (it reads no table), one missing, one with its columns
    swapped."""
    predictions = {p.example.id: p.example.sql for p in test}
    ids = sorted(predictions)
    predictions[ids[0]] = "SELECT 1"
    del predictions[ids[1]]
    swap = next(p for p in test if p.example.sql.upper().startswith("SELECT NAME, ") and " FROM " in p.example.sql
                and p.example.id not in ids[:2])
    first, rest = swap.example.sql[len("SELECT "):].split(", ", 1)
    second, tail = rest.split(" FROM ", 1)
    predictions[swap.example.id] = f"SELECT {second}, {first} FROM {tail}"
    path.write_text("".join(json.dumps({"id": k, "sql": v}) + "\n" for k, v in predictions.items()))
    return predictions


@pytest.mark.parametrize(("compare", "matches"), [("spider", 223), ("bird", 222)])
def test_eval_scores_on_each_database_and_writes_each_output_once(tmp_path, monkeypatch, compare, matches):
    run_dir = tmp_path / "run"
    _, files = prepared_run(run_dir)
    test = read_prepared(files.split("test"))
    predictions = tmp_path / "predictions.jsonl"
    written_predictions = write_predictions(predictions, test)
    cfg = load_config(["experiment=spider_smoke", "tracking=none", f"eval.predictions={predictions}",
                       f"eval.compare={compare}"])
    written: list[str] = []
    atomically = fileio._write_atomically
    monkeypatch.setattr(fileio, "_write_atomically",
                        lambda path, write: (written.append(Path(path).name), atomically(path, write)))
    result = run_eval(cfg, run_dir)
    metrics = result["metrics"]
    assert metrics["semantics"] == compare and metrics["n"] == 225
    assert round(metrics["execution_accuracy"] * 225) == matches  # a swapped column is right by Spider's rule only
    assert metrics["missing_predictions"] == 1 and metrics["gold_errors"] == 0
    assert sum(level["n"] for level in metrics["by_hardness"].values()) == 225
    assert written[-1] == "metrics.json" and sorted(written) == sorted(set(written))  # each once, metrics last
    assert {"results.jsonl", "analysis.json", "report.md", "report.html"} <= set(written)
    rows = [json.loads(line) for line in files.results.read_text().splitlines()]
    assert len(rows) == 225 and all(r["hardness"] in ("easy", "medium", "hard", "extra") for r in rows)
    report = files.report_md.read_text()
    assert "By Spider hardness" in report and "By database" in report and f"{compare}'s semantics" in report
    analysis = json.loads(files.analysis_json.read_text())
    assert analysis["headline"]["execution_accuracy"]["successes"] == matches
    # the failures by what differs from gold, in results, metrics, analysis, reports and MLflow's metrics
    by_id = {r["id"]: r for r in rows}
    wrong = sorted(written_predictions)[0]
    swapped = next(i for i, sql in written_predictions.items() if sql.startswith("SELECT ") and by_id[i]["gold_sql"]
                   != sql and i != wrong)
    swapped_category = "correct" if compare == "spider" else "wrong_select"
    assert by_id[wrong]["category"] == "wrong_table" and by_id[swapped]["category"] == swapped_category
    assert metrics["categories"]["wrong_table"] == 1 and metrics["categories"]["wrong_result"] == 0
    assert analysis["categories"]["wrong_table"]["count"] == 1 and "wrong_join_key" in analysis["categories"]
    assert "| wrong_table |" in report and "wrong_table" in files.report_html.read_text()
    logged, counts = eval_logged(metrics, {})
    assert logged["category/wrong_table"] == 1 and logged["category/unknown_table"] == 0
    assert logged["category/wrong_select"] == (compare == "bird")
    assert logged["test/execution_accuracy"] == metrics["execution_accuracy"]
    assert {f"test/hardness/{level}" for level in ("easy", "medium", "hard", "extra")} <= set(logged)
    assert counts["count/scored_examples"] == 225


def test_eval_with_a_test_suite_counts_a_prediction_only_if_it_matches_on_every_variant(tmp_path):
    test_dbs = ("bank", "gym", "insurance", "marathon", "school")
    suite = write_test_suite(tmp_path / "suite", {"bank": ["UPDATE client SET age = 95 WHERE client_id = 5"]},
                             db_ids=test_dbs)
    run_dir = tmp_path / "run"
    _, files = prepared_run(run_dir, f"eval.test_suite_path={suite}")
    test = read_prepared(files.split("test"))
    predictions = {p.example.id: p.example.sql for p in test}
    oldest = next(p.example.id for p in test if p.example.sql == "SELECT max(age) FROM client")
    predictions[oldest] = "SELECT 88"  # the oldest client's age on the question's database, not on the variant
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({"id": k, "sql": v}) + "\n" for k, v in predictions.items()))
    cfg = load_config(["experiment=spider_smoke", "tracking=none", f"eval.predictions={path}",
                       f"eval.test_suite_path={suite}"])
    metrics = run_eval(cfg, run_dir)["metrics"]
    assert metrics["execution_accuracy"] == 1.0 and round(metrics["test_suite_accuracy"] * 225) == 224
    assert metrics["test_suite_databases"] == 6 and metrics["test_suite_gold_errors"] == 0
    assert json.loads(files.metrics.read_text())["test_suite_accuracy"] == metrics["test_suite_accuracy"]
    rows = {r["id"]: r for r in map(json.loads, files.results.read_text().splitlines())}
    assert rows[oldest]["exec_match"] and rows[oldest]["test_suite_match"] is False
    assert rows[oldest]["test_suite_failure"]["database"] == "bank_1.sqlite"
    assert sum(r["test_suite_match"] for r in rows.values()) == 224
    headline = json.loads(files.analysis_json.read_text())["headline"]["test_suite_accuracy"]
    assert headline["successes"] == 224 and headline["ci_low"] < headline["value"] < headline["ci_high"]
    assert "test-suite accuracy" in files.report_md.read_text()
    logged, counts = eval_logged(metrics, interval_metrics(json.loads(files.analysis_json.read_text())))
    assert logged["test/test_suite_accuracy"] == metrics["test_suite_accuracy"]
    assert logged["test/test_suite_accuracy_ci_low"] == headline["ci_low"]
    assert counts["count/test_suite_databases"] == 6


def test_a_test_database_without_its_test_suite_folder_stops_prepare_and_eval(tmp_path):
    suite = write_test_suite(tmp_path / "suite", {}, db_ids=("bank", "gym", "insurance", "marathon"))
    with pytest.raises(FileNotFoundError, match=r"suite/school: no test-suite folder for database 'school'"):
        prepared_run(tmp_path / "run", f"eval.test_suite_path={suite}")
    run_dir = tmp_path / "run2"
    _, files = prepared_run(run_dir)
    path = tmp_path / "predictions.jsonl"
    write_predictions(path, read_prepared(files.split("test")))
    cfg = load_config(["experiment=spider_smoke", "tracking=none", f"eval.predictions={path}",
                       f"eval.test_suite_path={suite}"])
    with pytest.raises(FileNotFoundError, match=r"suite/school: no test-suite folder"):
        run_eval(cfg, run_dir)
    assert not files.results.exists() and not files.metrics.exists()


def test_eval_counts_what_guidance_fixed_and_broke(tmp_path):
    sizes = ("data_size.train=8", "data_size.val=4", "data_size.test=3")
    cfg, files = prepared_run(tmp_path, *sizes)
    test = read_prepared(files.split("test"))
    rows = [  # guidance kept a right answer over a wrong top one; a wrong one over a right top; nothing changed
        {"id": test[0].example.id, "sql": test[0].example.sql, "candidate": 1, "guided_reason": "executes",
         "top_sql": "SELECT nope FROM nowhere"},
        {"id": test[1].example.id, "sql": "SELECT nope FROM nowhere", "candidate": 1, "guided_reason": "executes",
         "top_sql": test[1].example.sql},
        {"id": test[2].example.id, "sql": test[2].example.sql, "candidate": 0, "guided_reason": "executes"},
    ]
    files.predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = run_eval(cfg, tmp_path)["metrics"]
    assert (metrics["guided_changed"], metrics["guided_fixed"], metrics["guided_broke"]) == (2, 1, 1)
    assert metrics["execution_accuracy"] == 2 / 3  # the kept SQL is what is scored
    assert json.loads(files.metrics.read_text())["guided_fixed"] == 1
    assert "execution-guided: another candidate kept | 2 (fixed 1, broke 1" in files.report_md.read_text()
