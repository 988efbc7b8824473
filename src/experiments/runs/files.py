"""The files a run directory holds (written whole by experiments/fileio.py's atomic writers)."""

from __future__ import annotations

from pathlib import Path


class RunFiles:
    """The files each stage writes into a run directory; later stages read them from here."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        return self.data_dir / f"{name}.jsonl"

    @property
    def tables_jsonl(self) -> Path:
        return self.data_dir / "tables.jsonl"

    @property
    def tables_sqlite(self) -> Path:
        return self.data_dir / "tables.sqlite"

    @property
    def databases_jsonl(self) -> Path:
        """Multi-table runs: the databases the subsets use (schemas, SQLite paths); WikiSQL runs have tables."""
        return self.data_dir / "databases.jsonl"

    @property
    def data_report(self) -> Path:
        return self.data_dir / "report.json"

    @property
    def adapter_dir(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_adapter_dir(self) -> Path:
        """The best evaluation's adapter so far (training.best_by), with best.json saying which step and score."""
        return self.checkpoints_dir / "best"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.jsonl"

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def analysis_json(self) -> Path:
        return self.root / "analysis.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def trainer_state(self) -> Path:
        return self.root / "trainer_state.json"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def infer_summary(self) -> Path:
        return self.root / "infer_summary.json"

    @property
    def run_summary(self) -> Path:
        return self.root / "run_summary.json"

    @property
    def resolved_config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        """Held by the process that runs in this directory (run_directory.RunDirectory)."""
        return self.root / ".lock"

    def stage_outputs(self, stage: str) -> tuple[Path, ...]:
        """What `stage` (prepare, train, infer or eval) writes here, as the README's Stages table lists it."""
        if stage == "prepare":
            return (self.data_dir,)
        if stage == "train":
            return (self.adapter_dir, self.checkpoints_dir, self.trainer_state, self.train_summary)
        if stage == "infer":
            return (self.predictions, self.infer_summary)
        if stage == "eval":
            return (self.results, self.metrics, self.analysis_json, self.report_md, self.report_html, self.plots_dir,
                    *(self.root / name for name in ("official_source.jsonl", "official_predictions.jsonl",
                                                    "official_tables.jsonl", "official_tables.db")))
        raise ValueError(f"{stage!r}: not a stage (prepare, train, infer, eval)")
