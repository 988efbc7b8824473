"""What was run, as (label, text) pairs: the one description of a run, at the top of its reports and, as Markdown, in
MLflow's Description field (pipeline.run_description).

From the config and what the stages recorded (data/report.json, train_summary.json, infer_summary.json): what a
stage recorded wins; before it has (when the MLflow run opens), the config says what is planned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.config import ExperimentConfig, Stage
from experiments.runs.files import RunFiles


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def run_facts(cfg: ExperimentConfig, files: RunFiles | None = None) -> list[tuple[str, str]]:
    """preset, model, data and sizes, training, decoding and adapter: as the stages recorded them in `files` (the
    run directory), else as the config plans them (a stage this run does not select and that recorded nothing is
    left out; `files=None`: nothing recorded yet)."""
    data, train, infer = ({}, {}, {}) if files is None else (
        _read(files.data_report), _read(files.train_summary), _read(files.infer_summary))
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
    else:
        asked = " / ".join("all" if n is None else str(n)
                           for n in (cfg.data_size.train, cfg.data_size.val, cfg.data_size.test))
        facts.append(("data", f"{cfg.data.source.value}{f' ({cfg.data.path})' if cfg.data.path else ''}: "
                              f"{asked} train / val / test asked for, max length {cfg.data_size.max_length}"))
    if train:
        best = f", adapter from step {train['best_step']} (best by {train['best_by']})" \
            if train.get("best_step") is not None else ""
        facts.append(("training", f"{train.get('global_steps')} steps of {train.get('effective_batch')} examples, "
                                  f"learning rate {t.learning_rate:g} {t.lr_scheduler}, warmup {t.warmup_ratio:g}, "
                                  f"LoRA r{cfg.lora.r}{best}"))
    elif Stage.train in cfg.stages:
        steps = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_epochs:g} epochs"
        facts.append(("training", f"{steps} of {t.per_device_batch_size} x {t.gradient_accumulation_steps} examples, "
                                  f"learning rate {t.learning_rate:g} {t.lr_scheduler}, warmup {t.warmup_ratio:g}, "
                                  f"LoRA r{cfg.lora.r}"))
    sampling = "greedy" if inf.temperature == 0 else f"temperature {inf.temperature:g}"
    if infer:
        adapter = infer.get("adapter") or "none (zero-shot)"
        guided = f", execution-guided over {inf.execution_guided} candidates" if infer.get("execution_guided") else ""
        facts.append(("decoding", f"{infer.get('constrain', 'none')} constraint{guided}, {sampling}, "
                                  f"at most {infer.get('max_new_tokens')} new tokens; adapter {adapter}"))
    elif Stage.infer in cfg.stages:
        guided = f", execution-guided over {inf.execution_guided} candidates" if inf.execution_guided else ""
        facts.append(("decoding", f"{inf.constrain.value} constraint{guided}, {sampling}, "
                                  f"at most {inf.max_new_tokens} new tokens"))
    return facts


def facts_markdown(facts: list[tuple[str, str]]) -> str:
    """The facts as Markdown: the preset in bold with the model, then one line per other fact."""
    named = dict(facts)
    head = f"**{named.get('preset', '?')}**: {named.get('model', '?')}"
    return "\n".join([head, "", *(f"- **{label}**: {text}" for label, text in facts if label not in ("preset",
                                                                                                      "model"))])
