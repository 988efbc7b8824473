"""Runs end with an honest status, in MLflow and on disk, whatever stops them: Ctrl-C or SIGTERM to a parallel
(joblib) sweep, SIGTERM to a sequential one, kill -9 and then a resume (real `experiments` processes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

# Jobs that train until stopped: a long schedule, no evaluation, no checkpoint on the way.
ENDLESS = ["experiment=smoke", "training.max_steps=100000", "training.eval_steps=100000", "training.save_steps=100000",
           "training.logging_steps=20", "data_size.train=16", "data_size.val=4", "data_size.test=4"]


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m experiments ARGS` in a session of its own (so a signal to its process group reaches it and the
    processes it starts, as Ctrl-C in a terminal does, and nothing else); output to cwd/cli.out."""
    out = open(cwd / "cli.out", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "experiments", *args], cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL to the CLI's whole session, so a failed test leaves no job training on the machine's cores."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen, cwd: Path,
             timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            kill_all(process)
            raise AssertionError(f"{what}: not reached; output:\n{(cwd / 'cli.out').read_text()[-4000:]}")
        time.sleep(0.2)


def training_started(job_dir: Path) -> bool:
    log_file = job_dir / "cli.log"
    return log_file.is_file() and "stage train: starting" in log_file.read_text()


def record(run_dir: Path) -> dict:
    path = run_dir / "run_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def mlflow_runs(outputs: Path) -> list:
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("text2sql-lora").experiment_id])


def finish(process: subprocess.Popen, cwd: Path, timeout_s: float = 300) -> int:
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_all(process)
        raise AssertionError(f"still running; output:\n{(cwd / 'cli.out').read_text()[-4000:]}") from None


def start_parallel_sweep_training(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path, list[Path]]:
    """A 2-job joblib sweep of endless smoke runs, returned once both jobs are training: (the command's process,
    outputs dir, sweep dir, the two job dirs)."""
    outputs, sweep = tmp_path / "outputs", tmp_path / "sweep"
    process = start_cli("-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
                        "training.learning_rate=1e-3,3e-3", *ENDLESS, f"outputs_dir={outputs}",
                        f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    jobs = [sweep / "0_smoke", sweep / "1_smoke"]
    wait_for(lambda: all(training_started(j) for j in jobs), "both jobs training", process, tmp_path)
    return process, outputs, sweep, jobs


@pytest.mark.parametrize(("signum", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm-to-the-parent"])
def test_a_signal_stops_every_job_of_a_parallel_sweep_and_its_parent(tmp_path, signum, to_group):
    process, outputs, sweep, jobs = start_parallel_sweep_training(tmp_path)
    time.sleep(1)
    if to_group:
        os.killpg(process.pid, signum)  # Ctrl-C: the parent and both workers at once
    else:
        os.kill(process.pid, signum)  # the parent alone forwards it
    assert finish(process, tmp_path) == 128 + signum
    runs = mlflow_runs(outputs)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED", "KILLED"]
    assert [record(j)["status"] for j in jobs] == ["KILLED", "KILLED"]
    assert "| KILLED |" in (sweep / "comparison.md").read_text()


def test_a_sweep_whose_worker_is_killed_with_kill_9_closes_every_run(tmp_path):
    """joblib gives up when a worker dies (and kills the other one): the parent ends FAILED at exit and both jobs,
    their processes gone, are marked KILLED."""
    process, outputs, sweep, jobs = start_parallel_sweep_training(tmp_path)
    os.kill(record(jobs[0])["pid"], signal.SIGKILL)
    assert finish(process, tmp_path) == 1
    runs = mlflow_runs(outputs)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"
    assert [r.info.status for r in runs if r is not parent] == ["KILLED", "KILLED"]
    assert [record(j)["status"] for j in jobs] == ["KILLED", "KILLED"]


def test_sigterm_stops_a_sequential_sweep_and_no_later_job_starts(tmp_path):
    outputs, sweep = tmp_path / "outputs", tmp_path / "sweep"
    process = start_cli("-m", "training.learning_rate=1e-3,3e-3", *ENDLESS, f"outputs_dir={outputs}",
                        f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(lambda: training_started(sweep / "0_smoke"), "job 0 training", process, tmp_path)
    process.send_signal(signal.SIGTERM)
    assert finish(process, tmp_path) == 143
    runs = mlflow_runs(outputs)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in runs if r is not parent] == ["KILLED"]  # job 1 never started
    assert record(sweep / "0_smoke")["status"] == "KILLED" and record(sweep / "1_smoke") == {}


def test_a_run_killed_with_kill_9_is_resumed_in_the_same_mlflow_run(tmp_path):
    outputs, run_dir = tmp_path / "outputs", tmp_path / "run"
    args = ["experiment=smoke", f"outputs_dir={outputs}", f"hydra.run.dir={run_dir}",
            "training.max_steps=60", "training.save_steps=10",
            "training.logging_steps=5", "training.eval_steps=1000", "data_size.train=16", "data_size.val=4",
            "data_size.test=4", "inference.max_new_tokens=4"]
    checkpoint = run_dir / "checkpoints" / "checkpoint-10"
    process = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: (checkpoint / "trainer_state.json").is_file(), "the first checkpoint", process, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (killed,) = mlflow_runs(outputs)
    assert killed.info.status == "RUNNING" and record(run_dir)["status"] == "RUNNING"  # what kill -9 leaves
    steps = sorted(int(p.name.split("-")[1]) for p in checkpoint.parent.glob("checkpoint-*")
                   if (p / "trainer_state.json").is_file())
    last = steps[-1]
    half_written = checkpoint.parent / f"checkpoint-{last + 10}"  # a checkpoint the disk did not finish
    half_written.mkdir(exist_ok=True)
    (half_written / "trainer_state.json").unlink(missing_ok=True)

    again = subprocess.run([sys.executable, "-m", "experiments", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 2 and "training.resume=true" in again.stderr  # not silently trained over
    (marked,) = mlflow_runs(outputs)
    assert marked.info.status == "KILLED" and record(run_dir)["status"] == "KILLED"  # marked at this next use

    resumed_at = time.time() * 1000
    resume = subprocess.run([sys.executable, "-m", "experiments", *args, "training.resume=true"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert resume.returncode == 0, resume.stderr[-4000:]
    (run,) = mlflow_runs(outputs)  # the same run, continued: none left RUNNING beside a new one
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "1" and "training.resume: False -> True" in run.data.tags["resume_changes"]
    train = json.loads((run_dir / "train_summary.json").read_text())
    assert train["resumed_from"] == str(checkpoint.parent / f"checkpoint-{last}") and train["global_steps"] == 60
    history = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}").get_metric_history(run.info.run_id, "train/loss")
    after = sorted(m.step for m in history if m.timestamp >= resumed_at)
    assert after[0] == last + 5 and after[-1] == 60  # the metrics go on from the checkpoint's step
    assert record(run_dir)["status"] == "FINISHED" and "test/execution_accuracy" in run.data.metrics
