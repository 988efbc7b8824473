"""The `experiments` command (also `python -m experiments`, `torchrun ... -m experiments`, `accelerate launch -m
experiments`): Hydra composes and validates the config against the schema, then the pipeline runs. Returns
execution accuracy so Hydra sweepers can optimise it."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.config import RUN_STAMP_ENV, ConfigError, conf_dir, register_schema, run_stamp, to_typed
from experiments.runs.distributed import (
    adopt_slurm_tasks,
    broadcast_from_main,
    dist_context,
    init_distributed,
    shutdown_distributed,
)
from experiments.runs.interrupts import Interrupted, SignalStop, installed

log = logging.getLogger("experiments")
register_schema()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _main(dict_cfg: DictConfig) -> float | None:
    from pathlib import Path

    from experiments.pipeline import run_pipeline
    from experiments.runs.run_directory import RunDirectoryError
    from experiments.sweep import read_parent_run_id, sweep_interrupted

    adopt_slurm_tasks()  # a multi-task SLURM job (submitit launcher): one rank per task
    ctx = dist_context()
    init_distributed(ctx)  # no-op unless launched data-parallel; done already under torchrun
    hydra_cfg = HydraConfig.get()
    try:
        cfg = to_typed(dict_cfg)
    except ConfigError as error:  # the user's to fix: the message, not a traceback
        print(f"experiments: config error: {error}", file=sys.stderr)
        sys.exit(2)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    parent = read_parent_run_id(hydra_cfg.sweep.dir) if multirun else None
    # A joblib worker runs jobs with no handler of ours: its own, which outlives the job (see interrupts.py).
    stop = installed() or SignalStop(raise_outside_jobs=False)
    stop.install()
    with stop.job():
        if multirun and sweep_interrupted(hydra_cfg.sweep.dir):
            log.warning("sweep job %s not started: the sweep was stopped by a signal", hydra_cfg.job.num)
            return None
        try:
            summary = run_pipeline(cfg, Path(hydra_cfg.runtime.output_dir),
                                   overrides=tuple(hydra_cfg.overrides.task), parent_run_id=parent)
        except RunDirectoryError as error:  # the user's to fix, before anything was touched: the message
            if multirun:
                log.error("sweep job %s not run: %s", hydra_cfg.job.num, error)
                return None
            print(f"experiments: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if not multirun or ctx.distributed:
                raise
            # Its run and run_summary.json say KILLED; the sweep callback ends the sweep once every job has ended.
            log.warning("sweep job %s stopped by a signal: its run ended KILLED", hydra_cfg.job.num)
            return None
        except Exception:
            if not multirun or ctx.distributed:
                raise
            # One failed sweep job must not cost the others their comparison: its MLflow run and run_summary.json
            # already say FAILED; the sweep's parent run ends FAILED and lists it.
            log.exception("sweep job %s failed; going on with the sweep", hydra_cfg.job.num)
            return None
    return broadcast_from_main(ctx, summary["stages"].get("eval", {}).get("execution_accuracy"))


def quiet_noise() -> None:
    """Silence what is not the user's problem: bitsandbytes' note about its optional CPU kernels (printed on import,
    quantised or not) and deprecation warnings raised inside transformers/PEFT by their own calls."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    for message in (".*is_gradient_checkpointing.*", ".*gradient_checkpointing_enable.*",
                    ".*torch.jit.script_method.*"):
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)


def main() -> None:
    quiet_noise()
    if not conf_dir().is_dir():
        sys.exit(f"experiments: config directory {conf_dir()} not found; install the project from its "
                 "repository with `pip install -e .` (see README)")
    # torchrun stops the other ranks when one fails, and SLURM pre-empts jobs, with SIGTERM: it stops the run like
    # Ctrl-C, so the MLflow run ends KILLED and run_summary.json says so, and the command exits 143 (130 for SIGINT).
    SignalStop(raise_outside_jobs=True).install()
    ctx = dist_context()
    if ctx.distributed:  # one run directory for all ranks; only rank 0 writes Hydra's files and main log
        init_distributed(ctx)
        os.environ[RUN_STAMP_ENV] = broadcast_from_main(ctx, run_stamp())
        if not ctx.is_main:
            sys.argv += ["hydra.output_subdir=null",
                         f"hydra.job_logging.handlers.file.filename=${{hydra.runtime.output_dir}}/rank{ctx.rank}.log",
                         "++hydra.job_logging.handlers.console.level=WARNING",
                         "~hydra.callbacks.mlflow_sweep"]
    try:
        _main()
    except Interrupted as stopped:
        shutdown_distributed(clean=False)
        log.warning("%s", stopped)
        sys.exit(stopped.exit_code)
    except BaseException:
        shutdown_distributed(clean=False)  # a peer may be gone: no barrier
        raise
    shutdown_distributed()
