"""Stage 3: batched generation of SQL for the prepared test split -> predictions.jsonl.

Prompts are sorted by length and generated in large left-padded batches; each sequence stops at EOS or at a
newline (the SQL is one line). `adapter=null` with no train stage in this run scores the base model zero-shot.
In a data-parallel job every rank generates for its shard of the prompts; rank 0 gathers them in example order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from experiments.config import ExperimentConfig, QuantMode, Stage
from experiments.data.jsonl import write_json, write_jsonl
from experiments.data.prepared import read_prepared
from experiments.decoding.generate import generate_sql, new_tokens_cap
from experiments.distributed import dist_context, gather_to_main, run_on_main, shard, unshard
from experiments.modeling import load_adapter, load_base_model, load_tokenizer, peak_gpu_memory_gib, resolve_device
from experiments.paths import RunFiles

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
    model = load_base_model(cfg.model, cfg.quantization, device)
    if adapter is None:
        log.warning("infer: scoring the base model zero-shot (%s)", "zero_shot=true" if cfg.zero_shot else
                    "adapter=null and no train stage in this run")
    else:
        merge = cfg.inference.merge_adapter and cfg.quantization.mode == QuantMode.none
        model = load_adapter(model, adapter, merge=merge)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    cap = new_tokens_cap(cfg, tokenizer, files.split("train"))
    log.info("infer: %d prompts (%d on this rank of %d), batch %d, at most %d new tokens", len(test),
             len(shard(test, ctx)), ctx.world_size, cfg.inference.batch_size, cap)
    started = time.perf_counter()
    sqls, generated = generate_sql(model, tokenizer, [p.prompt for p in shard(test, ctx)], cfg, device, cap,
                                   progress=ctx.is_main)
    seconds = time.perf_counter() - started
    gathered = gather_to_main(ctx, (sqls, generated, seconds, peak_gpu_memory_gib()))

    def write() -> dict:  # rank 0 writes; the other ranks wait for it, or fail with its error
        ordered = unshard([g[0] for g in gathered])  # checks every rank's share
        total_generated = sum(g[1] for g in gathered)
        slowest = max(g[2] for g in gathered)
        write_jsonl(files.predictions, ({"id": p.example.id, "sql": sql} for p, sql in zip(test, ordered, strict=True)))
        summary = {"adapter": str(adapter) if adapter else None, "examples": len(test), "max_new_tokens": cap,
                   "infer_seconds": slowest, "generated_tokens": total_generated,
                   "generated_tokens_per_s": total_generated / slowest if slowest else None}
        if torch.cuda.is_available():
            summary["infer_peak_memory_gib"] = max(g[3] for g in gathered)
        write_json(files.infer_summary, summary)
        return summary

    return {"predictions": files.predictions, "summary": run_on_main(ctx, write) or {}}
