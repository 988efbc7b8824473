"""What a run directory holds across runs, and what a new run may do with it.

- **A lock**, `.lock`, held by the process that runs there from before its MLflow run opens until after it closes
  (rank 0 of a data-parallel job). The kernel releases it when the process dies, even by kill -9: a held lock means
  the directory is in use, and a free lock beside a record that says RUNNING means that run died without closing;
  it is marked KILLED, on disk and in MLflow, when the directory is next used.
- **The record**, run_summary.json: written when a run starts (status RUNNING, its MLflow run id and store) and
  again when it ends (the final status, what each stage returned).
- **Reuse.** A directory that holds prepared data or a training's outputs is not prepared or trained again: that
  would delete the checkpoints, replace the adapter and leave the old predictions and reports beside an adapter they
  no longer match. `training.resume=true` continues it instead (the same data, the training from its last complete
  checkpoint, the same MLflow run); `overwrite=true` clears it first. The later stages (infer, eval) may run again
  on what is there, to re-score its adapter say. Every run first clears the outputs of the stages it runs and of
  the stages after them, so no stale output stays beside a new one.
- **Resume** continues only the run it was: keys that change the weights training produces (RESUME_FROZEN, minus
  RESUME_MAY_CHANGE) must equal the previous config.yaml's, or it is refused with the keys that differ.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from experiments.config import flatten
from experiments.fileio import write_json
from experiments.runs.files import RunFiles

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("prepare", "train", "infer", "eval")
# The stages whose outputs make a run what it is (its data, its weights): done again only on purpose.
FOUNDATION_STAGES: tuple[str, ...] = ("prepare", "train")
# Config sections that decide what training produces: the base model, the adapter, the data and the schedule...
RESUME_FROZEN: tuple[str, ...] = ("model", "quantization", "lora", "data", "data_size", "training")
# ...except these keys, which a resumed run may change: when it logs, evaluates and saves, how a step is computed
# (same maths), how long it waits for an improvement, and where a downloaded release is cached.
RESUME_MAY_CHANGE: frozenset[str] = frozenset({
    "training.resume", "training.logging_steps", "training.eval_steps", "training.save_steps",
    "training.save_total_limit", "training.eval_generate_examples", "training.early_stopping_patience",
    "training.compile", "training.gradient_checkpointing", "data.cache_dir",
})


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked; the message says why and how to go on."""


