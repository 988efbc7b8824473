"""MLflow tracking through an explicit client and run id (no fluent global state), so Hydra's sequential
multirun can open and close one run per job safely, failed jobs included.

A multirun gets one parent run, created by `SweepCallback` before the first job; each job's run is nested under it.
A SQLite store is created (tables, migrations, the experiment) under a file lock beside it, so processes started
together on a fresh outputs/ do not race to create it; its artifacts go beside it, never into the working directory.
A resumed run reopens its MLflow run by id (`resume_run_id`), so a killed run continues instead of staying RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from experiments.config import TrackingConfig

log = logging.getLogger(__name__)

PARENT_RUN_FILE = ".mlflow_parent_run_id"
# MLflow 3 opens an experiment without this tag in its GenAI view; training runs belong in the model-training one.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
SYSTEM_METRICS_INTERVAL_S = 10


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


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri[len("sqlite:///"):].split("?", 1)[0]
    name = name.removeprefix("file:")  # sqlite:///file:PATH?mode=ro&uri=true
    return None if name in ("", ":memory:") else Path(name).expanduser().absolute()


def check_store(uri: str) -> None:
    """Refuse, naming the path and tracking.uri, a SQLite store in a directory that does not exist (MLflow would
    silently create it, anywhere) or one this process cannot write."""
    path = sqlite_path(uri)
    if path is None:
        return
    if not path.parent.is_dir():
        raise TrackingUnavailable(f"MLflow store {path} (tracking.uri={uri}): directory {path.parent} does not "
                                  "exist; create it, fix tracking.uri, or leave it unset for the default store "
                                  "under outputs_dir")
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise TrackingUnavailable(f"MLflow store {path} (tracking.uri={uri}) is read-only ({target} is not "
                                  "writable); point tracking.uri at a writable store, or run with tracking=none")


@contextlib.contextmanager
def store_lock(uri: str, timeout_s: float = 300.0) -> Iterator[None]:
    """Held while a process creates or first opens a SQLite store, so that two processes never create its tables
    at once (MLflow's migrations then fail with `table experiments already exists`). No-op for other stores."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    with FileLock(f"{path}.lock", timeout=timeout_s):
        yield


def store_error(uri: str, err: Exception) -> TrackingUnavailable:
    """An MLflow store failure at the start of a run, named by its store and tracking.uri."""
    path = sqlite_path(uri)
    where = f"MLflow store {path} (tracking.uri={uri})" if path else f"MLflow store tracking.uri={uri}"
    hint = ("it is read-only; point tracking.uri at a writable store, or run with tracking=none"
            if "readonly" in str(err).lower().replace("-", "") else "fix tracking.uri, or run with tracking=none")
    return TrackingUnavailable(f"{where}: {type(err).__name__}: {str(err)[:500]}; {hint}")


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


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


# Short names for the keys a run name shows (preset plus what its overrides change)
_SHORT_KEYS = {"training.learning_rate": "lr", "training.num_epochs": "epochs", "training.max_steps": "steps",
               "data_size.train": "train", "data_size.val": "val", "data_size.test": "test",
               "data_size.max_length": "max_length", "training.per_device_batch_size": "batch",
               "training.gradient_accumulation_steps": "accumulation", "inference.constrain": "constrain",
               "inference.execution_guided": "guided", "model.name_or_path": "model"}
# Overrides that say where, not what: left out of run names
_PLACES = ("hydra.", "outputs_dir", "experiment", "tracking.", "overwrite", "stages", "+hydra", "~hydra")


def run_name(preset: str, overrides: Sequence[str]) -> str:
    """`smoke lr=0.003`, `baseline train=4000 epochs=2`: the preset and what the command line changed, so a sweep's
    children, a standalone run and a comparison do not all read `smoke` in the runs list."""
    parts = [preset]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if not value or key.startswith(_PLACES):
            continue
        parts.append(f"{_SHORT_KEYS.get(key, key.rsplit('.', 1)[-1])}={value}")
    return " ".join(parts)[:250]


def system_tags(description: str) -> dict[str, str]:
    """MLflow's own tags, which fill the UI's Source, User, Version and Description fields."""
    import getpass
    import sys

    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment (some containers)
        user = "unknown"
    # The UI's Source column shows what follows the last "/": arguments holding a path are left to the description
    source = " ".join(["experiments", *(arg for arg in sys.argv[1:] if "/" not in arg)])[:500]
    return {"mlflow.source.name": source, "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git_commit(), "mlflow.user": user, "mlflow.note.content": description}


def ui_command(uri: str) -> str:
    """The command that shows this store's runs: `mlflow ui` for a local store, the server's address otherwise."""
    if uri.startswith(("http://", "https://")):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def run_page(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in MLflow's UI, in its model-training view (MLflow 3 opens experiments in the GenAI one)."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


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
    resumed: bool = False

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_datasets(self, datasets: Sequence[Mapping[str, str]]) -> None: ...
    def finish(self, status: str) -> None: ...


class MlflowTracker:
    """One MLflow run, addressed by id: a new one, or with `resume_run_id` that run reopened (RUNNING again) when
    the store has it; `resumed` says which happened."""

    def __init__(self, uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str],
                 parent_run_id: str | None = None, resume_run_id: str | None = None, system_metrics: bool = True):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self._monitor = None
        self.resumed = False
        self._logged_params: dict[str, str] = {}
        check_store(uri)
        try:
            with store_lock(uri):
                self.client = MlflowClient(tracking_uri=uri)
                experiment_id = self.experiment_id = ensure_experiment(self.client, experiment_name, uri)
            previous = _existing_run(self.client, resume_run_id) if resume_run_id else None
            if previous is not None:
                self.run_id = resume_run_id
                self.client.update_run(self.run_id, status="RUNNING")
                self._logged_params = dict(previous.data.params)
                resumes = int(previous.data.tags.get("resumed", "0")) + 1
                self.client.set_tag(self.run_id, "resumed", str(resumes))
                self.resumed = True
                return
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            if resume_run_id:
                all_tags["resumed_from_run_id"] = resume_run_id
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
        except TrackingUnavailable:
            raise
        except Exception as err:  # a read-only or broken store: named here, not deep in SQLAlchemy
            raise store_error(uri, err) from err
        finally:
            if getattr(self, "run_id", None) and system_metrics:
                self._monitor = _start_system_metrics(self.run_id, uri, resume=self.resumed)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; in a reopened run only new keys (MLflow refuses to change a param), with the values that
        changed on resume (say training.resume itself) in the `resume_changes` tag."""
        from mlflow.entities import Param

        values = {k: str(v)[:6000] for k, v in params.items()}
        changed = {k: v for k, v in values.items() if k in self._logged_params and self._logged_params[k] != v}
        items = [Param(k, v) for k, v in values.items() if k not in self._logged_params]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        self._logged_params.update({p.key: p.value for p in items})
        if changed:
            self.set_tags({"resume_changes": "; ".join(f"{k}: {self._logged_params[k]} -> {v}"
                                                       for k, v in sorted(changed.items()))})

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

    def log_datasets(self, datasets: Sequence[Mapping[str, str]]) -> None:
        """Datasets as the run's inputs (name, digest, source type and source, context train/val/test), so MLflow's
        Datasets column shows what the run was trained and scored on."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(name=d["name"], digest=d["digest"], source_type=d["source_type"],
                                       source=d["source"]), tags=[InputTag("mlflow.data.context", d["context"])])
                  for d in datasets]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def finish(self, status: str) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception:  # system metrics are a nicety: never the reason a run stays open
                log.warning("MLflow system metrics: the monitor did not stop cleanly", exc_info=True)
        self.client.set_terminated(self.run_id, status=status)


