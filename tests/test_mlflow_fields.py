"""What a user sees of a run in MLflow's UI without opening it: its name, its source, user, commit and description,
the datasets it was trained and scored on, system metrics, and an experiment that opens in the training view."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from experiments.config import load_config
from experiments.pipeline import run_pipeline
from experiments.tracking import run_name


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
    cfg = load_config([*overrides, f"outputs_dir={tmp_path / 'outputs'}", "data_size.val=4", "data_size.test=4",
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
    assert "**smoke**: tiny_mistral" in tags["mlflow.note.content"] and "lr 0.003" in tags["mlflow.note.content"]
    inputs = {d.dataset.name: (d.dataset.digest, [t.value for t in d.tags]) for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"sample-train", "sample-val", "sample-test"}
    assert inputs["sample-test"][1] == ["test"] and len(inputs["sample-test"][0]) == 16
    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)
