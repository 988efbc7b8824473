"""What constrained decoding costs against free decoding, on one finished run's test prompts and adapter: free, the
grammar alone and the grammar + scope check (multi-table data), each with the grammar's masks filled after every
step ("serial") and while the model runs (the default, decoding.constraint's greedy overlap). Same model, adapter,
prompts, batches and token cap as the run's infer stage; grammars compiled before timing (their compile time is
reported apart); the variants interleaved, `--repeats` times, medians compared, in all and per decode step (a batch
runs until its longest row ends: a row that loops to the token cap under one variant, not another, lengthens the
whole batch's decoding). Also checks that each overlapped variant writes exactly its serial twin's SQL. Prints a
Markdown table and writes JSON.

    python benchmarks/constrained_overhead.py --run /tmp/mt_real/longer --out F.json OVERRIDES
      (OVERRIDES: the run's own, e.g. experiment=spider_baseline model=smollm2_135m data=spider_sample
       device=cuda quantization=none model.gguf_file=/tmp/smol.gguf)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from experiments.config import Constrain, load_config
from experiments.data.prepared import prompt_schemas, read_databases, read_prepared, read_tables
from experiments.decoding.generate import Decoding, generate_sql, new_tokens_cap
from experiments.model.inference_model import inference_plan_for, load_inference_base, merges_adapter
from experiments.model.loading import load_adapter, load_tokenizer, resolve_device
from experiments.runs.files import RunFiles

# name: (constrain, check_scope, overlap)
VARIANTS = {"free": (Constrain.none, False, True),
            "grammar_serial": (Constrain.grammar, False, False),
            "grammar": (Constrain.grammar, False, True),
            "grammar_scope_serial": (Constrain.grammar, True, False),
            "grammar_scope": (Constrain.grammar, True, True)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run directory (prepared splits, adapter)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.overrides)
    files = RunFiles(args.run)
    test = read_prepared(files.split("test"))
    multi_table = cfg.data.source.multi_table
    schemas = prompt_schemas(test, None if multi_table else read_tables(files.tables_jsonl),
                             read_databases(files.databases_jsonl) if multi_table else None)
    prompts = [p.prompt for p in test]
    device = resolve_device(cfg.device, 0)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    cap = new_tokens_cap(cfg, tokenizer, files.split("train"))
    plan = inference_plan_for(cfg, tokenizer, prompts, cap, device)
    model = load_inference_base(cfg, device, plan)
    if files.adapter_dir.is_dir():
        model = load_adapter(model, files.adapter_dir, merge=merges_adapter(cfg, plan))
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    results: dict = {"prompts": len(prompts), "max_new_tokens": cap, "plan": plan.describe(),
                     "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "adapter": str(files.adapter_dir) if files.adapter_dir.is_dir() else None, "variants": {}}
    generate_sql(model, tokenizer, prompts[:8], cfg, device, cap, progress=False)  # warm-up: first kernels
    texts: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for name in args.variants:
            constrain, check_scope, overlap = VARIANTS[name]
            cfg.inference.constrain, cfg.inference.check_scope = constrain, check_scope
            decoding = Decoding.for_run(cfg.inference, tokenizer, files.tables_sqlite, plan, multi_table=multi_table)
            decoding.overlap_grammar = overlap
            if decoding.constraint is not None:
                decoding.constraint.prepare(schemas)
            sync(device)
            started = time.perf_counter()
            out, tokens = generate_sql(model, tokenizer, prompts, cfg, device, cap, progress=False, schemas=schemas,
                                       decoding=decoding)
            sync(device)
            seconds = time.perf_counter() - started
            decoding.close()
            row = results["variants"].setdefault(name, {"seconds": [], "generated_tokens": tokens})
            row["seconds"].append(seconds)
            row.update(decoding.summary())
            row.setdefault("step_ms", []).append(seconds / max(decoding.decode_steps, 1) * 1000)
            texts[name] = [g.sql for g in out]
            print(f"repeat {repeat} {name}: {seconds:.2f} s, {tokens} tokens, {decoding.decode_steps} decode steps",
                  flush=True)
    free = results["variants"].get("free")
    free_median = statistics.median(free["seconds"]) if free else None
    print(f"| decoding | masks filled | s (median of {args.repeats}; min-max) | x free | generated tokens "
          "| decode steps | ms per step (median) | x free per step | grammar compile s | mask ms/token "
          "| same SQL as serial |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    free_step = statistics.median(free["step_ms"]) if free else None
    for name, row in results["variants"].items():
        row["median_seconds"] = statistics.median(row["seconds"])
        row["x_free"] = row["median_seconds"] / free_median if free_median else None
        row["median_step_ms"] = statistics.median(row["step_ms"])
        row["x_free_per_step"] = row["median_step_ms"] / free_step if free_step else None
        twin = name + "_serial"
        if twin in texts:
            row["same_sql_as_serial"] = sum(a == b for a, b in zip(texts[name], texts[twin], strict=True)) / len(
                texts[name])
        masked = row.get("grammar_masked_tokens")
        per_token = row["grammar_mask_seconds"] / masked * 1000 if masked else None
        filled = "-" if name == "free" else ("after each step" if name.endswith("_serial") else "while the model runs")
        print(f"| {name} | {filled} | {row['median_seconds']:.2f} ({min(row['seconds']):.2f}-{max(row['seconds']):.2f})"
              f" | {row['x_free']:.2f} | {row['generated_tokens']} | {row.get('decode_steps', '-')} | "
              f"{row['median_step_ms']:.1f} | {row['x_free_per_step']:.2f} | "
              f"{row.get('grammar_compile_seconds', 0):.2f} | "
              f"{'-' if per_token is None else f'{per_token:.3f}'} | {row.get('same_sql_as_serial', '-')} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
