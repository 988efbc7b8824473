"""What every stage gives back, and which stage runs where.

A stage is a function `run(cfg, files, tracker) -> StageResult` in its own module (stages/prepare.py, train.py,
infer.py, evaluate.py). It writes its files in the run directory and returns what it produced: the summary the
run record keeps under `stages.<name>`, and what goes to MLflow (metrics named by tracking/metric_names.py, params,
tags, artifacts, dataset inputs). The pipeline logs a result the same way for every stage (`publish`); only the
train stage uses the tracker itself: the Trainer's curves while it runs, and, once its result is logged, the adapter
as an MLflow model (`then`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config import ExperimentConfig, Stage
from experiments.runs.files import RunFiles


@dataclass(frozen=True)
class Artifact:
    """A file or a directory to log, under `folder` of the run's artifacts (None: at the top)."""

    path: Path
    folder: str | None = None


@dataclass(frozen=True)
class StageResult:
    summary: Mapping[str, Any] = field(default_factory=dict)  # run_summary.json's stages.<name>
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()  # logged in this order
    datasets: tuple[Mapping[str, str], ...] = ()  # MLflow dataset inputs (tracker.log_datasets)
    # Run once the rest is logged; what it returns joins the summary (the train stage's MLflow model, which takes
    # the run's params and metrics as they are when it is logged)
    then: Callable[[], Mapping[str, Any]] | None = None


def publish(tracker, result: StageResult) -> dict[str, Any]:
    """Log a stage's result to the tracker (metrics, params, tags, artifacts, datasets), run its `then`; return
    the summary the run record keeps."""
    if result.metrics:
        tracker.log_metrics(dict(result.metrics))
    if result.params:
        tracker.log_params(dict(result.params))
    if result.tags:
        tracker.set_tags(dict(result.tags))
    for artifact in result.artifacts:
        tracker.log_artifact(artifact.path, artifact.folder)
    if result.datasets:
        tracker.log_datasets([dict(d) for d in result.datasets])
    return {**result.summary, **(result.then() if result.then else {})}


StageRunner = Callable[[ExperimentConfig, RunFiles, Any], StageResult]

# Each stage's module, imported on use: prepare and eval need no torch model code.
_MODULES = {Stage.prepare: "experiments.stages.prepare", Stage.train: "experiments.stages.train",
            Stage.infer: "experiments.stages.infer", Stage.eval: "experiments.stages.evaluate"}

# Stages that only rank 0 runs in a data-parallel job; train and infer run on every rank.
MAIN_ONLY_STAGES = (Stage.prepare, Stage.eval)


def runner(stage: Stage) -> StageRunner:
    """The stage's `run(cfg, files, tracker)`."""
    return importlib.import_module(_MODULES[stage]).run
