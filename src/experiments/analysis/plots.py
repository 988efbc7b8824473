"""One run's figures as PNGs: failure categories, accuracy by query shape, the aggregation confusion matrix and
the loss curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so they render on a
headless GPU node, inside a Hydra job or a test, and never open a window.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

CATEGORIES_PNG = "categories.png"
ACCURACY_PNG = "accuracy_breakdown.png"
CONFUSION_PNG = "aggregation_confusion.png"
LOSS_PNG = "loss_curves.png"


def save_figure(figure: Figure, path: Path) -> Path:
    """PNG through a bare Agg canvas, written beside `path` and renamed over it (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plot_categories(analysis: Mapping[str, Any], path: Path) -> Path:
    """Horizontal bars: how many examples ended in each category (correct included), with their share."""
    items = [(name, value["count"], value["share"]) for name, value in analysis["categories"].items()
             if value["count"]]
    figure = Figure(figsize=(7, 0.45 * max(len(items), 1) + 1.2))
    axes = figure.add_subplot()
    names = [name for name, _, _ in items][::-1]
    counts = [count for _, count, _ in items][::-1]
    colours = ["tab:green" if name == "correct" else "tab:red" for name in names]
    bars = axes.barh(names, counts, color=colours)
    for bar, (_, count, share) in zip(bars, items[::-1], strict=True):
        axes.annotate(f" {count} ({share:.1%})", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                      va="center", fontsize=8)
    axes.set_xlabel("examples")
    axes.set_title(f"Outcome by category (n = {analysis['n']})")
    axes.set_xlim(0, max(counts, default=1) * 1.3 or 1)
    return save_figure(figure, path)


def plot_accuracy_breakdown(analysis: Mapping[str, Any], path: Path) -> Path:
    """Execution accuracy by gold aggregation, condition count and operator, with 95% Wilson intervals."""
    panels = (("by gold aggregation", analysis["by_aggregation"]),
              ("by number of conditions", analysis["by_condition_count"]),
              ("by operator", analysis["by_operator"]))
    figure = Figure(figsize=(12, 3.6))
    for k, (title, groups) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), k + 1)
        _accuracy_bars(axes, groups)
        axes.set_title(f"Execution accuracy {title}", fontsize=10)
        if k == 0:
            axes.set_ylabel("execution accuracy (95% CI)")
    figure.tight_layout()
    return save_figure(figure, path)


def _accuracy_bars(axes, groups: Sequence[Mapping[str, Any]]) -> None:
    labels = [str(g["group"]) for g in groups]
    values = [g["value"] for g in groups]
    lower = [max(0.0, g["value"] - g["ci_low"]) if g["n"] else 0.0 for g in groups]
    upper = [max(0.0, g["ci_high"] - g["value"]) if g["n"] else 0.0 for g in groups]
    positions = range(len(groups))
    axes.bar(positions, values, yerr=[lower, upper], capsize=3, color="tab:blue")
    axes.set_xticks(list(positions), [f"{label}\nn={g['n']}" for label, g in zip(labels, groups, strict=True)],
                    fontsize=8)
    axes.set_ylim(0, 1.05)


def plot_confusion(analysis: Mapping[str, Any], path: Path) -> Path:
    """Heatmap of gold aggregation (rows) against predicted aggregation (columns), each cell labelled."""
    confusion = analysis["aggregation_confusion"]
    counts = confusion["counts"]
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, label="examples")
    axes.set_xticks(range(len(confusion["predicted"])), confusion["predicted"])
    axes.set_yticks(range(len(confusion["gold"])), confusion["gold"])
    axes.set_xlabel("predicted aggregation")
    axes.set_ylabel("gold aggregation")
    axes.set_title("Aggregation: gold vs predicted")
    peak = max((c for row in counts for c in row), default=0)
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center", fontsize=9,
                      color="white" if peak and count > peak / 2 else "black")
    return save_figure(figure, path)


def loss_history(trainer_state: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(step, loss) and (step, eval_loss) points from an HF Trainer `trainer_state.json`."""
    state = json.loads(Path(trainer_state).read_text(encoding="utf-8"))
    train, evaluation = [], []
    for entry in state.get("log_history", []):
        step = entry.get("step")
        if step is None:
            continue
        if isinstance(entry.get("loss"), int | float):
            train.append((float(step), float(entry["loss"])))
        if isinstance(entry.get("eval_loss"), int | float):
            evaluation.append((float(step), float(entry["eval_loss"])))
    return train, evaluation


def plot_losses(trainer_state: Path, path: Path) -> Path | None:
    """Training and eval loss against step; None when the state holds no losses."""
    train, evaluation = loss_history(trainer_state)
    if not train and not evaluation:
        return None
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", color="tab:blue")
    if evaluation:
        axes.plot(*zip(*evaluation, strict=True), label="eval loss", color="tab:orange", marker="o")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title("Loss")
    axes.legend()
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def write_plots(analysis: Mapping[str, Any], plots_dir: Path, trainer_state: Path | None = None) -> dict[str, Path]:
    """Every figure of one run into `plots_dir`, keyed by name; the loss plot only when there is a readable
    trainer_state.json with losses (a zero-shot or eval-only run has none)."""
    plots_dir = Path(plots_dir)
    paths = {
        "categories": plot_categories(analysis, plots_dir / CATEGORIES_PNG),
        "accuracy_breakdown": plot_accuracy_breakdown(analysis, plots_dir / ACCURACY_PNG),
        "aggregation_confusion": plot_confusion(analysis, plots_dir / CONFUSION_PNG),
    }
    if trainer_state is not None and Path(trainer_state).is_file():
        try:
            losses = plot_losses(trainer_state, plots_dir / LOSS_PNG)
        except (OSError, ValueError, TypeError) as error:  # a damaged state file must not fail the eval stage
            log.warning("no loss plot: cannot read %s (%s)", trainer_state, error)
            losses = None
        if losses is not None:
            paths["loss_curves"] = losses
    if "loss_curves" not in paths:
        (plots_dir / LOSS_PNG).unlink(missing_ok=True)  # an earlier evaluation's, no longer this run's
    return paths
