"""Data-parallel runs: sharding, the global batch over ranks, SLURM task adoption, Hydra launcher configs, and the
smoke preset under `torchrun --nproc_per_node=2` on CPU (gloo) against the single-process run."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import run_cli
from mlflow.tracking import MlflowClient

from experiments.config import TrainingConfig
from experiments.runs.distributed import (
    DistContext,
    adopt_slurm_tasks,
    dist_context,
    gather_to_main,
    run_on_main,
    shard,
    unshard,
)
from experiments.stages.train import micro_batching

# Training loss of the 2-process run ends within this fraction of the single-process run's last logged loss.
LOSS_TOLERANCE = 0.2


@pytest.mark.parametrize("n,world", [(10, 2), (7, 2), (5, 3), (1, 4), (0, 2)])
def test_shards_cover_every_item_once_and_unshard_restores_order(n, world):
    items = list(range(n))
    shards = [shard(items, DistContext(rank=r, local_rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == items
    assert unshard(shards) == items


def test_unshard_refuses_a_rank_that_returned_the_wrong_number_of_items():
    with pytest.raises(ValueError, match="rank 1 returned 3 items where its shard of 6 holds 2"):
        unshard([[0, 3], [1, 4, 5], [2]])  # 6 items over 3 ranks: 2 each; rank 1 sent one of rank 2's


def _rank_main(rank: int, world: int, port: int, results) -> None:
    """One rank of a 2-process gloo job: a step that works on rank 0, then one that fails there."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    ctx = dist_context()
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ok = run_on_main(ctx, lambda: "written by rank 0")
        gathered = gather_to_main(ctx, rank * 10)
        try:
            run_on_main(ctx, lambda: 1 / 0)
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        results.put((rank, ok, gathered, error))
    finally:
        dist.destroy_process_group()


def test_a_failure_on_rank_0_reaches_every_rank_instead_of_hanging():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_rank_main, args=(2, port, results), nprocs=2, join=True, start_method="spawn")
    by_rank = {rank: rest for rank, *rest in (results.get(timeout=60) for _ in range(2))}
    ok, gathered, error = by_rank[0]
    assert (ok, gathered) == ("written by rank 0", [0, 10]) and error.startswith("ZeroDivisionError")
    ok, gathered, error = by_rank[1]  # rank 1 ran neither step itself, and learns of rank 0's failure
    assert (ok, gathered) == (None, [])
    assert error == "RuntimeError: rank 1: rank 0 failed: ZeroDivisionError: division by zero"


def test_dist_context_reads_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = dist_context()
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.is_main, ctx.distributed) == (3, 1, 4, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 is outside WORLD_SIZE=4"):
        dist_context()


def test_single_process_without_launcher_variables(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_context() == DistContext(rank=0, local_rank=0, world_size=1)


def test_global_batch_is_kept_across_ranks_or_grows_when_asked():
    t = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=4, max_tokens_per_batch=None)
    per_batch, steps = micro_batching(t, max_length=256, world_size=2)
    assert per_batch * steps * 2 == 32  # default: each rank takes the per-device batch x accumulation
    t.keep_global_batch = True
    per_batch, steps = micro_batching(t, max_length=256, world_size=2)
    assert per_batch * steps * 2 == 16  # the preset's 16 examples per optimizer step, split over 2 ranks
    unfused = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=4, fuse_accumulation=False,
                             keep_global_batch=True)
    assert micro_batching(unfused, max_length=256, world_size=2) == (4, 2)


def test_a_global_batch_that_does_not_split_names_the_keys():
    t = TrainingConfig(per_device_batch_size=3, gradient_accumulation_steps=1, keep_global_batch=True)
    with pytest.raises(ValueError, match="keep_global_batch"):
        micro_batching(t, max_length=256, world_size=2)
    unfused = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=3, fuse_accumulation=False,
                             keep_global_batch=True)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=3"):
        micro_batching(unfused, max_length=256, world_size=2)


