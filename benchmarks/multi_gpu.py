"""Data-parallel scaling: the same preset end to end on 1 GPU (`python -m experiments`) and on N GPUs
(`torchrun --nproc_per_node=N -m experiments`), into one MLflow store; prints a table and writes JSON.

    python benchmarks/multi_gpu.py --model /tmp/m7b --out-dir /tmp/scaling --json scaling.json

Training throughput is the train stage's median tokens/s over its logging windows (the first, warm-up window
left out); every run must land in MLflow exactly once, with each logging step recorded once.
NVLink multicast stays off (NCCL_NVLS_ENABLE=0 and friends), as the device machines require. The runs read the
bundled sample (the preset's Hub data is out of reach there); pass data=... overrides to use other data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OFFLINE_DATA = ("data=sample", "data_size.train=null", "data_size.val=null", "data_size.test=null")
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def launch(gpus: int, overrides: list[str], run_dir: Path, log_path: Path) -> float:
    """Run the pipeline on `gpus` GPUs; returns wall seconds. Raises with the log's tail if it fails."""
    env = {**os.environ, **NO_MULTICAST, "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(gpus))}
    prefix = [sys.executable] if gpus == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    command = [*prefix, "-m", "experiments", *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")
    return seconds


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def summarise(gpus: int, run_dir: Path, wall: float) -> dict[str, Any]:
    train = read(run_dir / "train_summary.json")
    run = read(run_dir / "run_summary.json")
    return {
        "gpus": gpus, "run_dir": str(run_dir), "wall_s": wall,
        "train_tokens_per_s_median": train.get("tokens_per_s_median") or train.get("tokens_per_s"),
        "train_tokens_per_s_overall": train.get("tokens_per_s"), "train_seconds": train.get("train_seconds"),
        "effective_batch": train.get("effective_batch"), "global_steps": train.get("global_steps"),
        "train_loss_last": train.get("train_loss_last"),
        "peak_memory_gib_per_gpu": [train[k] for k in sorted(train) if k.startswith("peak_memory_gib_rank")],
        "stage_seconds": {k.removesuffix("_seconds"): v for k, v in run.items() if k.endswith("_seconds")},
        "infer": read(run_dir / "infer_summary.json"),
        "execution_accuracy": read(run_dir / "metrics.json").get("execution_accuracy"),
        "mlflow_run_id": run.get("mlflow_run_id"),
    }


def check_mlflow(db: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run once in MLflow, with its logged steps once each (not once per rank)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("text2sql-lora")
    runs = client.search_runs([experiment.experiment_id])
    checks = {}
    for row in rows:
        same_dir = [r for r in runs if r.data.tags.get("run_dir") == row["run_dir"]]
        losses = client.get_metric_history(same_dir[0].info.run_id, "loss") if same_dir else []
        checks[str(row["gpus"])] = {
            "runs_for_this_run_dir": len(same_dir),
            "status": same_dir[0].info.status if same_dir else None,
            "loss_points": len(losses), "loss_steps_unique": len({m.step for m in losses}) == len(losses),
            "artifacts": sorted(a.path for a in client.list_artifacts(same_dir[0].info.run_id)) if same_dir else [],
        }
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (make_random_mistral.py); default: the preset's")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/scaling"))
    parser.add_argument("--json", type=Path, default=Path("scaling.json"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    # The device machines reach no Hub: the bundled sample, all of it, unless the overrides say otherwise.
    overrides = [f"experiment={args.preset}", f"outputs_dir={args.out_dir}", *OFFLINE_DATA, *args.overrides]
    if args.model:
        overrides.append(f"model.name_or_path={args.model}")
    rows = []
    for gpus in args.gpus:
        run_dir = args.out_dir / f"{args.preset}_{gpus}gpu"
        wall = launch(gpus, overrides, run_dir, args.out_dir / f"{args.preset}_{gpus}gpu.log")
        rows.append(summarise(gpus, run_dir, wall))
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    base = rows[0]["train_tokens_per_s_median"]
    report = {"preset": args.preset, "rows": rows, "mlflow": check_mlflow(args.out_dir / "mlflow.db", rows)}
    args.json.write_text(json.dumps(report, indent=2))

    print(f"\n{'GPUs':>4} {'train tok/s':>12} {'x 1 GPU':>8} {'eff. batch':>10} {'peak GiB/GPU':>16} "
          f"{'train s':>8} {'infer s':>8} {'wall s':>7} {'exec acc':>8}")
    for r in rows:
        rate = r["train_tokens_per_s_median"]
        peaks = "/".join(f"{p:.1f}" for p in r["peak_memory_gib_per_gpu"])
        print(f"{r['gpus']:>4} {rate:12.0f} {rate / base:8.2f} {r['effective_batch']:>10} {peaks:>16} "
              f"{r['stage_seconds'].get('train', 0):8.1f} {r['stage_seconds'].get('infer', 0):8.1f} "
              f"{r['wall_s']:7.0f} {r['execution_accuracy']:8.3f}")
    print("MLflow:", json.dumps(report["mlflow"]))


if __name__ == "__main__":
    main()
