"""Runs the selected stages in order inside one run directory and one MLflow run.

Whatever happens, the MLflow run is closed first with the right status (FINISHED, FAILED, or KILLED for Ctrl-C and
SIGTERM), then the directory's record, run_summary.json, and GPU memory is released, so the next job of a sequential
Hydra multirun starts clean. What a run may do in a directory that already holds one is run_directory.py's. In a
data-parallel job (torchrun / accelerate launch) every rank runs this; rank 0 alone holds the run directory, writes
its files and the MLflow run, prepares the data and scores.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments.config import STAGE_ORDER, ExperimentConfig, Stage, flatten, to_plain_dict
from experiments.data.jsonl import write_text
from experiments.data.prompt import PROMPT_VERSION
from experiments.runs.distributed import DistContext, dist_context, run_on_main
from experiments.runs.files import RunFiles
from experiments.runs.run_directory import (
    PreviousRun,
    RunDirectory,
    check_resume,
    clear,
    now,
    process_identity,
    stale_outputs,
)
from experiments.tracking.metric_names import eval_logged, infer_summary_logged, stage_seconds, train_summary_logged
from experiments.tracking.mlflow_tracker import (
    NullTracker,
    close_abandoned_run,
    git_commit,
    open_tracker,
    run_name,
    run_page,
    system_tags,
    ui_command,
)

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
    """prepare -> train -> infer -> eval (those selected by cfg.stages); returns the run summary. Rank 0 holds the
    run directory (run_directory.RunDirectory) for the whole run."""
    ctx = dist_context()
    files = RunFiles(run_dir)
    directory = RunDirectory(files)
    try:
        previous = run_on_main(ctx, lambda: take_directory(directory, cfg)) or PreviousRun()
        summary = _run_in(directory, cfg, previous, overrides, parent_run_id, ctx)
    finally:
        directory.release()
    if ctx.is_main:
        for line in headline_lines(summary, files, summary.get("tracking_uri"), cfg.preset_note):
            log.info(line)
    return summary


def take_directory(directory: RunDirectory, cfg: ExperimentConfig) -> PreviousRun:
    """Lock the run directory, close a run that died there, apply the reuse and resume rules (run_directory.py), then
    clear what this run makes stale and write its config.yaml. Refusals come before anything is deleted."""
    files = directory.files
    previous = directory.acquire()
    previous = directory.settle_abandoned(previous, close_abandoned_run)
    plain = to_plain_dict(cfg)
    stages = [s.value for s in STAGE_ORDER if s in cfg.stages]
    stale = stale_outputs(files, stages, resume=cfg.training.resume, overwrite=cfg.overwrite)
    if cfg.training.resume:
        check_resume(files, previous, plain)
    if stale:
        log.warning("run directory %s: clearing %s before running %s (%s)", files.root,
                    ", ".join(p.name for p in stale), ",".join(stages),
                    "overwrite=true" if cfg.overwrite else "outputs of these stages and of later ones")
        clear(stale)
    write_text(files.resolved_config, OmegaConf.to_yaml(OmegaConf.create(plain)))
    return previous


def _carried_over(previous: PreviousRun, cfg: ExperimentConfig) -> dict[str, Any]:
    """What the new record keeps from the previous run's: the results of the stages it does not run again (their
    outputs stay), and the MLflow runs that made them."""
    if cfg.overwrite or not previous.record:
        return {"stages": {}}
    rerun = {s.value for s in cfg.stages}
    kept = {k: v for k, v in previous.record.get("stages", {}).items() if k not in rerun}
    seconds = {f"{k}_seconds": previous.record[f"{k}_seconds"] for k in kept if f"{k}_seconds" in previous.record}
    earlier = list(previous.record.get("earlier_mlflow_run_ids", []))
    if previous.mlflow_run_id:
        earlier.append(previous.mlflow_run_id)
    return {"stages": kept, **seconds, "earlier_mlflow_run_ids": earlier}


def _run_in(directory: RunDirectory, cfg: ExperimentConfig, previous: PreviousRun, overrides: tuple[str, ...],
            parent_run_id: str | None, ctx: DistContext) -> dict[str, Any]:
    files = directory.files
    tags = {"preset": cfg.preset, "git_commit": git_commit(), "overrides": " ".join(overrides) or "(none)",
            "device": describe_device(cfg.device), "prompt_version": PROMPT_VERSION, "run_dir": str(files.root),
            "world_size": str(ctx.world_size), **system_tags(run_description(cfg, overrides))}
    resume_run_id = previous.mlflow_run_id if cfg.training.resume else None
    summary: dict[str, Any] = {"run_dir": str(files.root), "mlflow_run_id": None, **_carried_over(previous, cfg)}
    tracker: Any = NullTracker()
    status, error = "FAILED", None
    release_memory()
    try:
        name = run_name(cfg.preset, overrides)
        tracker = run_on_main(ctx, lambda: open_tracker(cfg.tracking, cfg.outputs_dir, name, tags, parent_run_id,
                                                        resume_run_id)) or NullTracker()
        if resume_run_id and ctx.is_main and cfg.tracking.backend != "none" and not tracker.resumed:
            log.warning("training.resume=true: MLflow run %s (recorded in %s) is not in the store %s; logging to a "
                        "new run, %s", resume_run_id, files.run_summary, tracker.uri, tracker.run_id)
        if tracker.run_id in summary.get("earlier_mlflow_run_ids", []):  # the same MLflow run, continued
            summary["earlier_mlflow_run_ids"].remove(tracker.run_id)
        summary.update({"mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri,
                        "mlflow_experiment_id": getattr(tracker, "experiment_id", None), **process_identity(),
                        "started_at": now()})
        run_on_main(ctx, lambda: directory.write_record({**summary, "status": "RUNNING"}))
        tracker.log_params(flatten(to_plain_dict(cfg)))
        tracker.log_artifact(files.resolved_config)
        for stage in (s for s in STAGE_ORDER if s in cfg.stages):
            started = time.perf_counter()
            log.info("stage %s: starting", stage.value)
            summary["stages"][stage.value] = _run_stage(stage, cfg, files, tracker, ctx)
            seconds = time.perf_counter() - started
            summary[f"{stage.value}_seconds"] = seconds
            tracker.log_metrics({stage_seconds(stage.value): seconds})
            log.info("stage %s: done in %.1f s", stage.value, seconds)
        status = "FINISHED"
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through interrupts.SignalStop
        status, error = "KILLED", exc
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        if ctx.is_main:
            close_run(tracker, directory, {**summary, "ended_at": now()}, status, raise_errors=error is None)
        release_memory()
    return summary


def close_run(tracker, directory: RunDirectory, summary: dict[str, Any], status: str, *, raise_errors: bool) -> None:
    """End the run: the MLflow run first, whatever fails after it, then the record on disk. A record that cannot be
    written (a full disk) fails a run that had finished, in MLflow too. The first error is raised unless another one
    is already on its way out."""
    errors: list[Exception] = []
    try:
        tracker.finish(status)
    except Exception as err:
        log.exception("could not end MLflow run %s as %s", tracker.run_id, status)
        errors.append(err)
        status = "FAILED"
    try:
        directory.write_record({**summary, "status": status})
    except Exception as err:
        log.exception("could not write %s", directory.files.run_summary)
        errors.append(err)
        if status == "FINISHED":
            with contextlib.suppress(Exception):
                tracker.finish("FAILED")
    else:
        try:
            tracker.log_artifact(directory.files.run_summary)
        except Exception:
            log.exception("could not log %s to MLflow", directory.files.run_summary)
    if errors and raise_errors:
        raise errors[0]


def dataset_inputs(cfg: ExperimentConfig, files: RunFiles) -> list[dict[str, str]]:
    """The run's train/val/test subsets as MLflow dataset inputs: named by source and subset, with the prepare
    stage's fingerprint of their examples as the digest, so runs on the same examples show the same dataset."""
    report = json.loads(files.data_report.read_text(encoding="utf-8"))
    source = cfg.data.source.value
    where = cfg.data.path or {"sample": "bundled sample", "hub": "Salesforce/wikisql", "official": "WikiSQL release"}[
        source]
    revision = cfg.data.hub_revision if source == "hub" else None
    inputs = []
    for subset, facts in report["subsets"].items():
        origin = {"uri": where, "revision": revision, "split": facts["source_split"], "examples": facts["drawn"],
                  "seed": cfg.data.seed}
        inputs.append({"name": f"{source}-{subset}", "digest": facts["examples_sha"][:36], "context": subset,
                       "source_type": "hub" if source == "hub" else "local", "source": json.dumps(origin)})
    return inputs


