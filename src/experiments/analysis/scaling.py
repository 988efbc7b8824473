"""Scaling curves: execution accuracy (with 95% Wilson intervals) against training examples and against training
time, one series per setting of whatever else the sweep varied (e.g. epochs). Drawn for sweeps that vary
data_size.train (the `scaling` preset), whose runs share their val/test examples (see data/subsets.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.analysis.document import Plain, TableBlock
from experiments.analysis.run_records import RunRecord

TRAIN_SIZE_KEY = "data_size.train"
# Overrides that say where a job writes or which preset it is, never what it varies.
_NOT_A_SETTING = ("outputs_dir", "hydra.", "experiment", "tracking")


@dataclass(frozen=True)
class ScalingPoint:
    run: str
    series: str  # the other swept settings, e.g. "training.num_epochs=2"
    train_examples: int
    train_seconds: float | None
    execution_accuracy: float
    ci_low: float
    ci_high: float
    n: int


def varied_settings(records: Sequence[RunRecord]) -> list[str]:
    """Per run, the overrides whose values differ between the runs (what a sweep swept), as `key=value ...`."""
    settings = [_settings(r) for r in records]
    keys = sorted({k for s in settings for k in s})
    varied = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    return [" ".join(f"{k}={s[k]}" for k in varied if k in s) for s in settings]


def _settings(record: RunRecord) -> dict[str, str]:
    settings = {}
    for override in record.overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if sep and not key.startswith(_NOT_A_SETTING):
            settings[key] = value
    return settings


def _train_size(record: RunRecord) -> str | None:
    """The run's data_size.train: its override if it had one, else its resolved config's (None = unknown)."""
    setting = _settings(record).get(TRAIN_SIZE_KEY)
    if setting is not None:
        return setting
    size = (record.config.get("data_size") or {}).get("train", "unknown") if record.config else "unknown"
    return None if size == "unknown" else str(size)


def varies_train_size(records: Sequence[RunRecord]) -> bool:
    """More than one training-set size among the runs."""
    return len({_train_size(r) for r in records} - {None}) > 1


def scaling_points(records: Sequence[RunRecord]) -> list[ScalingPoint]:
    """One point per run that trained and was scored; series named by the settings that vary besides size."""
    settings = [_settings(r) for r in records]
    keys = sorted({k for s in settings for k in s})
    varied = [k for k in keys if k != TRAIN_SIZE_KEY and len({s.get(k) for s in settings}) > 1]
    points = []
    for record, setting in zip(records, settings, strict=True):
        ex = record.accuracy("exec_match")
        if ex is None or record.train_examples is None or record.zero_shot:
            continue
        series = " ".join(f"{k}={setting.get(k, '')}" for k in varied) or "all runs"
        points.append(ScalingPoint(run=str(record.run_dir.name), series=series, train_examples=record.train_examples,
                                   train_seconds=record.train_seconds, execution_accuracy=ex[0], ci_low=ex[1],
                                   ci_high=ex[2], n=record.n or 0))
    return sorted(points, key=lambda p: (p.series, p.train_examples))


def scaling_table(points: Sequence[ScalingPoint]) -> TableBlock:
    return TableBlock(("series", "train_examples", "train_seconds", "execution_accuracy", "95% CI", "n", "run"),
                 tuple((p.series, p.train_examples, p.train_seconds, p.execution_accuracy,
                        Plain(f"[{p.ci_low:.3f}, {p.ci_high:.3f}]"), p.n, p.run) for p in points))


def scaling_json(points: Sequence[ScalingPoint]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]


def plot_scaling(points: Sequence[ScalingPoint], path: Path, title: str = "Scaling") -> Path:
    """Two panels (vs training examples, vs training time), error bars = 95% Wilson intervals."""
    from matplotlib.figure import Figure

    from experiments.analysis.plots import save_figure

    fig = Figure(figsize=(11, 4.2))  # no pyplot: the sweep's process keeps its matplotlib backend
    axes = fig.subplots(1, 2, sharey=True)
    for series in dict.fromkeys(p.series for p in points):
        pts = [p for p in points if p.series == series]
        yerr = [[p.execution_accuracy - p.ci_low for p in pts], [p.ci_high - p.execution_accuracy for p in pts]]
        ys = [p.execution_accuracy for p in pts]
        axes[0].errorbar([p.train_examples for p in pts], ys, yerr=yerr, marker="o", capsize=3, label=series)
        timed = [(p.train_seconds, p, e0, e1) for p, e0, e1 in zip(pts, *yerr, strict=True) if p.train_seconds]
        if timed:
            axes[1].errorbar([t[0] for t in timed], [t[1].execution_accuracy for t in timed],
                             yerr=[[t[2] for t in timed], [t[3] for t in timed]], marker="o", capsize=3, label=series)
    sizes = [p.train_examples for p in points]
    if sizes and min(sizes) > 0 and max(sizes) / min(sizes) >= 10:
        axes[0].set_xscale("log")
    axes[0].set_xlabel("training examples")
    axes[1].set_xlabel("training time (s)")
    axes[0].set_ylabel("execution accuracy (95% Wilson CI)")
    n = sorted({p.n for p in points})
    fig.suptitle(f"{title}: test n = {', '.join(map(str, n))}")
    for ax in axes:
        ax.grid(alpha=0.3)
    if len({p.series for p in points}) > 1:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
