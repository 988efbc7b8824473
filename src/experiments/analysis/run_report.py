"""The eval stage's reading of one run: analysis.json, plots/*.png, the extended report.md and report.html.

Everything is computed from the files the run directory already holds (results rows, prepared test split,
tables, trainer_state.json when training ran), so an earlier run can be re-analysed without scoring it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.breakdown import analyze
from experiments.analysis.document import write_html, write_markdown
from experiments.analysis.eval_report import TITLE, report_document
from experiments.analysis.plots import write_plots
from experiments.config import ExperimentConfig
from experiments.data.jsonl import iter_jsonl, write_json
from experiments.data.records import Example, Table
from experiments.runs.files import RunFiles


def read_results(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(Path(path))]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def run_facts(cfg: ExperimentConfig, files: RunFiles) -> list[tuple[str, str]]:
    """What was run, for the top of the reports: preset, model, adapter, data and sizes, training, decoding; from
    the config and what the stages recorded (train_summary.json, infer_summary.json, data/report.json)."""
    data, train, infer = _read(files.data_report), _read(files.train_summary), _read(files.infer_summary)
    m, t, inf = cfg.model, cfg.training, cfg.inference
    quant = cfg.quantization.mode.value
    weights = "not quantised" if quant == "none" else f"{quant}, {cfg.quantization.compute_dtype} compute"
    # The weights' source as the stage that loaded them recorded it: an offline copy or a GGUF is not the Hub's model
    source = infer.get("model_source") or train.get("model_source")
    origin = f" (weights: {source})" if source and source not in ("hub", "local", "config") else ""
    facts = [("preset", cfg.preset),
             ("model", f"{m.name_or_path or m.name + ' (config-initialised)'}{origin}, {weights}")]
    sizes = data.get("subsets", {})
    if sizes:
        drawn = " / ".join(str(sizes.get(s, {}).get("drawn", "?")) for s in ("train", "val", "test"))
        facts.append(("data", f"{data.get('source')}{' (' + str(data['path']) + ')' if data.get('path') else ''}: "
                              f"{drawn} train / val / test, max length {cfg.data_size.max_length}"))
    if train:
        best = f", adapter from step {train['best_step']} (best by {train['best_by']})" \
            if train.get("best_step") is not None else ""
        facts.append(("training", f"{train.get('global_steps')} steps of {train.get('effective_batch')} examples, "
                                  f"learning rate {t.learning_rate:g} {t.lr_scheduler}, warmup {t.warmup_ratio:g}, "
                                  f"LoRA r{cfg.lora.r}{best}"))
    if infer:
        adapter = infer.get("adapter") or "none (zero-shot)"
        guided = f", execution-guided over {inf.execution_guided} candidates" if infer.get("execution_guided") else ""
        facts.append(("decoding", f"{infer.get('constrain', 'none')} constraint{guided}, "
                                  f"{'greedy' if inf.temperature == 0 else f'temperature {inf.temperature:g}'}, "
                                  f"at most {infer.get('max_new_tokens')} new tokens; adapter {adapter}"))
    return facts


def write_run_analysis(run_dir: Path, metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                       examples: Iterable[Example], tables: Mapping[str, Table],
                       trainer_state: Path | None = None, facts: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Analyse one run's results and write analysis.json, plots/, report.md and report.html into `run_dir` (the two
    reports from one document); returns the analysis and the paths written. Not metrics.json: the eval stage writes
    it after these."""
    files = RunFiles(run_dir)
    analysis = analyze(results, examples, tables)
    write_json(files.analysis_json, analysis)
    plots = write_plots(analysis, files.plots_dir, trainer_state)
    doc = report_document(metrics, results, analysis, plots, facts, title=f"{TITLE}: {files.root.name}")
    write_markdown(doc, files.report_md)
    write_html(doc, files.report_html)
    return {"analysis": analysis, "analysis_json": files.analysis_json, "plots": plots,
            "report_md": files.report_md, "report_html": files.report_html}