def test_a_multi_task_slurm_job_becomes_a_data_parallel_job(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "")  # recorded, so what adopt_slurm_tasks exports is undone after the test
        monkeypatch.delenv(name)
    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "123", "SLURM_NTASKS": "2",
                        "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
                        "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(name, value)
    adopt_slurm_tasks()
    assert dist_context() == DistContext(rank=1, local_rank=1, world_size=2)
    assert os.environ["MASTER_ADDR"] == "gpu07"


def test_hydra_launcher_configs_compose():
    from hydra import compose, initialize_config_dir

    from experiments.config import conf_dir, register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        local = compose(config_name="config", overrides=["hydra/launcher=local_parallel"], return_hydra_config=True)
        slurm = compose(config_name="config", overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=2",
                                                         "hydra.launcher.tasks_per_node=2"],
                        return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("JoblibLauncher") and local.hydra.launcher.n_jobs == 2
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (slurm.hydra.launcher.gpus_per_node, slurm.hydra.launcher.tasks_per_node) == (2, 2)
    assert slurm.hydra.launcher.timeout_min > 0


@pytest.mark.slow
def test_two_process_smoke_run_matches_the_single_process_run(smoke_run, tmp_path):
    assert smoke_run.result.returncode == 0, smoke_run.result.stderr[-4000:]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    outputs = tmp_path / "outputs"
    # the preset's batch split over the ranks, so the two runs take the same optimizer steps
    result = run_cli("experiment=smoke",
                     f"outputs_dir={outputs}", "training.keep_global_batch=true", cwd=tmp_path, launcher=torchrun)
    assert result.returncode == 0, result.stderr[-4000:]

    (run_dir,) = (outputs / "runs" / "smoke").iterdir()  # both ranks wrote into one run directory
    single, double = smoke_run.run_dir, run_dir
    assert sorted(p.name for p in single.iterdir() if p.name != "cli.log") == \
        sorted(p.name for p in double.iterdir() if p.name not in ("cli.log", "rank1.log"))

    def ids(path):
        return [json.loads(line)["id"] for line in path.read_text().splitlines()]

    assert ids(double / "predictions.jsonl") == ids(single / "predictions.jsonl")  # gathered in example order
    metrics_single = json.loads((single / "metrics.json").read_text())
    metrics_double = json.loads((double / "metrics.json").read_text())
    assert metrics_double.keys() == metrics_single.keys() and metrics_double["n"] == metrics_single["n"]

    train_single = json.loads((single / "train_summary.json").read_text())
    train_double = json.loads((double / "train_summary.json").read_text())
    assert train_double["world_size"] == 2 and train_double["effective_batch"] == train_single["effective_batch"]
    assert train_double["global_steps"] == train_single["global_steps"]
    assert train_double["train_loss_last"] < 0.5 * train_double["train_loss_first"]
    assert abs(train_double["train_loss_last"] - train_single["train_loss_last"]) <= \
        LOSS_TOLERANCE * train_single["train_loss_last"]

    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("text2sql-lora")
    (run,) = client.search_runs([experiment.experiment_id])  # one MLflow run, written by rank 0 alone
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    assert run.data.params["count/effective_batch"] == str(train_single["effective_batch"])
    assert "test/execution_accuracy" in run.data.metrics
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len({m.step for m in losses}) == len(losses)  # each logging step once, not once per rank
    assert "adapter/adapter_config.json" in {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}


def test_a_single_process_on_a_machine_with_several_gpus_trains_on_one(monkeypatch, tmp_path):
    """Without torchrun the Trainer would wrap the model in nn.DataParallel over every visible GPU (two planned
    micro-batches per step, a loss logged at twice its value): one process must count one GPU."""
    from experiments.config import load_config
    from experiments.stages.train import training_arguments

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = load_config(["experiment=smoke", "tracking=none"])  # float32 weights: no fp16 flag needing a real GPU
    args = training_arguments(cfg, tmp_path, torch.device("cuda", 0), has_eval=False, accumulation_steps=1)
    assert args.n_gpu == 1
    assert training_arguments(cfg, tmp_path, torch.device("cpu"), has_eval=False, accumulation_steps=1).n_gpu == 0
