"""MLflow tracking through an explicit client and run id (no fluent global state), so Hydra's sequential
multirun can open and close one run per job safely, failed jobs included.

A multirun gets one parent run, created by `SweepCallback` before the first job (which also creates the SQLite
store and the experiment once, so parallel jobs don't race to create them); each job's run is nested under it.
"""

from __future__ import annotations

import logging
import math
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.config import TrackingConfig

log = logging.getLogger(__name__)

PARENT_RUN_FILE = ".mlflow_parent_run_id"


class TrackingUnavailable(RuntimeError):
    """The configured tracking server cannot be reached (raised before any work starts)."""


def default_store(outputs_dir: str) -> Path:
    """The SQLite file that holds MLflow runs when no tracking.uri is set."""
    return Path(outputs_dir).expanduser().resolve() / "mlflow.db"


def resolve_tracking_uri(cfg: TrackingConfig, outputs_dir: str) -> str:
    """Configured URI, or a SQLite file under outputs/ (MLflow 3.13+ refuses the old ./mlruns file store)."""
    if cfg.uri:
        return cfg.uri
    path = default_store(outputs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, if an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):  # noqa: S310
            pass
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable ({err}); start it, fix "
                                  "tracking.uri, or run with tracking=none") from None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


def ui_command(uri: str) -> str:
    """The command that shows this store's runs: `mlflow ui` for a local store, the server's address otherwise."""
    if uri.startswith(("http://", "https://")):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class NullTracker:
    """tracking=none: every call is a no-op."""

    run_id: str | None = None
    uri: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def finish(self, status: str) -> None: ...


class MlflowTracker:
    """One MLflow run, addressed by id."""

    def __init__(self, uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str],
                 parent_run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = ensure_experiment(self.client, experiment_name)
        all_tags = dict(tags)
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in numeric_metrics(metrics).items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start:start + 1000])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value)[:5000])

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def ensure_experiment(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by a parallel job
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_tracker(cfg: TrackingConfig, outputs_dir: str, run_name: str, tags: Mapping[str, str],
                 parent_run_id: str | None = None) -> MlflowTracker | NullTracker:
    if cfg.backend == "none":
        return NullTracker()
    if cfg.backend != "mlflow":
        raise ValueError(f"tracking.backend={cfg.backend!r}: expected mlflow or none")
    uri = resolve_tracking_uri(cfg, outputs_dir)
    check_reachable(uri)
    return MlflowTracker(uri, cfg.experiment_name, run_name, tags, parent_run_id)
