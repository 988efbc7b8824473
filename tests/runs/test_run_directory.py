"""A run directory across runs: one process at a time, a dead run closed when the directory is next used, a
finished run's outputs never silently replaced, resume only of the run it continues, and the MLflow run closed
first whatever else fails (a full disk)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.config import ConfigError, load_config, to_plain_dict
from experiments.pipeline import run_pipeline
from experiments.runs.files import RunFiles
from experiments.runs.run_directory import (
    RunDirectory,
    RunDirectoryError,
    resume_conflicts,
    stale_outputs,
)
from experiments.stages.train import last_checkpoint
from experiments.tracking.mlflow_tracker import MlflowTracker, close_abandoned_run

SMALL = ["data_size.train=8", "data_size.val=4", "data_size.test=4"]


def finished_run(root: Path) -> RunFiles:
    """A directory holding every stage's outputs, as a finished run leaves it."""
    files = RunFiles(root)
    for stage in ("prepare", "train", "infer", "eval"):
        for path in files.stage_outputs(stage):
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "file").write_text("x")
    (files.checkpoints_dir / "checkpoint-10").mkdir()
    files.run_summary.write_text(json.dumps({"status": "FINISHED"}))
    return files


def test_a_directory_in_use_is_refused_naming_the_process(tmp_path):
    first = RunDirectory(RunFiles(tmp_path))
    first.acquire()
    first.write_record({"status": "RUNNING", "pid": 4242, "host": "gpu7"})
    with pytest.raises(RunDirectoryError, match=r"in use by another process \(pid 4242 on gpu7"):
        RunDirectory(RunFiles(tmp_path)).acquire()
    first.release()
    RunDirectory(RunFiles(tmp_path)).acquire()  # free again


def test_a_run_left_running_by_a_dead_process_is_marked_killed_when_the_directory_is_next_used(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "text2sql-lora", "smoke", {})  # a run whose process then died: never finished
    files = RunFiles(tmp_path / "run")
    RunDirectory(files).write_record({"status": "RUNNING", "mlflow_run_id": tracker.run_id, "tracking_uri": uri})

    directory = RunDirectory(files)
    previous = directory.settle_abandoned(directory.acquire(), close_abandoned_run)
    assert previous.status == "KILLED"
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "KILLED"
    assert json.loads(files.run_summary.read_text())["status"] == "KILLED"


def test_a_finished_run_is_not_prepared_or_trained_again_without_resume_or_overwrite(tmp_path):
    files = finished_run(tmp_path)
    with pytest.raises(RunDirectoryError) as refused:
        stale_outputs(files, ["prepare", "train", "infer", "eval"], resume=False, overwrite=False)
    message = str(refused.value)
    for fix in ("training.resume=true", "stages=[infer,eval]", "overwrite=true", "hydra.run.dir="):
        assert fix in message
    assert (files.checkpoints_dir / "checkpoint-10").is_dir()  # refused before anything was deleted


def test_what_each_reuse_clears(tmp_path):
    files = finished_run(tmp_path)
    names = lambda paths: {p.name for p in paths}  # noqa: E731
    infer_and_eval = names(files.stage_outputs("infer") + files.stage_outputs("eval"))
    # re-scoring the adapter: the old predictions and everything scored from them go first
    assert names(stale_outputs(files, ["infer", "eval"], resume=False, overwrite=False)) == infer_and_eval
    assert names(stale_outputs(files, ["infer"], resume=False, overwrite=False)) == infer_and_eval
    assert names(stale_outputs(files, ["eval"], resume=False, overwrite=False)) == \
        names(files.stage_outputs("eval"))
    # resume keeps the data and the checkpoints it continues
    assert names(stale_outputs(files, ["prepare", "train", "infer", "eval"], resume=True, overwrite=False)) == \
        infer_and_eval
    everything = names(p for s in ("prepare", "train", "infer", "eval") for p in files.stage_outputs(s))
    assert names(stale_outputs(files, ["prepare", "train"], resume=False, overwrite=True)) == everything


def test_overwrite_and_resume_together_fail_at_composition():
    with pytest.raises(ConfigError, match="overwrite=true with training.resume=true"):
        load_config(["experiment=smoke", "overwrite=true", "training.resume=true"])


def test_resume_refuses_what_changes_the_weights_and_allows_the_cadence():
    before = to_plain_dict(load_config(["experiment=smoke"]))
    after = to_plain_dict(load_config([
        "experiment=smoke", "training.resume=true", "training.logging_steps=1", "training.eval_steps=7",
        "training.save_steps=3", "inference.batch_size=4", "tracking=none", "stages=[train,infer]",
        "lora.r=8", "training.learning_rate=1e-3", "training.lr_scheduler=linear", "data_size.train=100"]))
    assert resume_conflicts(before, after) == [
        "data_size.train: None -> 100", "lora.r: 16 -> 8", "training.learning_rate: 0.005 -> 0.001",
        "training.lr_scheduler: 'cosine' -> 'linear'"]