def run_description(cfg: ExperimentConfig, overrides: Sequence[str]) -> str:
    """The MLflow run's description (Markdown): preset, model, data, training and decoding, and the command."""
    m, t = cfg.model, cfg.training
    steps = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_epochs:g} epochs"
    data = f"{cfg.data.source.value}" + (f" ({cfg.data.path})" if cfg.data.path else "")
    sizes = "/".join("all" if n is None else str(n) for n in (cfg.data_size.train, cfg.data_size.val,
                                                               cfg.data_size.test))
    return (f"**{cfg.preset}**: {m.name_or_path or m.name}, quantization {cfg.quantization.mode.value}, "
            f"LoRA r{cfg.lora.r}; data {data}, train/val/test {sizes}, max length {cfg.data_size.max_length}; "
            f"{steps} of {t.per_device_batch_size} x {t.gradient_accumulation_steps}, lr {t.learning_rate:g} "
            f"{t.lr_scheduler}; decoding {cfg.inference.constrain.value}"
            + (f", execution-guided k={cfg.inference.execution_guided}" if cfg.inference.execution_guided else "")
            + f"; stages {', '.join(s.value for s in cfg.stages)}.\n\n`experiments {' '.join(overrides)}`")


def headline_lines(summary: dict[str, Any], files: RunFiles, tracking_uri: str | None,
                   note: str | None = None) -> list[str]:
    """What a finished run prints last: the headline metrics with their 95% intervals, where the report is, how
    to see the run in MLflow, and the preset's note (`preset_note`: what it shows, what to run next)."""
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
    if summary.get("mlflow_run_id") and tracking_uri:
        lines.append(f"  {'MLflow run':<20} {summary['mlflow_run_id']}  ({ui_command(tracking_uri)})")
        if summary.get("mlflow_experiment_id"):
            page = run_page(tracking_uri, summary["mlflow_experiment_id"], summary["mlflow_run_id"])
            lines.append(f"  {'run page':<20} {page}")
    if note:
        lines.append(f"  {note}")
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
        from experiments.stages.prepare import run_prepare

        run_prepare(cfg, files.root)
        tracker.log_artifact(files.data_report, "data")
        tracker.log_datasets(dataset_inputs(cfg, files))
        return {"report": str(files.data_report)}
    if stage == Stage.train:
        from experiments.stages.train import run_train
        from experiments.training.callbacks import MetricsToTracker

        result = run_train(cfg, files.root, callbacks=(MetricsToTracker(tracker),))
        metrics, counts = train_summary_logged(result["summary"])
        tracker.log_metrics(metrics)
        tracker.log_params(counts)
        tracker.set_tags(result.get("tags", {}))  # the memory plan chosen, and the one the run ended with
        tracker.log_artifact(files.adapter_dir, "adapter")
        tracker.log_artifact(files.train_summary)
        if dist_context().is_main:  # the adapter as an MLflow model too (tracking.log_model, register_as)
            from experiments.tracking.model_logging import log_final_adapter

            summary = result["summary"]
            logged = log_final_adapter(cfg, files, tracker, step=summary.get("best_step") or summary["global_steps"])
            return {**summary, **({"mlflow_model": logged.to_json()} if logged else {})}
        return result["summary"]
    if stage == Stage.infer:
        from experiments.stages.infer import run_infer

        result = run_infer(cfg, files.root)
        metrics, counts = infer_summary_logged(result["summary"])
        tracker.log_metrics(metrics)
        tracker.log_params(counts)
        tracker.set_tags(result.get("tags", {}))  # the inference memory plan
        tracker.log_artifact(files.predictions)
        return result["summary"]
    from experiments.analysis.breakdown import interval_metrics
    from experiments.stages.evaluate import run_eval

    result = run_eval(cfg, files.root)
    metrics = result["metrics"]
    if metrics.get("unknown_prediction_ids"):  # loud in the run list too, not only in the report
        tracker.set_tags({"warning": "; ".join(metrics.get("warnings", []))})
    intervals = interval_metrics(result["analysis"])
    logged, counts = eval_logged(metrics, intervals)
    tracker.log_metrics(logged)
    tracker.log_params(counts)
    for path in (files.results, files.metrics, files.report_md, files.report_html, files.analysis_json):
        tracker.log_artifact(path)
    tracker.log_artifact(files.plots_dir, "plots")  # a directory: logged as plots/*.png
    return {**{k: v for k, v in metrics.items() if not isinstance(v, dict)}, **intervals}
