"""Hydra callback that gives a multirun one MLflow parent run, nests every job under it, and leaves a
comparison of the children in the parent when the sweep ends: the `experiments-compare` table (with the prompt/
test-set fingerprint warnings) and, for a sweep over training-set size, the scaling curve.

It also stops a sweep cleanly on SIGINT or SIGTERM. The first signal marks the sweep interrupted (`.interrupted` in
the sweep directory: no job starts after it) and, with the joblib launcher, is forwarded to the worker processes;
each running job ends its run KILLED (interrupts.py), then the parent run ends KILLED and the process exits 130 or
143. Should the sweep end any other way (a worker killed, so joblib gives up), the parent run is still closed at
exit, and the jobs whose processes died are marked KILLED.
"""

from __future__ import annotations

import atexit
import logging
import signal
from itertools import combinations
from pathlib import Path
from typing import Any

import psutil
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.analysis.compare_runs import (
    COST_NOTE,
    compare_pair,
    cost_table,
    fingerprint_alerts,
    metrics_table,
    pair_blocks,
    pair_json,
    run_json,
    runs_table,
)
from experiments.analysis.document import Alert, Document, Heading, Image, Paragraph, write_document
from experiments.analysis.run_records import RunError, RunRecord, load_run
from experiments.analysis.scaling import (
    plot_scaling,
    scaling_json,
    scaling_points,
    scaling_table,
    varied_settings,
    varies_train_size,
)
from experiments.fileio import write_json, write_text
from experiments.runs.files import RunFiles
from experiments.runs.interrupts import Interrupted, SignalStop, restore
from experiments.runs.run_directory import settle_if_abandoned
from experiments.tracking.mlflow_tracker import (
    PARENT_RUN_FILE,
    MlflowTracker,
    check_reachable,
    close_abandoned_run,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

# A child's row: its headline metrics as MLflow holds them (metric_names), under short keys
HEADLINE = {"execution_accuracy": "test/execution_accuracy", "logical_form_accuracy": "test/logical_form_accuracy",
            "valid_sql_rate": "test/valid_sql_rate"}


def _tracking(config: DictConfig):
    from experiments.config import TrackingConfig

    return TrackingConfig(backend=config.tracking.backend, uri=config.tracking.get("uri"),
                          experiment_name=config.tracking.get("experiment_name", "text2sql-lora"))


INTERRUPTED_FILE = ".interrupted"


def read_parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_RUN_FILE
    return path.read_text().strip() if path.is_file() else None


def sweep_interrupted(sweep_dir: str | Path) -> bool:
    """Whether a signal stopped this sweep: a job that has not started yet must not start."""
    return (Path(sweep_dir) / INTERRUPTED_FILE).is_file()


def forward_to_workers(signum: int) -> int:
    """Send `signum` to this process's child processes (joblib's workers; loky's resource tracker ignores it);
    returns how many got it."""
    sent = 0
    for child in psutil.Process().children():
        try:
            child.send_signal(signum)
            sent += 1
        except psutil.NoSuchProcess:
            continue
    return sent


def comparison_rows(client, parent_run_id: str) -> list[dict[str, Any]]:
    """The parent's children as MLflow sees them (status, overrides, headline metrics, run directory)."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  order_by=["attributes.start_time ASC"])
    rows = []
    for child in children:
        row = {"run": child.info.run_name, "run_id": child.info.run_id, "status": child.info.status,
               "overrides": child.data.tags.get("overrides", ""), "run_dir": child.data.tags.get("run_dir")}
        row.update({key: child.data.metrics.get(name) for key, name in HEADLINE.items()})
        rows.append(row)
    return rows


def _record(row: dict[str, Any]) -> RunRecord:
    """A child's run directory read back; a job that died before writing it still gets a row."""
    run_dir = Path(row["run_dir"]) if row.get("run_dir") else None
    try:
        record = load_run(run_dir, label=row["run"]) if run_dir else None
    except RunError as err:
        log.warning("sweep comparison: %s", err)
        record = None
    if record is None:
        record = RunRecord(label=row["run"], run_dir=run_dir or Path("?"), run_summary={"status": row["status"]})
    record.mlflow_run_id, record.run_name = row["run_id"], row["run"]
    record.run_summary.setdefault("status", row["status"])
    if not record.overrides and row["overrides"] not in ("", "(none)"):
        record.overrides = row["overrides"].split()
    return record


def _records_from_dir(sweep_dir: Path) -> list[RunRecord]:
    """tracking=none: the job directories under the sweep dir, in job order."""
    def job_number(path: Path) -> int:
        head = path.name.split("_", 1)[0]
        return int(head) if head.isdigit() else 1 << 30

    records = []
    for path in sorted((p for p in sweep_dir.iterdir() if (p / "config.yaml").is_file()), key=job_number):
        try:
            records.append(load_run(path))
        except RunError as err:
            log.warning("sweep comparison: %s", err)
    return records


def swept_params(records: list[RunRecord]) -> dict[str, str]:
    """The keys the sweep varied, each with the values it took (`training.learning_rate: 0.001,0.003`)."""
    swept: dict[str, list[str]] = {}
    for setting in varied_settings(records):
        for pair in setting.split():
            key, _, value = pair.partition("=")
            if value not in swept.setdefault(key, []):
                swept[key].append(value)
    return {f"swept.{key}": ",".join(values) for key, values in swept.items()}


def print_comparison(sweep_dir: Path, max_lines: int = 60) -> None:
    """The end of a sweep on the terminal: its comparison table (comparison.md) and where the files are."""
    path = sweep_dir / "comparison.md"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    shown = "\n".join(lines[:max_lines]) + (f"\n... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines
                                             else "")
    log.info("sweep comparison (%s, also comparison.html and comparison.json):\n%s", path, shown)


MAX_ALL_PAIRS = 5  # up to this many jobs every pair is tested (10 pairs); beyond, each job against the best


def sweep_pairs(records: list[RunRecord]) -> list[tuple[int, int]]:
    """The pairs of jobs a sweep's comparison tests: all of them for a few jobs, else each against the best by
    execution accuracy (the question a sweep asks: is the best one better than the rest?)."""
    scored = [i for i, r in enumerate(records) if r.accuracy("exec_match")]
    if len(scored) < 2:
        return []
    if len(scored) <= MAX_ALL_PAIRS:
        return list(combinations(scored, 2))
    best = max(scored, key=lambda i: records[i].accuracy("exec_match")[0])
    return [(min(i, best), max(i, best)) for i in scored if i != best]


def write_sweep_comparison(records: list[RunRecord], sweep_dir: Path, preset: str | None) -> list[Path]:
    """comparison.{md,html,json} (the `experiments-compare` table, with each job's overrides and the prompt/test
    fingerprint warnings) and, for a sweep over training-set size, the scaling curve and table."""
    doc = Document(f"Sweep {sweep_dir.name}")
    doc.add(*fingerprint_alerts(records))
    doc.add(Heading("Runs"), metrics_table(records, {"overrides": varied_settings(records)}), Paragraph(COST_NOTE),
            cost_table(records), runs_table(records))
    pairs = [compare_pair(records, a, b) for a, b in sweep_pairs(records)]
    data: dict[str, Any] = {"warnings": [{"title": a.title, "lines": list(a.lines)} for a in doc.blocks
                                         if isinstance(a, Alert)],
                            "runs": [run_json(i, r) for i, r in enumerate(records)],
                            "pairs": [pair_json(records, p) for p in pairs]}
    if pairs:
        doc.add(Heading("Pairs"), Paragraph(
            "Each pair scored on the same test examples: the McNemar test says whether the difference in execution "
            "accuracy is more than chance" + ("." if len(records) <= MAX_ALL_PAIRS else
                                               f"; with more than {MAX_ALL_PAIRS} jobs, each against the best.")))
        for pair in pairs:
            doc.add(*pair_blocks(records, pair, max_examples=10))
    paths: list[Path] = []
    if preset == "scaling" or varies_train_size(records):
        points = scaling_points(records)
        write_json(sweep_dir / "scaling.json", scaling_json(points))
        table = scaling_table(points)
        scaling_doc = Document(f"Scaling: sweep {sweep_dir.name}").add(table)
        paths += [sweep_dir / "scaling.json", write_document(scaling_doc, sweep_dir, "scaling")["md"]]
        doc.add(Heading("Scaling"), table)
        if points:
            png = plot_scaling(points, sweep_dir / "scaling.png", title=f"Sweep {sweep_dir.name}")
            doc.add(Image(png, "execution accuracy against training examples and training time",
                          inline_in_markdown=True))
            paths.append(png)
        data["scaling"] = scaling_json(points)
    written = write_document(doc, sweep_dir, "comparison")
    write_json(sweep_dir / "comparison.json", data)
    return [written["md"], written["html"], sweep_dir / "comparison.json", *paths]


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.tracker: MlflowTracker | None = None
        self.stop: SignalStop | None = None
        self.sweep_dir: Path | None = None
        self._handlers: dict[int, object] = {}

    def __getstate__(self) -> dict[str, Any]:
        """The copy a joblib worker gets (Hydra sends the callbacks along with each job): none of this process's
        signal handling or parent run (whose system-metrics thread cannot be pickled); a job finds the parent run
        in the sweep directory and handles its own signals (cli._main)."""
        return {**self.__dict__, "tracker": None, "stop": None, "_handlers": {}}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self.sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / INTERRUPTED_FILE).unlink(missing_ok=True)  # a sweep directory used again
        parallel = "joblib" in str(config.hydra.launcher.get("_target_", "")).lower()
        self.stop = SignalStop(raise_outside_jobs=False,
                               on_first_signal=lambda signum: self._interrupt(sweep_dir, signum, parallel))
        self._handlers = self.stop.install()
        atexit.register(self._close_abandoned)
        if config.tracking.backend != "mlflow":
            return
        tracking = _tracking(config)
        uri = resolve_tracking_uri(tracking, config.outputs_dir)
        check_reachable(uri)
        overrides = " ".join(config.hydra.overrides.task) or "(none)"
        self.tracker = MlflowTracker(uri, tracking.experiment_name, f"sweep {sweep_dir.name}",
                                     {"sweep_dir": str(sweep_dir), "overrides": overrides, "kind": "sweep"})
        write_text(sweep_dir / PARENT_RUN_FILE, self.tracker.run_id)
        log.info("MLflow parent run %s for the sweep in %s", self.tracker.run_id, sweep_dir)

    @staticmethod
    def _interrupt(sweep_dir: Path, signum: int, parallel: bool) -> None:
        write_text(sweep_dir / INTERRUPTED_FILE, f"{signal.Signals(signum).name}\n")
        sent = forward_to_workers(signum) if parallel else 0
        log.warning("%s: stopping the sweep; no job starts from now on%s", signal.Signals(signum).name,
                    f"; sent to the {sent} joblib processes, whose running jobs end KILLED" if parallel else "")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        preset = config.get("preset")
        signum = self.stop.signum if self.stop else None
        try:
            if self.tracker is None:  # tracking=none: the comparison is still written into the sweep dir
                if sweep_dir.is_dir():
                    write_sweep_comparison(_records_from_dir(sweep_dir), sweep_dir, preset)
                    print_comparison(sweep_dir)
            else:
                self._close_parent(sweep_dir, preset)
        finally:
            atexit.unregister(self._close_abandoned)
            restore(self._handlers)
        if signum is not None:
            raise Interrupted(signum)  # the command exits 130 or 143

    def _close_parent(self, sweep_dir: Path, preset: str | None) -> None:
        assert self.tracker is not None
        status = "FAILED"
        try:
            rows = comparison_rows(self.tracker.client, self.tracker.run_id)
            unfinished = sum(r["status"] != "FINISHED" for r in rows)
            if unfinished:
                log.error("sweep: %d of %d jobs did not finish; see the comparison in %s", unfinished, len(rows),
                          sweep_dir)
            status = "FAILED" if unfinished else "FINISHED"
            records = [_record(r) for r in rows]
            for path in write_sweep_comparison(records, sweep_dir, preset):
                self.tracker.log_artifact(path)
            self.tracker.log_params(swept_params(records))
            scores = [r["execution_accuracy"] for r in rows if r.get("execution_accuracy") is not None]
            if scores:  # the parent's own column in the runs list: the sweep's best child
                self.tracker.log_metrics({"sweep/best_execution_accuracy": max(scores)})
            print_comparison(sweep_dir)
        finally:
            if self.stop is not None and self.stop.signum is not None:
                status = "KILLED"
            self.tracker.finish(status)
            self.tracker = None

    def _close_abandoned(self) -> None:
        """At exit, when the sweep did not reach on_multirun_end: close the parent run (KILLED after a signal, else
        FAILED) and mark KILLED the jobs whose processes died with their runs open."""
        if self.tracker is not None:
            status = "KILLED" if self.stop is not None and self.stop.signum is not None else "FAILED"
            log.error("the sweep stopped before its end: parent run %s ends %s", self.tracker.run_id, status)
            tracker, self.tracker = self.tracker, None
            tracker.finish(status)
        if self.sweep_dir is not None and self.sweep_dir.is_dir():
            for job_dir in sorted(p for p in self.sweep_dir.iterdir() if p.is_dir()):
                try:
                    settle_if_abandoned(RunFiles(job_dir), close_abandoned_run, wait_s=10.0)
                except Exception:  # one unreadable job directory must not leave the others open
                    log.exception("could not close the run in %s", job_dir)
