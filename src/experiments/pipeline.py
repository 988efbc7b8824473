"""Runs the selected stages in order inside one run directory and one MLflow run.

Whatever happens, the MLflow run is closed with the right status and GPU memory is released, so the next job
of a sequential Hydra multirun starts clean. In a data-parallel job (torchrun / accelerate launch) every rank
runs this; rank 0 alone writes the run directory's files and the MLflow run, prepares the data and scores.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments.config import STAGE_ORDER, ExperimentConfig, Stage, to_plain_dict
from experiments.data.jsonl import write_json
from experiments.distributed import DistContext, dist_context, run_on_main
from experiments.paths import RunFiles
from experiments.prompt import PROMPT_VERSION
from experiments.tracking import NullTracker, flatten, git_commit, open_tracker, ui_command

log = logging.getLogger(__name__)


def describe_device(device: str) -> str:
    if torch.cuda.is_available() and device != "cpu":
        return torch.cuda.get_device_name(0)
    return "cpu"


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_pipeline(cfg: ExperimentConfig, run_dir: Path, *, overrides: tuple[str, ...] = (),
                 parent_run_id: str | None = None) -> dict[str, Any]:
    """prepare -> train -> infer -> eval (those selected by cfg.stages); returns the run summary."""
    ctx = dist_context()
    files = RunFiles(run_dir)
    plain = to_plain_dict(cfg)
    tags = {"preset": cfg.preset, "git_commit": git_commit(), "overrides": " ".join(overrides) or "(none)",
            "device": describe_device(cfg.device), "prompt_version": PROMPT_VERSION, "run_dir": str(files.root),
            "world_size": str(ctx.world_size)}

    def start():
        files.root.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(plain), files.resolved_config)
        return open_tracker(cfg.tracking, cfg.outputs_dir, cfg.preset, tags, parent_run_id)  # fails fast

    tracker = run_on_main(ctx, start) or NullTracker()
    release_memory()
    summary: dict[str, Any] = {"run_dir": str(files.root), "mlflow_run_id": tracker.run_id, "stages": {}}
    status = "FAILED"
    try:
        tracker.log_params(flatten(plain))
        tracker.log_artifact(files.resolved_config)
        for stage in (s for s in STAGE_ORDER if s in cfg.stages):
            started = time.perf_counter()
            log.info("stage %s: starting", stage.value)
            summary["stages"][stage.value] = _run_stage(stage, cfg, files, tracker, ctx)
            seconds = time.perf_counter() - started
            summary[f"{stage.value}_seconds"] = seconds
            tracker.log_metrics({f"time_{stage.value}_s": seconds})
            log.info("stage %s: done in %.1f s", stage.value, seconds)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if ctx.is_main:
            write_json(files.run_summary, {**summary, "status": status})
            tracker.log_artifact(files.run_summary)
        tracker.finish(status)
        release_memory()
    if ctx.is_main:
        for line in headline_lines(summary, files, tracker):
            log.info(line)
    return summary


def headline_lines(summary: dict[str, Any], files: RunFiles, tracker) -> list[str]:
    """What a finished run prints last: the headline metrics with their 95% intervals, where the report is, and
    how to see the run in MLflow."""
    lines = ["run finished"]
    scores = summary["stages"].get("eval", {})
    n = scores.get("n")
    for key, label in (("execution_accuracy", "execution accuracy"), ("logical_form_accuracy", "logical-form acc.")):
        if key in scores:
            lines.append(f"  {label:<20} {scores[key]:.4f}  (95% CI {scores.get(f'{key}_ci_low', 0):.3f}-"
                         f"{scores.get(f'{key}_ci_high', 0):.3f}, n={n})")
    if "valid_sql_rate" in scores:
        lines.append(f"  {'valid SQL rate':<20} {scores['valid_sql_rate']:.4f}")
    train = summary["stages"].get("train", {})
    if train.get("best_step") is not None:
        lines.append(f"  {'adapter':<20} step {train['best_step']} of {train['global_steps']}, the best by "
                     f"{train['best_by']} on val ({train['best_score']:.4f})")
    lines.append(f"  {'run directory':<20} {files.root}")
    if files.report_html.is_file():
        lines.append(f"  {'report':<20} {files.report_html}")
    if tracker.run_id:
        lines.append(f"  {'MLflow run':<20} {tracker.run_id}  ({ui_command(tracker.uri)})")
    return lines


# Stages that only rank 0 runs in a data-parallel job; train and infer run on every rank.
MAIN_ONLY_STAGES = (Stage.prepare, Stage.eval)


def _run_stage(stage: Stage, cfg: ExperimentConfig, files: RunFiles, tracker, ctx: DistContext) -> dict[str, Any]:
    if stage in MAIN_ONLY_STAGES:
        return run_on_main(ctx, lambda: _stage_work(stage, cfg, files, tracker)) or {}
    return _stage_work(stage, cfg, files, tracker)


def _stage_work(stage: Stage, cfg: ExperimentConfig, files: RunFiles, tracker) -> dict[str, Any]:
    # Stage modules are imported on use: prepare/eval need no torch model code.
    if stage == Stage.prepare:
        from experiments.prepare import run_prepare

        run_prepare(cfg, files.root)
        tracker.log_artifact(files.data_report, "data")
        return {"report": str(files.data_report)}
    if stage == Stage.train:
        from experiments.tracking_callback import MetricsToTracker
        from experiments.train import run_train

        result = run_train(cfg, files.root, callbacks=(MetricsToTracker(tracker),))
        tracker.log_metrics({f"train_{k}": v for k, v in result["summary"].items()})
        tracker.set_tags(result.get("tags", {}))  # the memory plan chosen, and the one the run ended with
        tracker.log_artifact(files.adapter_dir, "adapter")
        tracker.log_artifact(files.train_summary)
        return result["summary"]
    if stage == Stage.infer:
        from experiments.infer import run_infer

        result = run_infer(cfg, files.root)
        tracker.log_metrics(result["summary"])
        tracker.set_tags(result.get("tags", {}))  # the inference memory plan
        tracker.log_artifact(files.predictions)
        return result["summary"]
    from experiments.analysis.breakdown import interval_metrics
    from experiments.evaluate import run_eval

    result = run_eval(cfg, files.root)
    metrics = result["metrics"]
    if metrics.get("unknown_prediction_ids"):  # loud in the run list too, not only in the report
        tracker.set_tags({"warning": "; ".join(metrics.get("warnings", []))})
    intervals = interval_metrics(result["analysis"])
    tracker.log_metrics(metrics)
    tracker.log_metrics(intervals)
    tracker.log_metrics({f"category_{k}": v for k, v in metrics.get("categories", {}).items()})
    for path in (files.results, files.metrics, files.report_md, files.report_html, files.analysis_json):
        tracker.log_artifact(path)
    tracker.log_artifact(files.plots_dir, "plots")  # a directory: logged as plots/*.png
    return {**{k: v for k, v in metrics.items() if not isinstance(v, dict)}, **intervals}
