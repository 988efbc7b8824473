"""The MLflow store: created safely by processes that start together, never in a directory that does not exist,
and a read-only one named with its path and tracking.uri."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.config import TrackingConfig
from experiments.tracking.mlflow_tracker import MlflowTracker, TrackingUnavailable, open_tracker

OPEN_A_RUN = """
import sys, time
start = float(sys.argv[2])
from experiments.tracking.mlflow_tracker import MlflowTracker  # MLflow imported before the start line: both cross it
time.sleep(max(0.0, start - time.time()))
print(MlflowTracker(sys.argv[1], "text2sql-lora", "smoke", {}).run_id)
"""


@pytest.mark.slow
def test_two_processes_create_a_fresh_store_together(tmp_path):
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    (tmp_path / "outputs").mkdir()
    start = time.time() + 15  # both past their imports, even on a loaded machine
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_A_RUN, uri, str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(out.strip() for out, _ in outputs)


def test_a_sqlite_store_in_a_missing_directory_fails_naming_it_and_creates_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'm.db'}"
    with pytest.raises(TrackingUnavailable, match=rf"directory {tmp_path / 'nonexistent' / 'dir'} does not exist"):
        open_tracker(TrackingConfig(uri=uri), str(tmp_path / "outputs"), "smoke", {})
    assert not (tmp_path / "nonexistent").exists()


def test_a_read_only_store_names_its_path_and_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow makes the directory `file:<dir>` of such a URI relative to the working one
    db = tmp_path / "mlflow.db"
    MlflowTracker(f"sqlite:///{db}", "text2sql-lora", "smoke", {})  # a store with runs in it
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    with pytest.raises(TrackingUnavailable) as error:
        MlflowTracker(read_only, "text2sql-lora", "smoke", {})
    message = str(error.value)
    assert str(db) in message and f"tracking.uri={read_only}" in message and "read-only" in message


def test_a_default_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs"
    tracker = open_tracker(TrackingConfig(), str(outputs), "smoke", {})
    (tmp_path / "a.txt").write_text("x")
    tracker.log_artifact(tmp_path / "a.txt")
    assert not (tmp_path / "mlruns").exists()
    assert any(Path(outputs / "mlartifacts").rglob("a.txt"))