def test_resume_with_a_changed_config_is_refused_before_anything_is_touched(tmp_path):
    run_dir = tmp_path / "run"
    files = finished_run(run_dir)
    cfg = load_config(["experiment=smoke", f"outputs_dir={tmp_path / 'outputs'}", "tracking=none", *SMALL])
    files.resolved_config.write_text(json.dumps(to_plain_dict(cfg)))  # JSON is YAML
    changed = load_config(["experiment=smoke",
                           f"outputs_dir={tmp_path / 'outputs'}", "tracking=none", "training.resume=true",
                           "lora.r=4", *SMALL])
    with pytest.raises(RunDirectoryError, match=r"lora\.r: 16 -> 4"):
        run_pipeline(changed, run_dir)
    assert (files.checkpoints_dir / "checkpoint-10").is_dir() and files.predictions.is_file()
    assert json.loads(files.resolved_config.read_text())["lora"]["r"] == 16  # the config it would continue


def test_the_last_complete_checkpoint_is_resumed_past_a_half_written_one(tmp_path):
    for step, state in ((5, {"global_step": 5}), (10, {"global_step": 10}), (15, None), (20, "cut")):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "adapter_model.safetensors").write_text("weights")
        if state == "cut":
            (path / "trainer_state.json").write_text('{"global_step": 2')  # the disk filled mid-write
        elif state is not None:
            (path / "trainer_state.json").write_text(json.dumps(state))
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert last_checkpoint(tmp_path / "none") is None


def _disk_full_after_start(monkeypatch):
    """Every atomic write fails with ENOSPC once the run's RUNNING record is on disk."""
    import experiments.fileio as fileio

    real = fileio._write_atomically
    full = {"now": False}

    def write(path, body):
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, body)
        if Path(path).name == "run_summary.json":
            full["now"] = True

    monkeypatch.setattr(fileio, "_write_atomically", write)
    return full


def test_a_full_disk_fails_the_run_in_mlflow_and_the_next_use_records_it(tmp_path, monkeypatch):
    outputs, run_dir = tmp_path / "outputs", tmp_path / "run"
    cfg = load_config(["experiment=smoke", f"outputs_dir={outputs}", "stages=[prepare]", *SMALL])
    full = _disk_full_after_start(monkeypatch)
    with pytest.raises(OSError, match="No space left"):  # the stage's own error, not the cleanup's
        run_pipeline(cfg, run_dir)
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])
    assert run.info.status == "FAILED"
    record = json.loads((run_dir / "run_summary.json").read_text())
    assert record["status"] == "RUNNING"  # its final version could not be written...

    full["now"] = False  # ...until the disk has room again: the next use records what the store knows
    directory = RunDirectory(RunFiles(run_dir))
    assert directory.settle_abandoned(directory.acquire(), close_abandoned_run).status == "FAILED"
    directory.release()
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_a_summary_that_cannot_be_written_fails_a_finished_run(tmp_path, monkeypatch):
    import experiments.runs.run_directory as run_directory

    outputs, run_dir = tmp_path / "outputs", tmp_path / "run"
    cfg = load_config(["experiment=smoke", f"outputs_dir={outputs}", "stages=[prepare]", *SMALL])
    real = run_directory.write_json

    def write_json(path, obj):
        if obj.get("status") != "RUNNING":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(run_directory, "write_json", write_json)
    with pytest.raises(OSError, match="No space left"):
        run_pipeline(cfg, run_dir)
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])
    assert run.info.status == "FAILED"


def test_rescoring_a_finished_run_keeps_its_training_record_and_clears_stale_scores(tmp_path):
    outputs, run_dir = tmp_path / "outputs", tmp_path / "run"
    base = [f"outputs_dir={outputs}", "tracking=none", *SMALL]
    run_pipeline(load_config(["experiment=smoke", *base, "stages=[prepare]"]), run_dir)
    files = RunFiles(run_dir)
    record = json.loads(files.run_summary.read_text())
    files.metrics.write_text('{"execution_accuracy": 0.9}')  # a score of an older adapter
    (files.root / "official_tables.db").write_text("old")
    with pytest.raises(FileNotFoundError, match="no predictions to score"):  # this run brings none
        run_pipeline(load_config(["experiment=smoke", *base, "stages=[eval]"]), run_dir)
    assert not files.metrics.exists() and not (files.root / "official_tables.db").exists()
    after = json.loads(files.run_summary.read_text())
    assert after["status"] == "FAILED" and after["stages"]["prepare"] == record["stages"]["prepare"]


def test_overwrite_clears_a_finished_run_before_running_again(tmp_path):
    files = finished_run(tmp_path / "run")
    cfg = load_config(["experiment=smoke",
                       f"outputs_dir={tmp_path / 'outputs'}", "tracking=none", "stages=[prepare]", "overwrite=true",
                       *SMALL])
    run_pipeline(cfg, files.root)
    assert not files.checkpoints_dir.exists() and not files.adapter_dir.exists() and not files.predictions.exists()
    assert not (files.data_dir / "file").exists() and files.split("test").is_file()
    assert json.loads(files.run_summary.read_text())["status"] == "FINISHED"
