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
    # the best checkpoint chosen by val execution accuracy on each question's database, as on WikiSQL
    assert train["best_by"] == "execution_accuracy" and train["best_step"] is not None
    assert "val_execution_accuracy" in train["best_metrics"]
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


def test_a_sweep_over_multi_table_runs_compares_them_pair_by_pair(tmp_path):
    """Sweeps and experiments-compare work unchanged on multi-table runs: two prediction files scored in one
    multirun, nested under a parent whose comparison pairs them (no logical-form columns: there are none)."""
    prepared = run_cli("experiment=spider_smoke", "stages=[prepare]", "tracking=none",
                       f"hydra.run.dir={tmp_path / 'prep'}", cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-4000:]
    test = [json.loads(line) for line in (tmp_path / "prep" / "data" / "test.jsonl").read_text().splitlines()]
    files = []
    for name, wrong_every in (("half", 2), ("most", 5)):  # gold SQL, but every n-th question answered wrongly
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": r["id"], "sql": "SELECT 1" if i % wrong_every == 0 else r["sql"]})
                                + "\n" for i, r in enumerate(test)))
        files.append(str(path))
    result = run_cli("-m", "experiment=spider_smoke", "stages=[prepare,eval]", f"eval.predictions={','.join(files)}",
                     f"outputs_dir={tmp_path / 'outputs'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)
    accuracies = sorted(c.data.metrics["test/execution_accuracy"] for c in children)
    assert accuracies == pytest.approx([sum(i % 2 != 0 for i in range(len(test))) / len(test),
                                        sum(i % 5 != 0 for i in range(len(test))) / len(test)])
    table = (tmp_path / "sweep" / "comparison.md").read_text()
    assert "| 1 | spider_smoke | FINISHED |" in table and "## Pairs" in table and "McNemar" in table
    assert "logical_form_accuracy" not in table  # multi-table runs have no logical forms to compare
