"""Hydra callback that gives a multirun one MLflow parent run, nests every job under it, and leaves a
comparison of the children in the parent when the sweep ends: the `experiments-compare` table (with the prompt/
test-set fingerprint warnings) and, for a sweep over training-set size, the scaling curve."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.analysis.document import Alert, Document, Heading, Image, write_document
from experiments.analysis.runs import RunError, RunRecord, load_run
from experiments.analysis.scaling import (
    plot_scaling,
    scaling_json,
    scaling_points,
    scaling_table,
    varied_settings,
    varies_train_size,
)
from experiments.compare import fingerprint_alerts, metrics_table, run_json, runs_table
from experiments.data.jsonl import write_json
from experiments.tracking import PARENT_RUN_FILE, MlflowTracker, check_reachable, resolve_tracking_uri

log = logging.getLogger(__name__)

HEADLINE = ("execution_accuracy", "logical_form_accuracy", "valid_sql_rate", "n", "train_train_loss_last",
            "time_train_s", "time_infer_s", "train_peak_memory_gib")


def _tracking(config: DictConfig):
    from experiments.config import TrackingConfig

    return TrackingConfig(backend=config.tracking.backend, uri=config.tracking.get("uri"),
                          experiment_name=config.tracking.get("experiment_name", "text2sql-lora"))


def read_parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_RUN_FILE
    return path.read_text().strip() if path.is_file() else None


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
        row.update({k: child.data.metrics.get(k) for k in HEADLINE})
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


def write_sweep_comparison(records: list[RunRecord], sweep_dir: Path, preset: str | None) -> list[Path]:
    """comparison.{md,html,json} (the `experiments-compare` table, with each job's overrides and the prompt/test
    fingerprint warnings) and, for a sweep over training-set size, the scaling curve and table."""
    doc = Document(f"Sweep {sweep_dir.name}")
    doc.add(*fingerprint_alerts(records))
    doc.add(Heading("Runs"), metrics_table(records, {"overrides": varied_settings(records)}), runs_table(records))
    data: dict[str, Any] = {"warnings": [{"title": a.title, "lines": list(a.lines)} for a in doc.blocks
                                         if isinstance(a, Alert)],
                            "runs": [run_json(i, r) for i, r in enumerate(records)]}
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
            doc.add(Image(png, "execution accuracy against training examples and training time"))
            paths.append(png)
        data["scaling"] = scaling_json(points)
    written = write_document(doc, sweep_dir, "comparison")
    write_json(sweep_dir / "comparison.json", data)
    return [written["md"], written["html"], sweep_dir / "comparison.json", *paths]


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.tracker: MlflowTracker | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.backend != "mlflow":
            return
        tracking = _tracking(config)
        uri = resolve_tracking_uri(tracking, config.outputs_dir)
        check_reachable(uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task) or "(none)"
        self.tracker = MlflowTracker(uri, tracking.experiment_name, f"sweep {sweep_dir.name}",
                                     {"sweep_dir": str(sweep_dir), "overrides": overrides, "kind": "sweep"})
        (sweep_dir / PARENT_RUN_FILE).write_text(self.tracker.run_id)
        log.info("MLflow parent run %s for the sweep in %s", self.tracker.run_id, sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        preset = config.get("preset")
        if self.tracker is None:  # tracking=none: the comparison is still written into the sweep dir
            if sweep_dir.is_dir():
                write_sweep_comparison(_records_from_dir(sweep_dir), sweep_dir, preset)
            return
        failed = True
        try:
            rows = comparison_rows(self.tracker.client, self.tracker.run_id)
            failed = any(r["status"] != "FINISHED" for r in rows)
            if failed:
                log.error("sweep: %d of %d jobs did not finish; see the comparison in %s",
                          sum(r["status"] != "FINISHED" for r in rows), len(rows), sweep_dir)
            for path in write_sweep_comparison([_record(r) for r in rows], sweep_dir, preset):
                self.tracker.log_artifact(path)
        finally:
            self.tracker.finish("FAILED" if failed else "FINISHED")
