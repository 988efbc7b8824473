"""Stage 3: batched generation of SQL for the prepared test split -> predictions.jsonl.

Prompts are sorted by length and generated in large left-padded batches; each sequence stops at EOS or at a
newline (the SQL is one line). `adapter=null` with no train stage in this run scores the base model zero-shot.
In a data-parallel job every rank generates for its shard of the prompts; rank 0 gathers them in example order.
To MLflow: generation's speed and costs (infer/..., time/...), counts as params, the memory plan as tags, and
predictions.jsonl.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from experiments.config import ExperimentConfig, Stage
from experiments.data.prepared import prompt_schemas, read_databases, read_prepared, read_tables
from experiments.decoding.generate import Decoding, generate_sql, new_tokens_cap
from experiments.fileio import write_json, write_jsonl
from experiments.model.inference_model import inference_plan_for, load_inference_base, merges_adapter
from experiments.model.loading import load_adapter, load_tokenizer, model_source, peak_gpu_memory_gib, resolve_device
from experiments.runs.distributed import dist_context, gather_to_main, run_on_main, shard, unshard
from experiments.runs.files import RunFiles
from experiments.stages.contract import Artifact, StageResult
from experiments.tracking.metric_names import infer_summary_logged

log = logging.getLogger(__name__)


def resolve_adapter(cfg: ExperimentConfig, files: RunFiles) -> Path | None:
    """None (zero-shot) with zero_shot=true; else adapter=PATH, else this run's adapter when this run trained one
    or has one, else None."""
    if cfg.zero_shot:
        return None
    if cfg.adapter:
        return Path(cfg.adapter).expanduser()
    if Stage.train in cfg.stages or files.adapter_dir.joinpath("adapter_config.json").is_file():
        return files.adapter_dir
    return None


def run_infer(cfg: ExperimentConfig, run_dir: Path) -> dict:
    files = RunFiles(run_dir)
    ctx = dist_context()
    device = resolve_device(cfg.device, ctx.local_rank)
    test = read_prepared(files.split("test"))
    adapter = resolve_adapter(cfg, files)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    source = model_source(cfg.model)
    cap = new_tokens_cap(cfg, tokenizer, files.split("train"))
    plan = inference_plan_for(cfg, tokenizer, [p.prompt for p in shard(test, ctx)], cap, device)
    inf = cfg.inference
    multi_table = cfg.data.source.multi_table
    # checks the grammar before the model loads
    decoding = Decoding.for_run(inf, tokenizer, files.tables_sqlite, plan, multi_table=multi_table)
    mine = shard(test, ctx)
    try:
        model = load_inference_base(cfg, device, plan)
        if adapter is None:
            log.warning("infer: scoring the base model zero-shot (%s)", "zero_shot=true" if cfg.zero_shot else
                        "adapter=null and no train stage in this run")
        else:
            model = load_adapter(model, adapter, merge=merges_adapter(cfg, plan))
        model.eval()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        # each prompt's WikiSQL table (grammar, execution guidance) or database (execution guidance)
        tables = None if multi_table else read_tables(files.tables_jsonl)
        databases = read_databases(files.databases_jsonl) if multi_table else None
        log.info("infer: %d prompts (%d on this rank of %d), batches of %d, at most %d new tokens, constrain=%s%s",
                 len(test), len(mine), ctx.world_size, decoding.prompts_per_batch(inf), cap, inf.constrain.value,
                 f", execution-guided over {inf.execution_guided} candidates" if inf.execution_guided else "")
        started = time.perf_counter()
        generated, tokens = generate_sql(model, tokenizer, [p.prompt for p in mine], cfg, device, cap,
                                         progress=ctx.is_main,
                                         schemas=prompt_schemas(mine, tables, databases),
                                         decoding=decoding)
    finally:
        decoding.close()
    seconds = time.perf_counter() - started
    gathered = gather_to_main(ctx, (generated, tokens, seconds, peak_gpu_memory_gib(), decoding.summary()))

    def write() -> dict:  # rank 0 writes; the other ranks wait for it, or fail with its error
        ordered = unshard([g[0] for g in gathered])  # checks every rank's share
        total_generated = sum(g[1] for g in gathered)
        slowest = max(g[2] for g in gathered)
        write_jsonl(files.predictions, (g.to_json(p.example.id) for p, g in zip(test, ordered, strict=True)))
        summary = {"adapter": str(adapter) if adapter else None, "model_source": source, "examples": len(test),
                   "max_new_tokens": cap,
                   "batch_size": decoding.prompts_per_batch(inf),
                   "constrain": inf.constrain.value, "execution_guided": inf.execution_guided,
                   "memory_plan": plan.describe(), "memory_plan_predicted_peak_gib": plan.predicted_peak_gib,
                   "infer_seconds": slowest, "generated_tokens": total_generated,
                   "generated_tokens_per_s": total_generated / slowest if slowest else None,
                   **merge_decoding_summaries([g[4] for g in gathered])}
        if inf.execution_guided:
            summary["guided_changed"] = sum(g.candidate != 0 for g in ordered)
        if torch.cuda.is_available():
            summary["infer_peak_memory_gib"] = max(g[3] for g in gathered)
        write_json(files.infer_summary, summary)
        return summary

    return {"predictions": files.predictions, "summary": run_on_main(ctx, write) or {},
            "tags": {**plan.as_tags("memory_plan.infer"), "model.source": source}}


def run(cfg: ExperimentConfig, files: RunFiles, tracker=None) -> StageResult:
    """The stage (stages/contract.py): predictions.jsonl; the summary's numbers, the inference memory plan."""
    result = run_infer(cfg, files.root)
    metrics, counts = infer_summary_logged(result["summary"])
    return StageResult(summary=result["summary"], metrics=metrics, params=counts, tags=result.get("tags", {}),
                       artifacts=(Artifact(files.predictions),))


def merge_decoding_summaries(summaries: list[dict]) -> dict:
    """The ranks' decoding costs as one (seconds and counts summed), with the masking cost per generated token."""
    merged: dict = {}
    for summary in summaries:
        for key, value in summary.items():
            merged[key] = merged.get(key, 0) + value
    if merged.get("grammar_masked_tokens"):
        merged["grammar_mask_seconds_per_token"] = merged["grammar_mask_seconds"] / merged["grammar_masked_tokens"]
    return merged
