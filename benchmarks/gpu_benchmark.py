"""GPU benchmark: training (seed-style vs TRL vs ours), generation (one at a time vs the infer stage) and SQL
execution, on the same model, prompts, LoRA and quantisation; prints a table and writes JSON.

    python benchmarks/gpu_benchmark.py --model /tmp/m7b --out bench.json       # on the GPU (random Mistral-7B)
    python benchmarks/gpu_benchmark.py --dry-run                                # CPU, tiny model: checks the code

Training variants per preset (the preset's batch x accumulation, max_length, NF4, LoRA, gradient checkpointing):
  seed        HF Trainer + DataCollatorForLanguageModeling, every example padded to max_length (the notebooks)
  trl_packed  TRL SFTTrainer with packing (its docs' recommendation to avoid padding)
  ours        the project's train stage with its defaults (length-grouped, fused accumulation, causal attention
              without the right-padding mask)
  ours_compiled ours with torch.compile of the transformer blocks (training.compile=true; `extended` has it on)
  ours_eager  ours without it (training.compile=false)
  ours_lowmem ours with fuse_accumulation=false (the low-memory setting)
  ours_no_gc  ours without gradient checkpointing (its cost)
  ours_bf16   ours with bf16 compute (quantization.compute_dtype=bfloat16; TRL's QLoRA runs in bf16)
  ours_tokens ours with training.tokens_per_step = the seed's padded tokens per step (batch x accumulation x
              max_length) filled with real examples: more examples per step, as TRL's packing does
Useful tokens are loss-bearing tokens; rates are medians over the timed steps, after warm-up steps.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from experiments.batching import PlannedBatchCollator
from experiments.config import Constrain, DataConfig, ExperimentConfig, load_config
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.decoding.generate import generate_sql
from experiments.modeling import (
    add_lora,
    autocast_dtype,
    load_base_model,
    load_tokenizer,
    peak_gpu_memory_gib,
    resolve_device,
)
from experiments.tokenization import IGNORE_INDEX, encode_example
from experiments.train import apply_fast_paths, plan_training, training_arguments

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import measure as measure_evaluation  # noqa: E402

# ---------------------------------------------------------------------------------------------- shared pieces


def preset_config(preset: str, model_dir: str | None, dry_run: bool, extra: list[str]) -> ExperimentConfig:
    overrides = [f"experiment={preset}", "tracking=none"]
    if dry_run:
        overrides += ["model=tiny_mistral", "quantization=none", "device=cpu"]
    elif model_dir:
        overrides.append(f"model.name_or_path={model_dir}")
    return load_config(overrides + extra)


def bench_examples(n: int) -> list[PreparedExample]:
    """The bundled sample's train prompts with their SQL, repeated to n."""
    split = load_source(DataConfig())["train"]
    prepared = [PreparedExample.build(e, split.tables[e.table_id]) for e in split.examples]
    return [prepared[i % len(prepared)] for i in range(n)]


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CountingCollator:
    """Wraps a collator and records (loss-bearing tokens, all tokens) of each micro-batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.counts: list[tuple[int, int]] = []

    def __call__(self, items):
        batch = self.inner(items)
        labels = batch["labels"]
        useful = int((labels[:, 1:] != IGNORE_INDEX).sum())  # shifted: what the loss actually sees
        self.counts.append((useful, int(batch["input_ids"].numel())))
        return batch


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        sync()
        self.ends.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        sync()
        self.ends.append(time.perf_counter())


def summarise(name: str, clock: StepClock, counter: CountingCollator, accumulation: int, warmup: int,
              params: int, gc_on: bool, examples_per_step: float, epoch_examples: int,
              compute_dtype: str) -> dict[str, Any]:
    durations = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]
    rows = []
    for step, seconds in enumerate(durations):
        if step < warmup:
            continue
        batches = counter.counts[step * accumulation:(step + 1) * accumulation]
        if len(batches) < accumulation:
            break
        rows.append((seconds, sum(u for u, _ in batches), sum(t for _, t in batches)))
    useful_rate = statistics.median(u / s for s, u, _ in rows)
    total_rate = statistics.median(t / s for s, _, t in rows)
    step_seconds = statistics.median(s for s, _, _ in rows)
    warmup_seconds = sum(durations[:warmup])  # includes torch.compile's one-off compile where it is on
    flops_per_token = (6 if gc_on else 4) * params
    return {
        "variant": name, "compute_dtype": compute_dtype, "timed_steps": len(rows), "step_seconds": step_seconds,
        "warmup_seconds": warmup_seconds,
        "useful_tokens_per_s": useful_rate, "total_tokens_per_s": total_rate,
        "useful_fraction": sum(u for _, u, _ in rows) / sum(t for _, _, t in rows),
        "tflops_useful": useful_rate * flops_per_token / 1e12, "peak_memory_gib": peak_gpu_memory_gib(),
        "examples_per_step": examples_per_step, "epoch_seconds": epoch_examples / examples_per_step * step_seconds,
    }


def mixed_precision(cfg: ExperimentConfig, device: torch.device) -> dict[str, bool]:
    half = autocast_dtype(cfg.model, cfg.quantization, device)
    return {"fp16": half == "float16", "bf16": half == "bfloat16"}


def lora_model(cfg: ExperimentConfig, device: torch.device, gradient_checkpointing: bool):
    model = load_base_model(cfg.model, cfg.quantization, device)
    return add_lora(model, cfg.lora, cfg.quantization, gradient_checkpointing)


# ------------------------------------------------------------------------------------------ training variants


def train_seed(cfg: ExperimentConfig, device, examples, steps: int, warmup: int, workdir: Path) -> dict:
    """The notebooks: text = prompt + SQL + EOS, padded to max_length, DataCollatorForLanguageModeling."""
    import datasets

    tokenizer = load_tokenizer(cfg.model)
    t, length = cfg.training, cfg.data_size.max_length
    texts = [p.prompt + p.target + tokenizer.eos_token for p in examples]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length)
    dataset = datasets.Dataset.from_dict({"input_ids": encoded["input_ids"],
                                          "attention_mask": encoded["attention_mask"]})
    model = lora_model(cfg, device, gradient_checkpointing=True)
    counter = CountingCollator(DataCollatorForLanguageModeling(tokenizer, mlm=False))
    clock = StepClock()
    args = TrainingArguments(output_dir=str(workdir / "seed"), per_device_train_batch_size=t.per_device_batch_size,
                             gradient_accumulation_steps=t.gradient_accumulation_steps, max_steps=steps,
                             learning_rate=t.learning_rate, logging_steps=steps, save_strategy="no",
                             report_to="none", use_cpu=device.type != "cuda", dataloader_num_workers=0,
                             disable_tqdm=True, **mixed_precision(cfg, device))
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=counter, callbacks=[clock]).train()
    params = model.get_nb_trainable_parameters()[1]
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps
    return summarise("seed", clock, counter, t.gradient_accumulation_steps, warmup, params, True, per_step,
                     cfg.data_size.train or len(examples), cfg.quantization.compute_dtype)


def train_trl(cfg: ExperimentConfig, device, examples, steps: int, warmup: int, workdir: Path) -> dict:
    """TRL's SFTTrainer with packing (best-fit decreasing), prompt + completion, loss on all tokens."""
    import datasets
    from peft import LoraConfig as PeftLoraConfig
    from trl import SFTConfig, SFTTrainer

    # TRL casts QLoRA adapter weights to bf16 (QLoRA paper's recipe), which fp16's gradient scaler cannot
    # unscale: TRL runs with bf16 compute, as its docs do.
    cfg.quantization.compute_dtype = "bfloat16"
    tokenizer = load_tokenizer(cfg.model)
    t = cfg.training
    dataset = datasets.Dataset.from_dict({"prompt": [p.prompt for p in examples],
                                          "completion": [p.target for p in examples]})
    model = load_base_model(cfg.model, cfg.quantization, device)
    peft_config = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(workdir / "trl"), per_device_train_batch_size=t.per_device_batch_size,
                     gradient_accumulation_steps=t.gradient_accumulation_steps, max_steps=steps,
                     learning_rate=t.learning_rate, logging_steps=steps, save_strategy="no", report_to="none",
                     gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
                     packing=True, max_length=cfg.data_size.max_length, completion_only_loss=False,
                     use_cpu=device.type != "cuda", dataloader_num_workers=0, disable_tqdm=True,
                     **mixed_precision(cfg, device))
    clock = StepClock()
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[clock])
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    trainer.train()
    params = trainer.model.get_nb_trainable_parameters()[1]
    per_step = len(examples) / max(1, len(trainer.train_dataset)) * t.per_device_batch_size * \
        t.gradient_accumulation_steps  # packed rows hold several examples
    return summarise("trl_packed", clock, counter, t.gradient_accumulation_steps, warmup, params, True, per_step,
                     cfg.data_size.train or len(examples), cfg.quantization.compute_dtype)