def _start_system_metrics(run_id: str, uri: str, resume: bool):
    """CPU, memory, disk, network and (with nvidia-ml-py) GPU utilisation and memory, every 10 s, as `system/*`
    metrics of the run, so an idle GPU shows without a profiler. None when MLflow cannot start the monitor."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, resume_logging=resume,
                                       tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception:
        log.warning("MLflow system metrics: cannot start the monitor; the run goes on without", exc_info=True)
        return None


def _existing_run(client, run_id: str):
    """The run with this id in the client's store, or None (another store, or deleted)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def close_abandoned_run(uri: str, run_id: str, status: str = "KILLED") -> str | None:
    """End a run whose process died without closing it (kill -9, out of memory, power loss) with `status`, if the
    store still has it RUNNING. Returns the run's status in the store afterwards, or None when the store or the run
    cannot be reached (logged: it must not stop the new run)."""
    try:
        from mlflow.tracking import MlflowClient

        check_store(uri)
        with store_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            run = _existing_run(client, run_id)
        if run is None:
            log.warning("MLflow run %s is not in the store %s: nothing to close", run_id, uri)
            return None
        if run.info.status != "RUNNING":
            return run.info.status
        client.set_terminated(run_id, status=status)
        return status
    except Exception as err:  # an unreachable store: the directory's record still says what happened
        log.warning("could not close MLflow run %s in %s (%s: %s)", run_id, uri, type(err).__name__, err)
        return None


def ensure_experiment(client, name: str, uri: str | None = None) -> str:
    """The experiment's id, created if needed; a SQLite store's experiment keeps its artifacts beside the database
    (MLflow's default is ./mlruns in whatever directory the process started in)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    path = sqlite_path(uri) if uri else None
    location = (path.parent / "mlartifacts").as_uri() if path else None
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:  # created meanwhile by a parallel job
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_tracker(cfg: TrackingConfig, outputs_dir: str, run_name: str, tags: Mapping[str, str],
                 parent_run_id: str | None = None, resume_run_id: str | None = None) -> MlflowTracker | NullTracker:
    if cfg.backend == "none":
        return NullTracker()
    if cfg.backend != "mlflow":
        raise ValueError(f"tracking.backend={cfg.backend!r}: expected mlflow or none")
    uri = resolve_tracking_uri(cfg, outputs_dir)
    check_reachable(uri)
    return MlflowTracker(uri, cfg.experiment_name, run_name, tags, parent_run_id, resume_run_id,
                         system_metrics=cfg.system_metrics)
