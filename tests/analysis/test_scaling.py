"""The scaling preset: its sweep (set inside the preset, replaceable from the command line), the shared test
examples across training sizes, and the curve a scaling sweep leaves in its parent MLflow run."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from test_compare import write_run

from experiments.analysis.run_records import load_run
from experiments.analysis.scaling import plot_scaling, scaling_points, varies_train_size
from experiments.config import conf_dir, register_schema
from experiments.data.subsets import draw_subset
from experiments.sweep import write_sweep_comparison


def test_scaling_preset_defaults_to_the_real_model_and_sweeps_size_and_epochs():
    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=scaling"], return_hydra_config=True)
    assert cfg.preset == "scaling" and cfg.model.name == "mistral_7b" and cfg.quantization.mode == "nf4"
    assert cfg.hydra.sweeper.params["data_size.train"] == "200,1000,4000,8000"
    assert cfg.hydra.sweeper.params["training.num_epochs"] == "1,2"


def test_test_and_val_draws_do_not_depend_on_the_training_size(tmp_path):
    from experiments.config import load_config
    from experiments.stages.prepare import run_prepare

    reports = {}
    for train in (20, 80):
        cfg = load_config(["experiment=smoke",
                           f"data_size.train={train}", "data_size.val=16", "data_size.test=16", "tracking=none"])
        run_prepare(cfg, tmp_path / f"train{train}")
        reports[train] = json.loads((tmp_path / f"train{train}" / "data" / "report.json").read_text())["subsets"]
    for subset in ("val", "test"):  # the same examples whatever the training size: points on a curve compare
        assert reports[20][subset]["ids_sha"] == reports[80][subset]["ids_sha"]
        assert reports[20][subset]["examples_sha"] == reports[80][subset]["examples_sha"]
    assert reports[20]["train"]["ids_sha"] != reports[80]["train"]["ids_sha"]
    items = list(range(500))
    small, large = draw_subset(items, 20, 42, "train"), draw_subset(items, 80, 42, "train")
    assert set(small) <= set(large)  # nested training sets


def scaling_runs(tmp_path):
    runs = []
    for job, (size, epochs, hits) in enumerate([(100, 1, 2), (400, 1, 4), (100, 2, 3), (400, 2, 5)]):
        root = write_run(tmp_path / f"{job}_scaling", [True] * hits + [False] * (6 - hits))
        (root / "train_summary.json").write_text(json.dumps({"train_examples": size, "train_seconds": size * epochs}))
        (root / ".hydra").mkdir()
        (root / ".hydra" / "overrides.yaml").write_text(
            f"- data_size.train={size}\n- training.num_epochs={epochs}\n- experiment=scaling\n")
        runs.append(load_run(root))
    return runs


def test_scaling_points_are_grouped_by_the_other_swept_settings(tmp_path):
    runs = scaling_runs(tmp_path)
    assert varies_train_size(runs)
    points = scaling_points(runs)
    assert [(p.series, p.train_examples, p.train_seconds) for p in points] == [
        ("training.num_epochs=1", 100, 100.0), ("training.num_epochs=1", 400, 400.0),
        ("training.num_epochs=2", 100, 200.0), ("training.num_epochs=2", 400, 800.0)]
    assert points[0].ci_low < points[0].execution_accuracy == 2 / 6 < points[0].ci_high
    png = plot_scaling(points, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_comparison_draws_the_curve_only_when_the_training_size_varies(tmp_path):
    runs = scaling_runs(tmp_path)
    paths = write_sweep_comparison(runs, tmp_path, preset="custom")
    assert {p.name for p in paths} >= {"comparison.md", "comparison.html", "scaling.png", "scaling.md",
                                       "scaling.json"}
    table = (tmp_path / "comparison.md").read_text()
    assert "data_size.train=100 training.num_epochs=1" in table and "## Scaling" in table
    other = tmp_path / "plain"
    other.mkdir()
    same_size = [r for r in runs if "data_size.train=100" in r.overrides]
    paths = write_sweep_comparison(same_size, other, preset="custom")
    assert {p.name for p in paths} == {"comparison.md", "comparison.html", "comparison.json"}


@pytest.mark.slow
def test_two_point_scaling_sweep_leaves_the_curve_in_the_parent_run(tmp_path):
    result = run_cli("-m", "experiment=scaling", "data=sample", "model=tiny_mistral", "quantization=none",
                     "device=cpu", "data_size.train=16,32", "training.num_epochs=1", "training.max_steps=3",
                     "training.gradient_checkpointing=false", "data_size.val=8", "data_size.test=8",
                     "inference.max_new_tokens=8", "inference.batch_size=8",
                     f"outputs_dir={tmp_path / 'outputs'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = tmp_path / "sweep"
    points = json.loads((sweep / "scaling.json").read_text())
    assert [p["train_examples"] for p in points] == [16, 32]
    assert all(p["n"] == 8 and p["ci_low"] <= p["execution_accuracy"] <= p["ci_high"] for p in points)
    assert (sweep / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "train_examples" in (sweep / "scaling.md").read_text()
    assert "WARNING" not in (sweep / "comparison.md").read_text()  # same prompt, same test examples

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("text2sql-lora")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"scaling.png", "scaling.md", "scaling.json", "comparison.md", "comparison.html"} <= artifacts