def train_ours(cfg: ExperimentConfig, device, examples, steps: int, warmup: int, workdir: Path,
               name: str = "ours") -> dict:
    """The train stage's own pieces: labels, planned batches, micro-batching, TrainingArguments."""
    tokenizer = load_tokenizer(cfg.model)
    t = cfg.training
    tokenized = [encode_example(tokenizer, p.prompt, p.target, t.loss_on) for p in examples]
    tokenized = [e for e in tokenized if len(e.input_ids) <= cfg.data_size.max_length]
    dataset, per_batch, accumulation = plan_training(tokenized, t, cfg.data_size.max_length)
    model = lora_model(cfg, device, t.gradient_checkpointing)
    apply_fast_paths(model, t)
    args = replace(training_arguments(cfg, workdir / name, device, False, accumulation), max_steps=steps,
                   save_strategy="no", logging_steps=steps, disable_tqdm=True)
    counter = CountingCollator(PlannedBatchCollator(tokenizer.pad_token_id))
    clock = StepClock()
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=counter, callbacks=[clock]).train()
    params = model.get_nb_trainable_parameters()[1]
    return summarise(name, clock, counter, accumulation, warmup, params, t.gradient_checkpointing,
                     per_batch * accumulation, cfg.data_size.train or len(examples), cfg.quantization.compute_dtype)


