"""The multi-table smoke run end to end through the command line (offline, CPU): the bundled Spider-layout sample
prepared with schema prompts, the tiny model trained with val execution accuracy on each question's database,
predictions generated under each database's grammar and scored by Spider's rules, the report by hardness, and all
of it in MLflow."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def test_spider_smoke_runs_every_stage_on_multi_table_data(tmp_path):
    result = run_cli("experiment=spider_smoke", f"outputs_dir={tmp_path / 'outputs'}",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = tmp_path / "run"
    for name in ("data/databases.jsonl", "data/test.jsonl", "adapter/adapter_config.json", "predictions.jsonl",
                 "results.jsonl", "analysis.json", "report.md", "report.html", "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"] == 225 and metrics["semantics"] == "spider" and metrics["gold_errors"] == 0
    assert sum(level["n"] for level in metrics["by_hardness"].values()) == 225
    assert sum(metrics["categories"].values()) == 225 and metrics["missing_predictions"] == 0
    train = json.loads((run_dir / "train_summary.json").read_text())
    assert train["train_loss_last"] < 0.5 * train["train_loss_first"]
    assert "By Spider hardness" in (run_dir / "report.md").read_text()
    infer = json.loads((run_dir / "infer_summary.json").read_text())
    assert infer["constrain"] == "grammar" and infer["grammar_rejected_tokens"] == 0
    databases = {json.loads(line)["db_id"] for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()}
    assert infer["grammars_compiled"] == len(databases) and infer["grammar_mask_seconds_per_token"] > 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["preset"] == "spider_smoke"
    assert run.data.params["data.source"] == "spider_sample"
    for metric in ("test/execution_accuracy", "test/valid_sql_rate", "test/hardness/easy", "test/hardness/extra",
                   "val/execution_accuracy", "category/syntax_error"):
        assert metric in run.data.metrics, metric
