"""Hydra callback that gives a multirun one MLflow parent run, nests every job under it, and leaves a
comparison table of the children's headline metrics in the parent when the sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

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
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  order_by=["attributes.start_time ASC"])
    rows = []
    for child in children:
        row = {"run": child.info.run_name, "run_id": child.info.run_id, "status": child.info.status,
               "overrides": child.data.tags.get("overrides", "")}
        row.update({k: child.data.metrics.get(k) for k in HEADLINE})
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no child runs)\n"
    keys = list(rows[0])

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
        if self.tracker is None:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = comparison_rows(self.tracker.client, self.tracker.run_id)
        (sweep_dir / "comparison.md").write_text(markdown_table(rows))
        write_json(sweep_dir / "comparison.json", rows)
        self.tracker.log_artifact(sweep_dir / "comparison.md")
        self.tracker.log_artifact(sweep_dir / "comparison.json")
        failed = any(r["status"] != "FINISHED" for r in rows)
        self.tracker.finish("FAILED" if failed else "FINISHED")