# ------------------------------------------------------------------------------------- generation, execution


def generation(cfg: ExperimentConfig, device, examples: list[PreparedExample], single: int, new_tokens: int,
               workdir: Path) -> dict:
    """One prompt at a time vs the infer stage's batched path, then the batched path under each decoding: the
    grammar constraint and grammar + execution guidance over 4 beams. Same NF4 model + (unmerged) LoRA adapter.
    Unconstrained rows are held to exactly `new_tokens` new tokens; a grammar must stay free to end a query, so
    constrained rows stop when it is complete or at the same cap (random weights rarely close a string value, so
    most run to the cap): compare wall time and generated tokens together."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from experiments.decoding.generate import Decoding
    from experiments.evaluation import materialize_tables

    tokenizer = load_tokenizer(cfg.model)
    model = load_base_model(cfg.model, cfg.quantization, device)
    lora = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora).eval()
    split = load_source(DataConfig())["train"]
    db = workdir / "tables.sqlite"
    materialize_tables(split.tables.values(), db)
    prompts = [p.prompt for p in examples]
    tables = [split.tables[p.example.table_id] for p in examples]
    batch = cfg.inference.batch_size
    results: dict[str, Any] = {"new_tokens": new_tokens, "batch_size": batch}
    runs = (("one_at_a_time", 1, single, "none", 0), ("ours_batched", batch, len(prompts), "none", 0),
            ("grammar", batch, len(prompts), "grammar", 0), ("grammar_guided_k4", batch, len(prompts), "grammar", 4))
    for name, batch_size, count, constrain, guided in runs:
        cfg.inference.batch_size, cfg.inference.execution_guided = batch_size, guided
        cfg.inference.constrain = Constrain(constrain)
        decoding = Decoding.for_run(cfg.inference, tokenizer, db)
        forced = new_tokens if constrain == "none" else 0
        try:
            generate_sql(model, tokenizer, prompts[:2], cfg, device, new_tokens, progress=False,
                         min_new_tokens=forced, tables=tables[:2], decoding=decoding)  # warm-up
            release()
            sync()
            started = time.perf_counter()
            out, generated = generate_sql(model, tokenizer, prompts[:count], cfg, device, new_tokens, progress=False,
                                          min_new_tokens=forced, tables=tables[:count], decoding=decoding)
            sync()
            seconds = time.perf_counter() - started
        finally:
            decoding.close()
        results[name] = {"prompts": count, "seconds": seconds, "generated_tokens": generated,
                         "tokens_per_s": generated / seconds, "seconds_per_1000_prompts": seconds / count * 1000,
                         "peak_memory_gib": peak_gpu_memory_gib(), **decoding.summary(),
                         "guided_changed": sum(g.candidate != 0 for g in out)}
        print(name, json.dumps(results[name]), flush=True)
    results["speedup"] = results["ours_batched"]["tokens_per_s"] / results["one_at_a_time"]["tokens_per_s"]
    base = results["ours_batched"]["seconds"]
    results["grammar_x_unconstrained_wall"] = results["grammar"]["seconds"] / base
    results["guided_k4_x_unconstrained_wall"] = results["grammar_guided_k4"]["seconds"] / base
    return results


def matmul_peak_tflops(device: torch.device) -> float | None:
    """Measured bf16 dense matmul rate of this chip (the denominator of 'achieved rate')."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        sync()
        rates.append(10 * 2 * 8192**3 / (time.perf_counter() - started) / 1e12)
    return statistics.median(rates)


