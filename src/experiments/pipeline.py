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
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments.analysis.run_facts import facts_markdown, run_facts
from experiments.config import STAGE_ORDER, ExperimentConfig, Stage, flatten, to_plain_dict
from experiments.data.prompt import PROMPT_VERSION
from experiments.fileio import write_text
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
from experiments.stages.contract import MAIN_ONLY_STAGES, publish, runner
from experiments.tracking.metric_names import stage_seconds
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
        for line in headline_lines(summary, files, summary.get("tracking_uri"), preset_note(cfg)):
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
            describe_ran(tracker, cfg, overrides, files)
            close_run(tracker, directory, {**summary, "ended_at": now()}, status, raise_errors=error is None)
        release_memory()
    return summary


def describe_ran(tracker, cfg: ExperimentConfig, overrides: Sequence[str], files: RunFiles) -> None:
    """The MLflow run's description again at its end, with what the stages recorded (it opened with the config's
    plan); a failure only warns."""
    try:
        tracker.set_tags({"mlflow.note.content": run_description(cfg, overrides, files)})
    except Exception:
        log.warning("could not update the description of MLflow run %s", tracker.run_id, exc_info=True)


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


def run_description(cfg: ExperimentConfig, overrides: Sequence[str], files: RunFiles | None = None) -> str:
    """The MLflow run's description (Markdown): the run's facts (analysis/run_facts.py; `files=None`: from the config
    alone, as when the run opens), the stages and the command."""
    return (f"{facts_markdown(run_facts(cfg, files))}\n- **stages**: {', '.join(s.value for s in cfg.stages)}"
            f"\n\n`experiments {' '.join(overrides)}`")


def preset_note(cfg: ExperimentConfig) -> str | None:
    """The preset's closing note, unless the run swapped the model the note speaks of (its figures and advice are
    that model's: `experiment=spider_smoke model=smollm2_135m` is not a random tiny model)."""
    return cfg.preset_note if cfg.preset_note_model in (None, cfg.model.name) else None


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


def _run_stage(stage: Stage, cfg: ExperimentConfig, files: RunFiles, tracker, ctx: DistContext) -> dict[str, Any]:
    """Run one stage (stages/contract.py) and log what it gives back; returns its summary for the record. Prepare and
    eval run on rank 0 alone in a data-parallel job; train and infer on every rank."""
    def work() -> dict[str, Any]:
        return publish(tracker, runner(stage)(cfg, files, tracker))

    if stage in MAIN_ONLY_STAGES:
        return run_on_main(ctx, work) or {}
    return work()
