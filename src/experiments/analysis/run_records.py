"""One finished (or failed) run, read back from its run directory: what it scored, on which examples, with which
prompt, how long each stage took. Every file is optional except the directory itself, so a failed run or a
zero-shot run (no train stage, no adapter) is compared like any other, with blanks where it has nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.analysis.stats import wilson_interval
from experiments.data.fingerprints import examples_fingerprint, ids_fingerprint
from experiments.data.jsonl import iter_jsonl
from experiments.data.records import DataError
from experiments.runs.files import RunFiles

STAGES = ("prepare", "train", "infer", "eval")


class RunError(ValueError):
    """A run that cannot be read; the message names the run and the file."""


@dataclass
class RunRecord:
    label: str  # short name used in tables
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    run_summary: dict[str, Any] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)
    infer_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    data_report: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] | None = None  # id -> results.jsonl row
    test_ids: list[str] | None = None
    test_examples_sha: str | None = None
    overrides: list[str] = field(default_factory=list)  # Hydra's task overrides (.hydra/overrides.yaml)
    mlflow_run_id: str | None = None
    run_name: str | None = None

    @property
    def preset(self) -> str:
        return str(self.config.get("preset") or self.run_name or "?")

    @property
    def status(self) -> str:
        return str(self.run_summary.get("status") or ("FINISHED" if self.metrics else "UNKNOWN"))

    @property
    def zero_shot(self) -> bool:
        """Scored with the base model alone: no train stage here, no adapter given (or zero_shot forced)."""
        if self.config.get("zero_shot"):
            return True
        if "adapter" in self.infer_summary:
            return self.infer_summary["adapter"] is None
        stages = self.config.get("stages") or []
        return "infer" in stages and "train" not in stages and not self.config.get("adapter")

    @property
    def prompt_fingerprint(self) -> str | None:
        return self.data_report.get("prompt_fingerprint")

    @property
    def prompt_version(self) -> str | None:
        return self.data_report.get("prompt_version")

    @property
    def test_ids_sha(self) -> str | None:
        if self.test_ids is not None:
            return ids_fingerprint(self.test_ids)
        return self.data_report.get("subsets", {}).get("test", {}).get("ids_sha")

    @property
    def n(self) -> int | None:
        if self.results is not None:
            return len(self.results)
        return None if self.metrics is None else int(self.metrics.get("n", 0))

    def successes(self, key: str) -> int | None:
        """How many examples were right by `exec_match` / `lf_match` (from results, else rate x n); None when the run
        has no such verdict (multi-table data has no logical forms)."""
        if self.results is not None:
            if self.results and not any(key in r for r in self.results.values()):
                return None
            return sum(bool(r.get(key)) for r in self.results.values())
        metric = {"exec_match": "execution_accuracy", "lf_match": "logical_form_accuracy"}[key]
        if self.metrics is None or self.metrics.get(metric) is None:
            return None
        return round(float(self.metrics[metric]) * int(self.metrics.get("n", 0)))

    def accuracy(self, key: str) -> tuple[float, float, float] | None:
        """(rate, Wilson low, Wilson high) for exec_match / lf_match."""
        hits, n = self.successes(key), self.n
        if hits is None or not n:
            return None
        low, high = wilson_interval(hits, n)
        return hits / n, low, high

    def stage_seconds(self, stage: str) -> float | None:
        value = self.run_summary.get(f"{stage}_seconds")
        return float(value) if isinstance(value, int | float) else None

    @property
    def train_examples(self) -> int | None:
        """Examples the training set held (drawn by prepare; train_summary's count drops over-long ones)."""
        if "train_examples" in self.train_summary:
            return int(self.train_summary["train_examples"])
        drawn = self.data_report.get("subsets", {}).get("train", {}).get("drawn")
        return None if self.zero_shot or drawn is None else int(drawn)

    @property
    def train_seconds(self) -> float | None:
        value = self.train_summary.get("train_seconds")
        return float(value) if isinstance(value, int | float) else self.stage_seconds("train")

    @property
    def peak_memory_gib(self) -> float | None:
        peaks = [v for v in (self.train_summary.get("peak_memory_gib"), self.infer_summary.get("infer_peak_memory_gib"))
                 if isinstance(v, int | float)]
        return max(peaks) if peaks else None

    def question(self, example_id: str) -> str:
        row = (self.results or {}).get(example_id, {})
        return str(row.get("question", ""))


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object")
    return value


def _config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # a YAML error's type depends on the parser
        raise RunError(f"{path}: not a readable config ({err})") from None
    return value if isinstance(value, dict) else {}


def _config_list(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # Hydra's own bookkeeping: unreadable means unknown, not an error in the run
        return []
    return value if isinstance(value, list) else []


def _results(path: Path) -> dict[str, dict[str, Any]] | None:
    if not path.is_file():
        return None
    rows: dict[str, dict[str, Any]] = {}
    try:
        for lineno, obj in iter_jsonl(path):
            if "id" not in obj:
                raise RunError(f"{path} line {lineno}: no 'id'")
            rows[str(obj["id"])] = obj
    except DataError as err:
        raise RunError(str(err)) from None
    return rows


def _test_split(path: Path) -> tuple[list[str] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        examples = [obj for _, obj in iter_jsonl(path)]
    except DataError as err:
        raise RunError(str(err)) from None
    return [str(e.get("id")) for e in examples], examples_fingerprint(examples)


def load_run(run_dir: str | Path, label: str | None = None) -> RunRecord:
    """Read a run directory (written by the pipeline, or by hand with the same file names)."""
    files = RunFiles(Path(run_dir).expanduser())
    root = files.root
    if not root.is_dir():
        raise RunError(f"{root}: not a run directory (it does not exist)")
    known = (files.resolved_config, files.run_summary, files.metrics, files.results, files.data_dir)
    if not any(path.exists() for path in known):
        raise RunError(f"{root}: not a run directory (none of {', '.join(p.name for p in known)} is there)")
    record = RunRecord(label=label or root.name, run_dir=root, config=_config(files.resolved_config),
                       run_summary=_json(files.run_summary),
                       train_summary=_json(files.train_summary),
                       infer_summary=_json(files.infer_summary),
                       data_report=_json(files.data_report),
                       results=_results(files.results))
    metrics = _json(files.metrics)
    record.metrics = metrics or None
    record.test_ids, record.test_examples_sha = _test_split(files.split("test"))
    if record.test_ids is None and record.results is not None:
        record.test_ids = list(record.results)
    if record.test_examples_sha is None:
        record.test_examples_sha = record.data_report.get("subsets", {}).get("test", {}).get("examples_sha")
    overrides = _config_list(root / ".hydra" / "overrides.yaml")
    record.overrides = [str(o) for o in overrides]
    record.mlflow_run_id = record.run_summary.get("mlflow_run_id")
    return record