# ------------------------------------------------------------------------------------------------------ main

VARIANTS = {"seed": train_seed, "trl_packed": train_trl, "ours": train_ours}


def print_table(report: dict) -> None:
    peak = report.get("bf16_matmul_tflops")
    print(f"\ndevice: {report['device']}   measured bf16 matmul: {peak and f'{peak:.0f} TFLOP/s'}")
    head = (f"{'preset':9} {'variant':12} {'useful tok/s':>12} {'total tok/s':>12} {'x seed':>7} {'TFLOP/s':>8} "
            f"{'% bf16':>7} {'peak GiB':>9} {'s/epoch':>9}")
    print(head)
    print("-" * len(head))
    for preset, rows in report["training"].items():
        seed = next((r["useful_tokens_per_s"] for r in rows if r["variant"] == "seed"), None)
        for r in rows:
            if "error" in r:
                print(f"{preset:9} {r['variant']:12} error: {r['error'][:80]}")
                continue
            ratio = f"{r['useful_tokens_per_s'] / seed:.1f}" if seed else "-"
            share = f"{100 * r['tflops_useful'] / peak:.1f}" if peak else "-"
            mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
            print(f"{preset:9} {r['variant']:12} {r['useful_tokens_per_s']:12.0f} {r['total_tokens_per_s']:12.0f} "
                  f"{ratio:>7} {r['tflops_useful']:8.1f} {share:>7} {mem:>9} {r['epoch_seconds']:9.0f}")
    gen = report.get("generation")
    if gen:
        for name in ("one_at_a_time", "ours_batched", "grammar", "grammar_guided_k4"):
            g = gen[name]
            print(f"generation {name:18} {g['tokens_per_s']:9.0f} tok/s  {g['seconds_per_1000_prompts']:8.1f} s "
                  f"per 1,000 prompts ({g['prompts']} timed, {g['generated_tokens']} tokens generated, cap "
                  f"{gen['new_tokens']})")
        print(f"generation speed-up: {gen['speedup']:.0f}x; wall time vs unconstrained batched: grammar "
              f"{gen['grammar_x_unconstrained_wall']:.2f}x, grammar + execution-guided k=4 "
              f"{gen['guided_k4_x_unconstrained_wall']:.2f}x")
    ev = report.get("evaluation")
    if ev:
        print(f"evaluation: {ev['predictions_per_s']:.0f} predictions/s on one core ({ev['predictions']} in "
              f"{ev['seconds']:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (e.g. from make_random_mistral.py)")
    parser.add_argument("--presets", nargs="+", default=["baseline", "extended"])
    parser.add_argument("--variants", nargs="+",
                        default=["seed", "trl_packed", "ours", "ours_tokens", "ours_lowmem"])
    parser.add_argument("--extra-variants-preset", default="baseline", help="preset for ours_no_gc")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gen-prompts", type=int, default=1000)
    parser.add_argument("--gen-single", type=int, default=6)
    parser.add_argument("--gen-tokens", type=int, default=40)
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "generation", "evaluation"])
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model: exercise the code, not a result")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()

    if torch.cuda.device_count() > 1:
        parser.error(f"{torch.cuda.device_count()} GPUs visible: the seed-style and TRL variants would train with "
                     "nn.DataParallel over all of them; run on one, e.g. CUDA_VISIBLE_DEVICES=0")
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "training": {}}
    device = resolve_device("cpu" if args.dry_run else "auto")
    report["device"] = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    report["bf16_matmul_tflops"] = matmul_peak_tflops(device)

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        if "training" not in args.skip:
            for preset in args.presets:
                cfg0 = preset_config(preset, args.model, args.dry_run, [])
                per_step = cfg0.training.per_device_batch_size * cfg0.training.gradient_accumulation_steps
                examples = bench_examples(per_step * (args.steps + 1) * 8)  # token-budget steps hold more
                rows = report["training"].setdefault(preset, [])
                variants = list(args.variants) + (["ours_no_gc"] if preset == args.extra_variants_preset else [])
                for variant in variants:
                    extra = {"ours_compiled": ["training.compile=true"], "ours_eager": ["training.compile=false"],
                             "ours_lowmem": ["training.fuse_accumulation=false"],
                             "ours_no_gc": ["training.gradient_checkpointing=false"],
                             "ours_bf16": ["quantization.compute_dtype=bfloat16"],
                             # the seed's padded-token budget per step, spent on real examples (like TRL packing)
                             "ours_tokens": [f"training.tokens_per_step={per_step * cfg0.data_size.max_length}"],
                             }.get(variant, [])
                    cfg = preset_config(preset, args.model, args.dry_run, extra)
                    run = VARIANTS.get(variant, train_ours)
                    release()
                    print(f"== training {preset} {variant}", flush=True)
                    try:
                        kwargs = {"name": variant} if run is train_ours else {}
                        rows.append(run(cfg, device, examples, args.steps, args.warmup, Path(tmp), **kwargs))
                    except Exception as err:  # one failing variant must not lose the others' figures
                        rows.append({"variant": variant, "error": f"{type(err).__name__}: {err}"})
                    print(json.dumps(rows[-1]), flush=True)
                    save()
        if "generation" not in args.skip:
            release()
            cfg = preset_config(args.presets[0], args.model, args.dry_run, [])
            report["generation"] = generation(cfg, device, bench_examples(args.gen_prompts), args.gen_single,
                                              args.gen_tokens, Path(tmp))
            save()
        if "evaluation" not in args.skip:
            torch.set_num_threads(1)
            report["evaluation"] = measure_evaluation(1000)
            save()
    print_table(report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
