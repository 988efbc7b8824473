"""What a user sees of a run in MLflow's UI without opening it: its name, its source, user, commit and description,
the datasets it was trained and scored on, system metrics, and an experiment that opens in the training view."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from experiments.analysis.run_facts import run_facts
from experiments.config import load_config
from experiments.pipeline import run_description, run_pipeline
from experiments.runs.files import RunFiles
from experiments.tracking.mlflow_tracker import run_name


def test_run_names_say_the_preset_and_what_the_command_line_changed():
    assert run_name("smoke", []) == "smoke"
    assert run_name("smoke", ["training.learning_rate=0.003", "hydra.run.dir=/tmp/x", "outputs_dir=o"]) == \
        "smoke lr=0.003"
    assert run_name("baseline", ["experiment=baseline", "data_size.train=4000", "training.num_epochs=2",
                                 "tracking.uri=http://x"]) == "baseline train=4000 epochs=2"


@pytest.mark.slow
def test_a_run_fills_mlflows_own_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # a sample every second, for a short run
    overrides = ("training.learning_rate=0.003", "training.max_steps=2", "data_size.train=16")
    cfg = load_config(["experiment=smoke",
                       *overrides, f"outputs_dir={tmp_path / 'outputs'}", "data_size.val=4", "data_size.test=4",
                       "training.eval_steps=2", "inference.max_new_tokens=4"])
    summary = run_pipeline(cfg, tmp_path / "run", overrides=overrides)
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("text2sql-lora")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not MLflow 3's GenAI view
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.run_name == "smoke lr=0.003 steps=2 train=16" and run.data.tags["preset"] == "smoke"
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"].startswith("experiments")
    assert len(tags["mlflow.source.git.commit"]) >= 7 and tags["mlflow.user"]
    assert "**smoke**: tiny_mistral" in tags["mlflow.note.content"]
    assert "learning rate 0.003" in tags["mlflow.note.content"]
    inputs = {d.dataset.name: (d.dataset.digest, [t.value for t in d.tags]) for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"sample-train", "sample-val", "sample-test"}
    assert inputs["sample-test"][1] == ["test"] and len(inputs["sample-test"][0]) == 16
    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)
    # One naming scheme whose prefixes are the UI's metric sections; counts are params, not one-point curves
    sections = {key.split("/", 1)[0] for key in run.data.metrics}
    assert sections <= {"train", "val", "test", "infer", "time", "category", "system"}, sections
    assert {"test/execution_accuracy", "test/execution_accuracy_ci_low", "val/loss", "val/execution_accuracy",
            "train/loss", "train/learning_rate", "time/train_s", "time/infer_s", "category/correct"} <= \
        set(run.data.metrics)
    assert run.data.params["count/train_examples"] == "16" and run.data.params["count/scored_examples"] == "4"
    assert not any(key.startswith("count/") for key in run.data.metrics)


def test_names_group_trainer_logs_and_drop_repeats():
    from experiments.tracking.metric_names import eval_logged, trainer_log_metrics

    assert trainer_log_metrics({"loss": 1.5, "learning_rate": 1e-3, "epoch": 0.5, "num_input_tokens_seen": 900,
                                "eval_loss": 1.2, "eval_runtime": 3.0, "eval_samples_per_second": 9.0,
                                "val_execution_accuracy": 0.25, "val_generation_seconds": 4.0,
                                "train_runtime": 10.0, "some_new_key": 7}) == {
        "train/loss": 1.5, "train/learning_rate": 1e-3, "train/epoch": 0.5, "train/tokens_seen": 900,
        "val/loss": 1.2, "time/val_loss_s": 3.0, "val/execution_accuracy": 0.25, "time/val_generation_s": 4.0,
        "train/some_new_key": 7}
    metrics, params = eval_logged({"execution_accuracy": 0.5, "n": 8, "categories": {"correct": 4},
                                   "warnings": [], "eval_seconds": 0.1}, {"execution_accuracy_ci_low": 0.2})
    assert metrics == {"test/execution_accuracy": 0.5, "test/execution_accuracy_ci_low": 0.2,
                       "time/scoring_s": 0.1, "category/correct": 4}
    assert params == {"count/scored_examples": 8}


def test_the_source_column_shows_the_command_not_the_last_part_of_a_path(monkeypatch):
    from experiments.tracking.mlflow_tracker import system_tags

    monkeypatch.setattr("sys.argv", ["/venv/bin/experiments", "experiment=learn", "outputs_dir=/data/outputs",
                                     "training.max_steps=40"])
    tags = system_tags("description")
    assert tags["mlflow.source.name"] == "experiments experiment=learn training.max_steps=40"  # no "/" in it


def test_the_description_is_the_runs_facts_planned_at_the_start_and_recorded_at_the_end(tmp_path):
    """One description of a run: the reports' facts, as Markdown; from the config alone when the MLflow run opens,
    with what the stages recorded when it closes."""
    cfg = load_config(["experiment=smoke", "training.learning_rate=0.003"])
    planned = run_description(cfg, ["training.learning_rate=0.003"])
    assert planned.startswith("**smoke**: tiny_mistral") and "learning rate 0.003" in planned
    assert "- **stages**: prepare, train, infer, eval" in planned
    assert planned.endswith("`experiments training.learning_rate=0.003`")
    files = RunFiles(tmp_path)
    files.train_summary.write_text(json.dumps({"global_steps": 7, "effective_batch": 16, "best_step": 5,
                                               "best_by": "execution_accuracy"}))
    recorded = run_description(cfg, [], files)
    assert "7 steps of 16 examples" in recorded and "adapter from step 5" in recorded
    assert all(text in recorded for _, text in run_facts(cfg, files))
