"""GPU benchmark: training (seed-style vs TRL vs ours), generation (one at a time vs the infer stage) and SQL
execution, on the same model, prompts, LoRA and quantisation; prints a table and writes JSON.

    python benchmarks/gpu_benchmark.py --model /tmp/m7b --out bench.json       # on the GPU (random Mistral-7B)
    python benchmarks/gpu_benchmark.py --dry-run                                # CPU, tiny model: checks the code

Training variants per preset (the preset's batch x accumulation, max_length, NF4, LoRA):
  seed        HF Trainer + DataCollatorForLanguageModeling, every example padded to max_length, gradient
              checkpointing (the notebooks)
  trl_packed  TRL SFTTrainer with packing (its docs' recommendation to avoid padding)
  ours        the project's train stage with its defaults: length-grouped, fused accumulation, causal attention
              without the right-padding mask, and training.memory_plan=auto (the fastest plan this GPU's free memory
              fits; compiled when the preset's real number of steps pays for it)
  ours_fast   training.memory_plan=fast: NF4 dequantised once, no gradient checkpointing (compiled by the same rule)
  ours_fast_eager  the fast plan, never compiled
  ours_fast_compiled  the fast plan, always compiled (what compiling gives where the preset's steps do not pay for it)
  ours_cudnn / ours_fast_compiled_cudnn  the same with SDPA free to pick cuDNN attention (the train stage excludes
              it: model.loading.attention_without_cudnn)
  ours_low    training.memory_plan=low: today's notebook-sized plan (NF4 per call, checkpointing, preset's compile)
  ours_compiled / ours_eager  the low plan with training.compile=true / false
  ours_lowmem the low plan with fuse_accumulation=false (the configured micro-batches with accumulation)
  ours_no_gc  the low plan without gradient checkpointing
  ours_bf16   ours with bf16 compute (quantization.compute_dtype=bfloat16; TRL's QLoRA runs in bf16)
  ours_inexact  ours with training.exact_qlora=false and bf16 compute: norms, embeddings and lm_head stay bf16
              (no k-bit float32 upcast), so the residual stream is bf16 (compare with ours_bf16 for the dtype alone)
  ours_liger  ours_inexact + training.kernels=liger: liger-kernel's RMSNorm, SwiGLU, RoPE and fused linear
              cross-entropy (no logits held); needs liger-kernel on the GPU machine (benchmarks/speed_levers.sh)
  ours_liger_eager  ours_liger never compiled (whether torch.compile of the blocks traces through liger's Triton
              kernels is not yet known; this row works either way)
  ours_tokens ours with training.tokens_per_step = the seed's padded tokens per step (batch x accumulation x
              max_length) filled with real examples: more examples per step, as TRL's packing does
The seed-style row is run --seed-repeats times (default 3) in the same call: its JSON keeps each repeat's figures
(`repeats`), the row reports the median useful tok/s with the min and max (`useful_tokens_per_s_min`/`_max`), and
every "x seed" ratio (`x_seed` in the JSON, the table's column) divides by that median.
Each `ours*` row records its plan, the plan's predicted peak beside the measured one, and any out-of-memory re-plan.
Generation (NF4 model + a LoRA adapter with non-zero B, saved and loaded as the infer stage does): one prompt at a
time (seed-style), the batched 4-bit path (inference.memory_plan=low), then the fast plan: dequantised + merged with
a dynamic cache, + a static cache, + compiled decode steps (CUDA graphs; compile time reported apart), with each
fast row's agreement with the 4-bit path's greedy text; grammar-constrained and execution-guided rows use the plan
`auto` picks here (`grammar_serial`: the grammar's masks filled after each step instead of while the model runs,
with its agreement with the `grammar` row, which must be 1).
Useful tokens are loss-bearing tokens; rates are medians over the timed steps, after warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from experiments.config import Constrain, DataConfig, ExperimentConfig, Kernels, MemoryPlan, load_config
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.decoding.generate import generate_sql
from experiments.model.kernels import check_kernels, model_type
from experiments.model.loading import (
    add_lora,
    attention_without_cudnn,
    autocast_dtype,
    load_base_model,
    load_tokenizer,
    peak_gpu_memory_gib,
    resolve_device,
)
from experiments.model.memory_plan import InferencePlan
from experiments.model.tokenization import IGNORE_INDEX, encode_example
from experiments.stages.train import (
    apply_fast_paths,
    kernels_for,
    memory_plan_for,
    numerics,
    plan_micro_batches,
    training_arguments,
)
from experiments.training.batching import PlannedBatchCollator
from experiments.training.replan import ReplanOnOutOfMemory, out_of_memory_advice

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


def median_of_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a variant run several times: the repeat whose useful rate is the median (the lower middle one
    for an even count), with the median rate itself, the spread and every repeat's figures, so one noisy run (a
    seed-style step is ~1 s, and the x-seed ratios all divide by it) neither makes nor hides a speed-up."""
    rates = [r["useful_tokens_per_s"] for r in repeats]
    middle = sorted(repeats, key=lambda r: r["useful_tokens_per_s"])[(len(repeats) - 1) // 2]
    return {**middle, "useful_tokens_per_s": statistics.median(rates), "useful_tokens_per_s_min": min(rates),
            "useful_tokens_per_s_max": max(rates), "repeats": repeats}


def add_seed_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's `x_seed`: its useful rate over the seed-style row's (the median of its repeats)."""
    seed = next((r["useful_tokens_per_s"] for r in rows if r["variant"] == "seed" and "error" not in r), None)
    for r in rows:
        if seed and "error" not in r:
            r["x_seed"] = r["useful_tokens_per_s"] / seed


def mixed_precision(cfg: ExperimentConfig, device: torch.device) -> dict[str, bool]:
    half = autocast_dtype(cfg.model, cfg.quantization, device)
    return {"fp16": half == "float16", "bf16": half == "bfloat16"}


def lora_model(cfg: ExperimentConfig, device: torch.device, gradient_checkpointing: bool, dequantize: bool = False):
    model = load_base_model(cfg.model, cfg.quantization, device)
    return add_lora(model, cfg.lora, cfg.quantization, gradient_checkpointing, dequantize, cfg.training.exact_qlora)


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


class ReplanningTrainer(ReplanOnOutOfMemory, Trainer):
    """The HF Trainer with the train stage's out-of-memory re-plan."""


def preset_steps(cfg: ExperimentConfig, examples_per_step: float) -> int:
    """Optimizer steps of the preset's real run (what the compile decision is made for, not the benchmark's few)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    return math.ceil((cfg.data_size.train or 1000) / max(1.0, examples_per_step) * t.num_epochs)


def train_ours(cfg: ExperimentConfig, device, examples, steps: int, warmup: int, workdir: Path,
               name: str = "ours") -> dict:
    """The train stage's own pieces: labels, planned batches, micro-batching, the memory plan, TrainingArguments,
    the out-of-memory re-plan."""
    tokenizer = load_tokenizer(cfg.model)
    t = cfg.training
    tokenized = [encode_example(tokenizer, p.prompt, p.target, t.loss_on) for p in examples]
    tokenized = [e for e in tokenized if len(e.input_ids) <= cfg.data_size.max_length]
    dataset, per_batch, accumulation = plan_micro_batches(tokenized, t, cfg.data_size.max_length)
    steps_for_compile = {"ours_fast_eager": 1, "ours_liger_eager": 1, "ours_fast_compiled": 10**9,
                         "ours_fast_compiled_cudnn": 10**9}.get(name, preset_steps(cfg, per_batch * accumulation))
    if t.kernels != Kernels.none:  # refused before the model loads, as the train stage does
        check_kernels(t.kernels, model_type(cfg.model), device)
    plan = memory_plan_for(cfg, dataset, accumulation, device, steps=steps_for_compile)
    model = lora_model(cfg, device, plan.gradient_checkpointing, plan.dequantize_once)
    args = replace(training_arguments(cfg, workdir / name, device, False, accumulation), max_steps=steps,
                   save_strategy="no", logging_steps=steps, disable_tqdm=True)
    counter = CountingCollator(PlannedBatchCollator(tokenizer.pad_token_id))
    clock = StepClock()
    with kernels_for(model, t) as kernels:
        apply_fast_paths(model, t, plan.compile)
        trainer = ReplanningTrainer(model=model, args=args, train_dataset=dataset, data_collator=counter,
                                    callbacks=[clock], memory_plan=plan,
                                    advice=out_of_memory_advice(cfg.data_size.max_length, t.per_device_batch_size,
                                                                t.gradient_accumulation_steps))
        with contextlib.nullcontext() if name.endswith("_cudnn") else attention_without_cudnn(device):
            trainer.train()
    params = model.get_nb_trainable_parameters()[1]
    row = summarise(name, clock, counter, accumulation, warmup, params, trainer.memory_plan.gradient_checkpointing,
                    per_batch * accumulation, cfg.data_size.train or len(examples), cfg.quantization.compute_dtype)
    return {**row, "plan": plan.describe(), "plan_mode": plan.mode.value, "predicted_peak_gib": plan.predicted_peak_gib,
            "free_gib_at_plan": plan.free_gib, "replans": trainer.replans, "kernels": kernels,
            "numerics": numerics(t, cfg.quantization)}


# ------------------------------------------------------------------------------------- generation, execution


def save_adapter(cfg: ExperimentConfig, device, workdir: Path) -> Path:
    """A LoRA adapter for the benchmark model with non-zero B (an untrained adapter's B is zero, and merging it would
    change nothing), saved as the train stage saves one."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    model = load_base_model(cfg.model, cfg.quantization, device)
    lora = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    path = workdir / "adapter"
    model.save_pretrained(str(path))
    del model
    release()
    return path


def generation_model(cfg: ExperimentConfig, device, adapter: Path, plan: InferencePlan):
    """The infer stage's model under `plan`."""
    from experiments.model.inference_model import load_inference_base, merges_adapter
    from experiments.model.loading import load_adapter

    model = load_inference_base(cfg, device, plan)
    model = load_adapter(model, adapter, merge=merges_adapter(cfg, plan)).eval()
    model.generation_config.pad_token_id = load_tokenizer(cfg.model).pad_token_id
    return model


# (name, model: "low" | "fast" | "auto", batched, constrain, execution_guided, static cache, compiled). "fast" rows
# decode in batches of inference.batch_size; "auto" rows as the infer stage's default plan does (its batch size too).
GENERATION_RUNS = (("one_at_a_time", "low", False, "none", 0, False, False),
                   ("ours_batched", "low", True, "none", 0, False, False),
                   ("fast_merged", "fast", True, "none", 0, False, False),
                   ("auto", "auto", True, "none", 0, None, None),
                   ("auto_cudnn", "auto", True, "none", 0, None, None),  # SDPA free to pick cuDNN attention
                   ("grammar", "auto", True, "grammar", 0, None, None),
                   ("grammar_serial", "auto", True, "grammar", 0, None, None),  # masks filled after each step
                   ("grammar_guided_k4", "auto", True, "grammar", 4, None, None),
                   ("fast_static", "fast", True, "none", 0, True, False),
                   ("fast_compiled", "fast", True, "none", 0, True, True))
FAST_ROWS = ("fast_merged", "auto", "auto_cudnn", "fast_static", "fast_compiled")


def generation(cfg: ExperimentConfig, device, examples: list[PreparedExample], single: int, new_tokens: int,
               workdir: Path, runs: list[str]) -> dict:
    """One prompt at a time vs the infer stage's batched 4-bit path vs the fast plan (dequantised + merged at the
    configured batch; static cache; compiled) vs the plan `auto` picks (batch size included), then grammar and
    grammar + execution guidance over 4 beams under the plan `auto` picks for them. Same
    NF4 model and adapter throughout. Unconstrained rows are held to exactly `new_tokens` new tokens; a grammar must
    stay free to end a query, so constrained rows stop when it is complete or at the same cap (random weights rarely
    close a string value, so most run to the cap): compare wall time and generated tokens together. The compiled
    row's warm-up (one full batch of the longest prompts, the shapes the timed run has) holds the compile."""
    from experiments.decoding.generate import Decoding
    from experiments.evaluation import materialize_tables
    from experiments.model.inference_model import inference_plan_for
    from experiments.model.tokenization import encode_prompt

    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    adapter = save_adapter(cfg, device, workdir)
    split = load_source(DataConfig())["train"]
    db = workdir / "tables.sqlite"
    materialize_tables(split.tables.values(), db)
    prompts = [p.prompt for p in examples]
    tables = [split.tables[p.example.table_id] for p in examples]
    longest_first = sorted(range(len(prompts)), key=lambda i: -len(encode_prompt(tokenizer, prompts[i])))
    batch = cfg.inference.batch_size
    auto = inference_plan_for(cfg, tokenizer, prompts, new_tokens, device)
    plans = {"low": InferencePlan(False, False, False, MemoryPlan.low, auto.nf4),
             "fast": InferencePlan(True, True, True, MemoryPlan.fast, auto.nf4), "auto": auto}
    cfg.inference.execution_guided = 4
    auto_guided = inference_plan_for(cfg, tokenizer, prompts, new_tokens, device)  # 4 rows a prompt: smaller batches
    results: dict[str, Any] = {"new_tokens": new_tokens, "batch_size": batch, "auto_plan": auto.describe(),
                               "auto_predicted_peak_gib": auto.predicted_peak_gib,
                               "auto_guided_plan": auto_guided.describe()}
    texts: dict[str, list[str]] = {}
    model, loaded = None, None
    for name, which, batched, constrain, guided, static, compiled in GENERATION_RUNS:
        if name not in runs:
            continue
        plan = auto_guided if which == "auto" and guided else plans[which]
        kind = "fast" if plan.dequantize_merge else "low"
        if loaded != kind:
            model = None
            release()
            started = time.perf_counter()
            model = generation_model(cfg, device, adapter, plan)
            loaded = kind
            results[f"{kind}_model_load_seconds"] = time.perf_counter() - started
        static = plan.static_cache if static is None else static
        compiled = plan.compile if compiled is None else compiled
        count = len(prompts) if batched else single
        cfg.inference.batch_size, cfg.inference.execution_guided = (batch if batched else 1), guided
        cfg.inference.constrain = Constrain(constrain)
        decoding = Decoding.for_run(cfg.inference, tokenizer, db)
        decoding.static_cache, decoding.compile = static, compiled
        decoding.batch_size = plan.batch_size if batched else None
        decoding.cudnn_attention = name.endswith("_cudnn")
        decoding.overlap_grammar = not name.endswith("_serial")
        forced = new_tokens if constrain == "none" else 0
        warm = longest_first[:decoding.prompts_per_batch(cfg.inference)] if compiled else [0, 1]
        try:
            release()
            started = time.perf_counter()
            generate_sql(model, tokenizer, [prompts[i] for i in warm], cfg, device, new_tokens, progress=False,
                         min_new_tokens=forced, schemas=[tables[i] for i in warm], decoding=decoding)  # warm-up
            sync()
            warmup_seconds = time.perf_counter() - started
            started = time.perf_counter()
            out, generated = generate_sql(model, tokenizer, prompts[:count], cfg, device, new_tokens, progress=False,
                                          min_new_tokens=forced, schemas=tables[:count], decoding=decoding)
            sync()
            seconds = time.perf_counter() - started
        finally:
            decoding.close()
        texts[name] = [g.sql for g in out]
        results[name] = {"prompts": count, "batch_size": decoding.prompts_per_batch(cfg.inference),
                         "seconds": seconds, "generated_tokens": generated,
                         "tokens_per_s": generated / seconds, "seconds_per_1000_prompts": seconds / count * 1000,
                         "warmup_seconds": warmup_seconds, "plan": plan.describe() if which != "fast" else
                         InferencePlan(True, static, compiled, nf4=auto.nf4, batch_size=batch).describe(),
                         "peak_memory_gib": peak_gpu_memory_gib(), **decoding.summary(),
                         "guided_changed": sum(g.candidate != 0 for g in out)}
        if name in FAST_ROWS and "ours_batched" in texts:
            same = sum(a == b for a, b in zip(texts[name], texts["ours_batched"], strict=True))
            results[name]["agreement_with_4bit"] = same / len(texts[name])
        if name == "grammar_serial" and "grammar" in texts:  # the overlap must not change a token
            same = sum(a == b for a, b in zip(texts[name], texts["grammar"], strict=True))
            results[name]["agreement_with_grammar"] = same / len(texts[name])
        print(name, json.dumps(results[name]), flush=True)
    model = None
    release()
    base = results.get("ours_batched", {}).get("seconds")
    if base and "one_at_a_time" in results:
        results["speedup"] = results["ours_batched"]["tokens_per_s"] / results["one_at_a_time"]["tokens_per_s"]
    for name in (*FAST_ROWS, "grammar", "grammar_serial", "grammar_guided_k4"):
        if base and name in results:
            results[f"{name}_x_4bit_wall"] = results[name]["seconds"] / base
    if "one_at_a_time" in results:
        single_per_prompt = results["one_at_a_time"]["seconds"] / results["one_at_a_time"]["prompts"]
        for name in ("ours_batched", *FAST_ROWS):
            if name in results:
                results[name]["x_one_at_a_time"] = single_per_prompt * results[name]["prompts"] / \
                    results[name]["seconds"]
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
LOW = "training.memory_plan=low"
BF16, INEXACT = "quantization.compute_dtype=bfloat16", "training.exact_qlora=false"


def variant_overrides(variant: str, per_step: int, max_length: int) -> list[str]:
    """The Hydra overrides of a training variant (see the module docstring)."""
    return {"ours_fast": ["training.memory_plan=fast"], "ours_fast_eager": ["training.memory_plan=fast"],
            "ours_fast_compiled": ["training.memory_plan=fast"],
            "ours_fast_compiled_cudnn": ["training.memory_plan=fast"],
            "ours_low": [LOW], "ours_compiled": [LOW, "training.compile=true"],
            "ours_eager": [LOW, "training.compile=false"],
            "ours_lowmem": [LOW, "training.fuse_accumulation=false"],
            "ours_no_gc": [LOW, "training.gradient_checkpointing=false"],
            "ours_bf16": ["quantization.compute_dtype=bfloat16"],
            "ours_inexact": [BF16, INEXACT],
            "ours_liger": [BF16, INEXACT, "training.kernels=liger"],
            "ours_liger_eager": [BF16, INEXACT, "training.kernels=liger"],
            # the seed's padded-token budget per step, spent on real examples (like TRL packing)
            "ours_tokens": [f"training.tokens_per_step={per_step * max_length}"],
            }.get(variant, [])


def print_table(report: dict) -> None:
    peak = report.get("bf16_matmul_tflops")
    print(f"\ndevice: {report['device']}   measured bf16 matmul: {peak and f'{peak:.0f} TFLOP/s'}")
    head = (f"{'preset':9} {'variant':15} {'useful tok/s':>12} {'total tok/s':>12} {'x seed':>7} {'TFLOP/s':>8} "
            f"{'% bf16':>7} {'peak GiB':>9} {'pred GiB':>9} {'s/epoch':>9}")
    print(head)
    print("-" * len(head))
    plans = []
    for preset, rows in report["training"].items():
        for r in rows:
            if "error" in r:
                print(f"{preset:9} {r['variant']:15} error: {r['error'][:80]}")
                continue
            ratio = f"{r['x_seed']:.1f}" if "x_seed" in r else "-"
            share = f"{100 * r['tflops_useful'] / peak:.1f}" if peak else "-"
            mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
            predicted = f"{r['predicted_peak_gib']:.1f}" if r.get("predicted_peak_gib") is not None else "-"
            print(f"{preset:9} {r['variant']:15} {r['useful_tokens_per_s']:12.0f} {r['total_tokens_per_s']:12.0f} "
                  f"{ratio:>7} {r['tflops_useful']:8.1f} {share:>7} {mem:>9} {predicted:>9} {r['epoch_seconds']:9.0f}")
            if "repeats" in r:
                plans.append(f"  {preset} {r['variant']}: median of {len(r['repeats'])} runs, useful tok/s "
                             f"{r['useful_tokens_per_s_min']:.0f}-{r['useful_tokens_per_s_max']:.0f}")
            if "plan" in r:
                replans = f"; re-planned: {' -> '.join(x['to'] for x in r['replans'])}" if r["replans"] else ""
                kernels = f"; kernels: {r['kernels']}" if r.get("kernels", "none") != "none" else ""
                plans.append(f"  {preset} {r['variant']}: {r['plan']} ({r['plan_mode']}); {r['numerics']}{kernels}"
                             f"{replans}")
    if plans:
        print("plans:", *plans, sep="\n")
    gen = report.get("generation")
    if gen:
        print(f"generation: auto picks {gen['auto_plan']} (predicted peak {gen['auto_predicted_peak_gib']} GiB); "
              f"with 4 candidates a prompt: {gen['auto_guided_plan']}")
        for name, *_ in GENERATION_RUNS:
            if name not in gen:
                continue
            g = gen[name]
            agree = f", agrees with 4-bit on {100 * g['agreement_with_4bit']:.1f}%" if "agreement_with_4bit" in g \
                else ""
            ratio = f", {g['x_one_at_a_time']:.0f}x one at a time" if "x_one_at_a_time" in g else ""
            print(f"generation {name:18} {g['tokens_per_s']:9.0f} tok/s  {g['seconds_per_1000_prompts']:8.1f} s "
                  f"per 1,000 prompts ({g['prompts']} timed, batch {g['batch_size']}, {g['generated_tokens']} tokens, "
                  f"cap "
                  f"{gen['new_tokens']}; "
                  f"warm-up {g['warmup_seconds']:.1f} s{ratio}{agree})  [{g['plan']}]")
    ev = report.get("evaluation")
    if ev:
        print(f"evaluation: {ev['predictions_per_s']:.0f} predictions/s on one core ({ev['predictions']} in "
              f"{ev['seconds']:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (e.g. from make_random_mistral.py)")
    parser.add_argument("--presets", nargs="+", default=["baseline", "extended"])
    parser.add_argument("--variants", nargs="+", default=["seed", "trl_packed", "ours", "ours_low", "ours_tokens"])
    parser.add_argument("--extra-variants-preset", default="baseline", help="preset for ours_no_gc")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed-repeats", type=int, default=3,
                        help="runs of the seed-style row; its median useful tok/s is what 'x seed' divides by")
    parser.add_argument("--gen-prompts", type=int, default=1000)
    parser.add_argument("--gen-single", type=int, default=6)
    parser.add_argument("--gen-tokens", type=int, default=40)
    parser.add_argument("--gen-runs", nargs="+", default=[r[0] for r in GENERATION_RUNS],
                        choices=[r[0] for r in GENERATION_RUNS])
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "generation", "evaluation"])
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model: exercise the code, not a result")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()
    if args.seed_repeats < 1:
        parser.error(f"--seed-repeats={args.seed_repeats}: must be at least 1")

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
                    extra = variant_overrides(variant, per_step, cfg0.data_size.max_length)
                    cfg = preset_config(preset, args.model, args.dry_run, extra)
                    run = VARIANTS.get(variant, train_ours)
                    release()
                    print(f"== training {preset} {variant}", flush=True)
                    try:
                        kwargs = {"name": variant} if run is train_ours else {}
                        repeats = []
                        for _ in range(args.seed_repeats if variant == "seed" else 1):
                            release()
                            repeats.append(run(cfg, device, examples, args.steps, args.warmup, Path(tmp), **kwargs))
                        rows.append(median_of_repeats(repeats) if variant == "seed" else repeats[0])
                    except Exception as err:  # one failing variant must not lose the others' figures
                        rows.append({"variant": variant, "error": f"{type(err).__name__}: {err}"})
                    add_seed_ratios(rows)
                    print(json.dumps(rows[-1]), flush=True)
                    save()
        if "generation" not in args.skip:
            release()
            cfg = preset_config(args.presets[0], args.model, args.dry_run, [])
            report["generation"] = generation(cfg, device, bench_examples(args.gen_prompts), args.gen_single,
                                              args.gen_tokens, Path(tmp), args.gen_runs)
            save()
        if "evaluation" not in args.skip:
            torch.set_num_threads(1)
            report["evaluation"] = measure_evaluation(1000)
            save()
    print_table(report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