@dataclass
class PreviousRun:
    """What the directory says about the last run there: its record (run_summary.json) and config (config.yaml);
    empty in a fresh directory."""

    record: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None

    @property
    def status(self) -> str | None:
        return self.record.get("status")

    @property
    def mlflow_run_id(self) -> str | None:
        return self.record.get("mlflow_run_id")

    @property
    def tracking_uri(self) -> str | None:
        return self.record.get("tracking_uri")


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def process_identity() -> dict[str, Any]:
    """Who is running here, for the record (and for the message a second process gets)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


class RunDirectory:
    """One run directory, used by this process: `acquire` takes the lock and reads the previous run, `release`
    gives the lock back (a dead process gives it back too)."""

    def __init__(self, files: RunFiles) -> None:
        self.files = files
        self._lock: FileLock | None = None

    def acquire(self, wait_s: float = 0.0) -> PreviousRun:
        """Take the directory (refused, naming the process, if another one holds it for longer than `wait_s`);
        returns the previous run."""
        self.files.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.files.lock), timeout=wait_s)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_json(self.files.run_summary)
            who = f" (pid {holder.get('pid')} on {holder.get('host')}, per run_summary.json)" if holder.get("pid") \
                else ""
            raise RunDirectoryError(f"run directory {self.files.root} is in use by another process{who}; wait for it "
                                    "to end, or run into another directory (hydra.run.dir=...)") from None
        self._lock = lock
        try:
            return PreviousRun(record=_read_json(self.files.run_summary), config=self._previous_config())
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _previous_config(self) -> dict[str, Any] | None:
        path = self.files.resolved_config
        if not path.is_file():
            return None
        try:
            return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]
        except Exception as err:
            raise RunDirectoryError(f"{path}: the previous run's config is unreadable ({err}); run with "
                                    "overwrite=true to clear the directory, or into another directory") from None

    def settle_abandoned(self, previous: PreviousRun,
                         close_mlflow_run: Callable[[str, str], str | None]) -> PreviousRun:
        """A previous run still RUNNING while its lock was free died without closing (kill -9, out of memory, power
        loss): end its MLflow run KILLED (unless the store already ended it) and say so in its record."""
        if previous.status != "RUNNING":
            return previous
        status = "KILLED"
        if previous.mlflow_run_id and previous.tracking_uri:
            status = close_mlflow_run(previous.tracking_uri, previous.mlflow_run_id) or "KILLED"
        log.warning("run directory %s: the run recorded there (MLflow run %s, pid %s) stopped without closing, "
                    "killed: marked %s", self.files.root, previous.mlflow_run_id, previous.record.get("pid"), status)
        record = {**previous.record, "status": status, "ended_at": now(),
                  "ended_by": "found dead when the directory was next used"}
        self.write_record(record)
        return PreviousRun(record=record, config=previous.config)

    def write_record(self, record: Mapping[str, Any]) -> None:
        write_json(self.files.run_summary, dict(record))


def settle_if_abandoned(files: RunFiles, close_mlflow_run: Callable[[str, str], str | None],
                        wait_s: float = 0.0) -> str | None:
    """Close the run recorded in a directory if it died (see RunDirectory.settle_abandoned); what a sweep does for
    its jobs when it ends abnormally. Returns the run's status now, or None while the directory is in use."""
    status = _read_json(files.run_summary).get("status")
    if status != "RUNNING":
        return status
    directory = RunDirectory(files)
    try:
        previous = directory.acquire(wait_s)
    except RunDirectoryError:
        return None
    try:
        return directory.settle_abandoned(previous, close_mlflow_run).status
    finally:
        directory.release()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _has_output(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def stages_with_outputs(files: RunFiles) -> list[str]:
    """The stages whose outputs are in the directory, in pipeline order."""
    return [stage for stage in STAGES if any(_has_output(p) for p in files.stage_outputs(stage))]


def stale_outputs(files: RunFiles, stages: Sequence[str], *, resume: bool, overwrite: bool) -> list[Path]:
    """The outputs a run of `stages` must clear first (see the module docstring), or RunDirectoryError when it
    would prepare or train again over what is there without training.resume or overwrite."""
    present = stages_with_outputs(files)
    if not present or not stages:
        return []
    if overwrite:
        return [p for stage in STAGES for p in files.stage_outputs(stage) if p.exists()]
    redone = [stage for stage in FOUNDATION_STAGES if stage in stages and stage in present]
    if redone and not resume:
        last_kept = max(STAGES.index(s) for s in present if s in FOUNDATION_STAGES)
        later = ",".join(STAGES[last_kept + 1:])
        what = {"prepare": "prepared data (data/)", "train": "training outputs (adapter/, checkpoints/)"}
        raise RunDirectoryError(
            f"run directory {files.root} holds the {' and '.join(what[s] for s in redone)} of an earlier run; "
            f"running {' and '.join(redone)} again here would replace them and leave that run's later outputs "
            f"beside ones they no longer match. Use training.resume=true to continue it, stages=[{later}] to run only "
            f"the later stages on what is there, overwrite=true to clear the directory and start again, or another "
            f"directory (hydra.run.dir=...)")
    first = min(STAGES.index(stage) for stage in stages)
    kept = set(FOUNDATION_STAGES) if resume else set()
    return [p for stage in STAGES[first:] if stage not in kept for p in files.stage_outputs(stage) if p.exists()]


def clear(paths: Sequence[Path]) -> None:
    """Delete a previous run's stale outputs (files and directories)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def resume_conflicts(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for every key a resumed run may not change (RESUME_FROZEN minus RESUME_MAY_CHANGE) that
    differs between the previous config and this one."""
    old, new = flatten(previous), flatten(current)
    missing = object()
    keys = sorted(k for k in old.keys() | new.keys()
                  if k.split(".", 1)[0] in RESUME_FROZEN and k not in RESUME_MAY_CHANGE)

    def shown(value: Any) -> str:
        return "(not set)" if value is missing else repr(value)

    return [f"{k}: {shown(old.get(k, missing))} -> {shown(new.get(k, missing))}" for k in keys
            if old.get(k, missing) != new.get(k, missing)]


def check_resume(files: RunFiles, previous: PreviousRun, current: Mapping[str, Any]) -> None:
    """Refuse a resume whose config differs from the run it continues in a key that changes what it trains."""
    if previous.config is None:
        return
    conflicts = resume_conflicts(previous.config, current)
    if conflicts:
        raise RunDirectoryError(
            f"training.resume=true in {files.root}: the config differs from the run it would continue "
            f"({files.resolved_config}) in {len(conflicts)} key(s) that change what training produces:\n  "
            + "\n  ".join(conflicts)
            + "\nresume with the same values, or start a new run (another directory, or overwrite=true)")
