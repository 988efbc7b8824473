"""Which arrangement of the same maths the GPU's memory affords: the training plan and the inference plan.

A LoRA step on a 4-bit 7B model is bound by launch overhead, not FLOPs (README "Speed"), so the fastest
arrangements spend memory: the NF4 weights dequantised once to the compute dtype (bit-identical to dequantising per
call, dequantize.py; +2 bytes per quantised weight), no gradient checkpointing (no recomputed forward; activations
of every block kept), compiled blocks (when the run is long enough to win back the compile). Measured on an H200 on
the train path (16 examples of ~130 tokens per step): NF4 per call with checkpointing 0.82 s (cuDNN attention);
dequantised once without checkpointing 0.365 s eager, 0.236 s compiled (SDPA without cuDNN attention).

**The peak-memory estimate** (bytes, what `torch.cuda.max_memory_allocated` reports) for a training step of T padded
tokens is weights + LoRA state + activations:

- weights: quantised linear weights at NF4_BYTES_PER_WEIGHT (4 bits + the 8-bit absmax per 64 weights + its float32
  absmax per 256 blocks with double quantisation; 4 bits + a float32 absmax per 64 without), the rest (embeddings,
  lm_head, norms) in float32, as PEFT's k-bit preparation casts them (with training.exact_qlora=false they stay in
  the weights' dtype); dequantised once adds compute-dtype bytes per quantised weight (the 4-bit copy is kept for
  the fallback). Unquantised models: every weight in the weights' dtype.
- LoRA state: 16 bytes per LoRA parameter (float32 weight, gradient, two Adam moments).
- activations per token, without checkpointing: layers x ACTIVATION_BYTES_PER_WIDTH x (hidden + intermediate), plus
  LOGITS_BYTES_PER_VOCAB x vocab for the logits, their float32 upcast and gradient; with checkpointing: each block's
  float32 input (CHECKPOINT_BYTES_PER_HIDDEN x hidden per layer; the weights' bytes with exact_qlora=false), one
  block's activations while it is recomputed, and the logits. With liger's fused linear cross-entropy
  (training.kernels=liger) there are no logits: FLCE_BYTES_PER_HIDDEN x hidden per token instead.

Not measured yet (README "Speed"): with exact_qlora=false the residual stream is half precision, so the activations
are smaller than ACTIVATION_BYTES_PER_WIDTH (calibrated on the float32 stream) says: the estimate stays an upper
bound there until it is calibrated. FLCE_BYTES_PER_HIDDEN is read off liger's code, not measured: the gradient of the
hidden states (compute dtype), and a chunk of logits of about 2 x hidden elements per token (liger sizes its chunks
as tokens x hidden / vocab, rounded up to a power of two) in the compute dtype and its float32 gradient.

ACTIVATION_BYTES_PER_WIDTH is calibrated on the H200 measurement of Mistral-7B NF4 without checkpointing: 21 GiB at
16 x 100 tokens (the constants give 21.0). Checked against the README's other peaks: no checkpointing 26.7 GiB and
checkpointing 6.9 GiB (the estimate gives 26.7 and 7.4 at the ~2,170-token longest micro-batch those runs had:
checkpointing is over-estimated by ~8%, on the safe side). The GPU benchmark prints each plan's prediction beside
its measured peak.

**`auto`** (training): on a GPU, the first of these that fits the free memory with margin (predicted x
(1 + MARGIN_FRACTION) + MARGIN_BYTES), for the longest micro-batch the run has planned, fastest first:
dequantised once without checkpointing; dequantised once with; per call without; per call with (the smallest; taken
when nothing fits, and the out-of-memory re-plan splits micro-batches from there). Models that are not NF4 have only
the checkpointing choice. Compiled blocks when the planned steps x the seconds compiling saves per step exceed
COMPILE_SECONDS. On the CPU, `auto` is `low`. `low` is the configured switches (training.gradient_checkpointing,
training.compile, per-call dequantisation): the notebook-sized plan. `fast` is dequantised once without
checkpointing, compiled by the same rule. What `auto` picks for Mistral-7B NF4 (benchmarks/memory_plans.py prints
it for any GPU size): 141 GB (H200) and 80 GB: dequantised once without checkpointing for `baseline` (16 x 256
tokens at most); for `extended` (16 x 512) the same on 141 GB, with checkpointing on 80 GB; 24 GB and 16 GB: per
call with checkpointing, today's plan.

**Inference**: the peak is the weights (dequantised: compute-dtype bytes per weight, the adapter merged in, the 4-bit
copy dropped; 4-bit: NF4 bytes plus the unmerged float32 adapter), the KV cache (rows x (prompt + new tokens) x
layers x 2 x KV width in the compute dtype) and the prefill's activations. `auto` dequantises and merges when that
fits, in batches as large as fit (up to inference.max_batch_size), and uses a static cache with compiled decoding
only when the decode steps pay for the compile; `fast` does all of it; `low` is the 4-bit path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from experiments.config import LoraConfig, MemoryPlan, ModelConfig, QuantizationConfig, QuantMode

GIB = 2**30
NF4_BYTES_PER_WEIGHT = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}  # by double_quant
INT8_BYTES_PER_WEIGHT = 1.0 + 4 / 4096  # int8 weights + a float32 scale per row (about)
LORA_STATE_BYTES_PER_PARAM = 16
ACTIVATION_BYTES_PER_WIDTH = 17.6
CHECKPOINT_BYTES_PER_HIDDEN = 4
LOGITS_BYTES_PER_VOCAB = 12
FLCE_BYTES_PER_HIDDEN = 2 + 2 * (2 + 4)  # see the module docstring: not measured
PREFILL_BYTES_PER_WIDTH = 6  # inference prefill: a few compute-dtype (hidden + intermediate) tensors alive at once
MARGIN_FRACTION = 0.10
MARGIN_BYTES = 1.5 * GIB
# torch.compile of the blocks: 78-105 s for Mistral-7B dequantised once on an H200 (~80 s per call with
# checkpointing); seconds it saves per step of 16 x ~130 tokens, by (dequantised once, checkpointing): measured where
# marked (benchmarks/gpu_benchmark.py, flash attention), else estimated from the eager step times.
COMPILE_SECONDS = 80.0
COMPILE_SAVES_SECONDS = {(True, False): 0.13,  # measured: 0.365 s eager (baseline) -> 0.236 s compiled (extended)
                         (False, True): 0.28,  # measured on extended: 0.84 -> 0.56 s
                         (True, True): 0.16, (False, False): 0.20}
# Compiled static-cache decoding (CUDA graphs): a one-off compile, then cheaper decode steps. Measured for
# Mistral-7B on an H200 (1,000 prompts x 40 tokens, batch 512, dequantised + merged): compile 98 s, then 10.4 s
# against 10.8 s eager (80 decode steps): ~5 ms a step, so compiling pays only for tens of thousands of steps.
DECODE_COMPILE_SECONDS = 100.0
DECODE_STEP_SAVES_SECONDS = 0.005


@dataclass(frozen=True)
class ModelFacts:
    """What the plans need to know about a model; from its config alone (no weights are loaded)."""

    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    kv_width: int  # num_key_value_heads x head_dim
    quantized_params: int  # the linear layers' weights bitsandbytes quantises (all but lm_head)
    other_params: int  # embeddings, lm_head, norms (and everything when not quantised)
    lora_params: int  # trainable: the adapters and any lora.modules_to_save
    quantization: QuantMode
    double_quant: bool
    compute_bytes: int  # bytes per element of the compute dtype
    weight_bytes: int  # bytes per element of unquantised weights
    # How the train stage runs this model (training.exact_qlora, training.kernels=liger): set by the stage, not read
    # from the model's config.
    exact_qlora: bool = True
    fused_loss: bool = False  # liger's fused linear cross-entropy: no logits held

    @property
    def nf4(self) -> bool:
        return self.quantization == QuantMode.nf4


@dataclass(frozen=True)
class TrainPlan:
    """How a training step is arranged; every plan computes the same loss and gradients."""

    dequantize_once: bool  # NF4 weights dequantised once to the compute dtype (else per call)
    gradient_checkpointing: bool
    compile: bool  # torch.compile of the transformer blocks
    split: int = 1  # each planned micro-batch runs as this many pieces (the out-of-memory re-plan raises it)
    nf4: bool = True  # the model is NF4 (says how the weights are used when not dequantised once)
    mode: MemoryPlan = MemoryPlan.low
    predicted_peak_gib: float | None = None
    free_gib: float | None = None
    reason: str = ""

    def describe(self) -> str:
        weights = "NF4 dequantised per call" if self.nf4 else "weights as loaded"
        parts = ["NF4 dequantised once" if self.dequantize_once else weights,
                 "gradient checkpointing" if self.gradient_checkpointing else "no gradient checkpointing",
                 "compiled blocks" if self.compile else "eager"]
        if self.split > 1:
            parts.append(f"micro-batches in {self.split} pieces")
        return ", ".join(parts)

    def as_tags(self, prefix: str) -> dict[str, str]:
        return plan_tags(prefix, self.describe(), self.mode, self.predicted_peak_gib)


def plan_tags(prefix: str, described: str, mode: MemoryPlan, predicted_peak_gib: float | None) -> dict[str, str]:
    """A plan as three MLflow tags (`prefix`: what it does, `prefix.mode`, `prefix.predicted_peak_gib`); its
    switches one by one would crowd the run page's tags (they are in the stage's summary)."""
    tags = {prefix: described, f"{prefix}.mode": mode.value}
    if predicted_peak_gib is not None:
        tags[f"{prefix}.predicted_peak_gib"] = f"{predicted_peak_gib:.2f}"
    return tags


@dataclass(frozen=True)
class InferencePlan:
    """How the infer stage decodes; same weights and greedy choices up to rounding."""

    dequantize_merge: bool  # NF4 dequantised once with the adapter merged in (else 4-bit, adapter unmerged)
    static_cache: bool
    compile: bool  # compiled decode steps (transformers' compile_config; CUDA graphs)
    mode: MemoryPlan = MemoryPlan.low
    nf4: bool = True  # the model is NF4 (a plain model is merged, not dequantised)
    predicted_peak_gib: float | None = None
    free_gib: float | None = None
    reason: str = ""
    batch_size: int | None = None  # prompts per batch (None: inference.batch_size)

    def describe(self) -> str:
        merged = "NF4 dequantised + adapter merged" if self.nf4 else "adapter merged"
        parts = [merged if self.dequantize_merge else "weights as loaded, adapter unmerged"]
        if self.batch_size is not None:
            parts.append(f"batches of {self.batch_size}")
        parts += ["static KV cache" if self.static_cache else "dynamic KV cache",
                  "compiled decoding" if self.compile else "eager decoding"]
        return ", ".join(parts)

    def as_tags(self, prefix: str) -> dict[str, str]:
        return plan_tags(prefix, self.describe(), self.mode, self.predicted_peak_gib)


# ------------------------------------------------------------------------------------------------- estimates


def _weights_bytes(facts: ModelFacts, dequantize_once: bool, dense_other_bytes: int, keep_4bit: bool) -> float:
    if facts.quantization == QuantMode.none:
        return (facts.quantized_params + facts.other_params) * facts.weight_bytes
    per_weight = NF4_BYTES_PER_WEIGHT[facts.double_quant] if facts.nf4 else INT8_BYTES_PER_WEIGHT
    quantized = facts.quantized_params * per_weight if keep_4bit or not dequantize_once else 0
    dense = facts.quantized_params * facts.compute_bytes if dequantize_once else 0
    return quantized + dense + facts.other_params * dense_other_bytes


def _upcast(facts: ModelFacts) -> bool:
    """Whether training holds the weights that are not quantised in float32 (k-bit preparation, exact_qlora)."""
    return facts.quantization != QuantMode.none and facts.exact_qlora


def train_activation_bytes(facts: ModelFacts, tokens: int, gradient_checkpointing: bool) -> float:
    """Activation memory of a training step over `tokens` padded tokens (see the module docstring)."""
    block = ACTIVATION_BYTES_PER_WIDTH * (facts.hidden_size + facts.intermediate_size)
    if facts.fused_loss:  # liger's FLCE: chunks of logits, never all of them
        logits = FLCE_BYTES_PER_HIDDEN * facts.hidden_size
    else:
        logits = LOGITS_BYTES_PER_VOCAB * facts.vocab_size
    if gradient_checkpointing:
        half_stream = facts.quantization != QuantMode.none and not facts.exact_qlora
        stream = facts.weight_bytes if half_stream else CHECKPOINT_BYTES_PER_HIDDEN  # each block's saved input
        per_token = facts.layers * stream * facts.hidden_size + block + logits
    else:
        per_token = facts.layers * block + logits
    return tokens * per_token


def train_peak_bytes(facts: ModelFacts, tokens: int, dequantize_once: bool, gradient_checkpointing: bool) -> float:
    """Predicted peak allocated memory of a training step over `tokens` padded tokens."""
    other = 4 if _upcast(facts) else facts.weight_bytes  # k-bit preparation upcasts to float32
    return (_weights_bytes(facts, dequantize_once, other, keep_4bit=True)
            + facts.lora_params * LORA_STATE_BYTES_PER_PARAM
            + train_activation_bytes(facts, tokens, gradient_checkpointing))


def infer_peak_bytes(facts: ModelFacts, rows: int, prompt_tokens: int, new_tokens: int,
                     dequantize_merge: bool) -> float:
    """Predicted peak allocated memory of generating for `rows` sequences of `prompt_tokens` + `new_tokens`."""
    weights = _weights_bytes(facts, dequantize_merge, facts.compute_bytes, keep_4bit=False)
    if not dequantize_merge:
        weights += facts.lora_params * 4  # the unmerged float32 adapter
    kv_cache = rows * (prompt_tokens + new_tokens) * facts.layers * 2 * facts.kv_width * facts.compute_bytes
    prefill = rows * prompt_tokens * PREFILL_BYTES_PER_WIDTH * (facts.hidden_size + facts.intermediate_size)
    return weights + kv_cache + prefill


def fits(peak_bytes: float, free_bytes: float) -> bool:
    """Whether a predicted peak fits the free memory with the margin (fragmentation, estimate error)."""
    return peak_bytes * (1 + MARGIN_FRACTION) + MARGIN_BYTES <= free_bytes


def compile_pays(dequantize_once: bool, gradient_checkpointing: bool, planned_steps: int) -> bool:
    """Whether compiling the blocks is won back within the run's planned optimizer steps."""
    return planned_steps * COMPILE_SAVES_SECONDS[(dequantize_once, gradient_checkpointing)] > COMPILE_SECONDS


# ------------------------------------------------------------------------------------------------- the plans


def plan_training(mode: MemoryPlan, facts: ModelFacts, longest_tokens: int, free_bytes: int | None,
                  planned_steps: int, configured_checkpointing: bool, configured_compile: bool) -> TrainPlan:
    """The training plan: `low` = the configured switches; `fast` = dequantised once (NF4), no checkpointing;
    `auto` = the fastest candidate that fits `free_bytes` (None = no GPU: the configured switches) for micro-batches
    of up to `longest_tokens` padded tokens. A pure function of its arguments."""
    free_gib = None if free_bytes is None else free_bytes / GIB

    def made(dequantize_once: bool, checkpointing: bool, compiled: bool, reason: str) -> TrainPlan:
        peak = train_peak_bytes(facts, longest_tokens, dequantize_once, checkpointing) / GIB
        return TrainPlan(dequantize_once, checkpointing, compiled, 1, facts.nf4, mode, round(peak, 2), free_gib,
                         reason)

    if mode == MemoryPlan.low or (mode == MemoryPlan.auto and free_bytes is None):
        why = "memory_plan=low" if mode == MemoryPlan.low else "no GPU to plan for: the configured switches"
        return made(False, configured_checkpointing, configured_compile, why)
    on_gpu = free_bytes is not None
    if mode == MemoryPlan.fast:
        dequantize = facts.nf4
        return made(dequantize, False, on_gpu and compile_pays(dequantize, False, planned_steps),
                    "memory_plan=fast")
    candidates = [(True, False), (True, True), (False, False), (False, True)] if facts.nf4 else \
        [(False, False), (False, True)]
    for dequantize, checkpointing in candidates:
        peak = train_peak_bytes(facts, longest_tokens, dequantize, checkpointing)
        if fits(peak, free_bytes):
            return made(dequantize, checkpointing, compile_pays(dequantize, checkpointing, planned_steps),
                        f"auto: the fastest arrangement that fits {free_gib:.1f} GiB free with margin")
    return made(False, True, compile_pays(False, True, planned_steps),
                f"auto: nothing fits {free_gib:.1f} GiB free with margin; the smallest plan, and out-of-memory "
                "steps are split")


def plan_inference(mode: MemoryPlan, facts: ModelFacts, prompts: int, batch_size: int, max_batch_size: int | None,
                   rows_per_prompt: int, prompt_tokens: int, new_tokens: int, free_bytes: int | None) -> InferencePlan:
    """The inference plan for `prompts` prompts of up to `prompt_tokens` tokens, each decoded as `rows_per_prompt`
    rows (execution-guided candidates) for up to `new_tokens` tokens: `low` = 4-bit weights, adapter unmerged,
    dynamic cache, batches of `batch_size`; `fast` = dequantised + merged, static cache, compiled decoding; `auto` =
    dequantised + merged when it fits `free_bytes` (None = no GPU: low), static cache and compiled decoding when
    the decode steps pay for the compile. Merged plans take the largest batch up to `max_batch_size` (and the prompts
    there are) that fits, never less than `batch_size`. A pure function of its arguments."""
    free_gib = None if free_bytes is None else free_bytes / GIB

    def made(merge: bool, static: bool, compiled: bool, reason: str, batch: int | None = None) -> InferencePlan:
        rows = (batch or batch_size) * rows_per_prompt
        peak = infer_peak_bytes(facts, rows, prompt_tokens, new_tokens, merge and facts.nf4) / GIB
        return InferencePlan(merge, static, compiled, mode, facts.nf4, round(peak, 2), free_gib, reason, batch)

    def merged_batch() -> int:
        return largest_fitting_batch(facts, prompts, batch_size, max_batch_size, rows_per_prompt, prompt_tokens,
                                     new_tokens, free_bytes)

    if mode == MemoryPlan.low or (mode == MemoryPlan.auto and free_bytes is None):
        return made(False, False, False, "memory_plan=low" if mode == MemoryPlan.low else "no GPU: today's path")
    if mode == MemoryPlan.fast:
        return made(True, True, free_bytes is not None, "memory_plan=fast", merged_batch())
    merged_peak = infer_peak_bytes(facts, batch_size * rows_per_prompt, prompt_tokens, new_tokens, facts.nf4)
    if not fits(merged_peak, free_bytes):
        return made(False, False, False, f"auto: dequantised weights do not fit {free_gib:.1f} GiB free with margin")
    batch = merged_batch()
    steps = math.ceil(prompts / batch) * new_tokens  # compiled decoding when this batch's decode steps pay for it
    compiled = steps * DECODE_STEP_SAVES_SECONDS > DECODE_COMPILE_SECONDS
    return made(True, compiled, compiled, f"auto: dequantised + merged fits {free_gib:.1f} GiB free"
                + ("; compiled decoding pays" if compiled else f"; {steps} decode steps do not pay for compiling"),
                batch)


def largest_fitting_batch(facts: ModelFacts, prompts: int, batch_size: int, max_batch_size: int | None,
                          rows_per_prompt: int, prompt_tokens: int, new_tokens: int, free_bytes: int | None) -> int:
    """Prompts per batch for a merged model: the most, up to `max_batch_size` and the prompts there are, whose
    predicted peak fits `free_bytes` with margin; never below `batch_size` (None free bytes: `batch_size`)."""
    most = min(max_batch_size or batch_size, max(prompts, 1))
    if free_bytes is None or most <= batch_size:
        return batch_size
    while most > batch_size and not fits(infer_peak_bytes(facts, most * rows_per_prompt, prompt_tokens, new_tokens,
                                                          facts.nf4), free_bytes):
        most = max(batch_size, most * 3 // 4)
    return most


def smaller(plan: TrainPlan, rows: int) -> TrainPlan | None:
    """The next smaller arrangement after an out-of-memory step of `rows` examples, None when there is none: the
    micro-batch in halves (while checkpointing is off), then checkpointing on, then per-call dequantisation, then ever
    smaller pieces down to one example. Each computes the same step."""
    if plan.split == 1 and rows > 1 and not plan.gradient_checkpointing:
        return replace(plan, split=2, reason="out of memory: micro-batch in halves")
    if not plan.gradient_checkpointing:
        return replace(plan, gradient_checkpointing=True, split=1, reason="out of memory: gradient checkpointing on")
    if plan.dequantize_once:
        return replace(plan, dequantize_once=False, split=1, reason="out of memory: NF4 dequantised per call")
    if plan.split < rows:
        return replace(plan, split=min(rows, plan.split * 2),
                       reason=f"out of memory: micro-batch in {min(rows, plan.split * 2)} pieces")
    return None


# ------------------------------------------------------------------------------------------------ model facts


def model_facts(model: ModelConfig, quant: QuantizationConfig, lora: LoraConfig, weight_bytes: int) -> ModelFacts:
    """A model's sizes from its config (the Hub's or a local config.json, or model.init): the model is built on
    the meta device, so nothing is allocated or downloaded beyond the config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, MistralConfig

    from experiments.model.model_files import resolve_model_files

    if model.name_or_path is None and model.gguf_file is None:
        config = MistralConfig(**(model.init or {}))
    else:
        files = resolve_model_files(model)
        config = AutoConfig.from_pretrained(files.path, revision=files.revision)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    return facts_from_module(meta, config, quant, lora, weight_bytes)


def facts_from_module(module, config, quant: QuantizationConfig, lora: LoraConfig, weight_bytes: int) -> ModelFacts:
    """ModelFacts of a (meta or real) causal LM whose linear layers bitsandbytes would quantise (all but lm_head)."""
    import torch

    quantized = lora_params = 0
    for name, layer in module.named_modules():
        short = name.split(".")[-1]
        if short in lora.modules_to_save:  # trained in full beside the adapters: the same per-parameter state
            lora_params += sum(p.numel() for p in layer.parameters())
        if not isinstance(layer, torch.nn.Linear) or short == "lm_head":
            continue
        quantized += layer.weight.numel()
        if short in lora.target_modules:
            lora_params += lora.r * (layer.in_features + layer.out_features)
    total = sum(p.numel() for p in module.parameters())
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    compute = {"float32": 4}.get(quant.compute_dtype, 2)
    quantized_params = quantized if quant.mode != QuantMode.none else 0
    return ModelFacts(layers=text.num_hidden_layers, hidden_size=text.hidden_size,
                      intermediate_size=text.intermediate_size, vocab_size=text.vocab_size,
                      kv_width=kv_heads * head_dim, quantized_params=quantized_params,
                      other_params=total - quantized_params, lora_params=lora_params, quantization=quant.mode,
                      double_quant=quant.double_quant, compute_bytes=compute if quant.mode != QuantMode.none else
                      weight_bytes, weight_bytes=weight_bytes)


def longest_micro_batch_tokens(lengths: list[int], plans: list[list[list[int]]]) -> int:
    """Padded tokens of the largest planned micro-batch (examples x its longest example) over the given plans (one
    per epoch)."""
    return max((len(batch) * max(lengths[i] for i in batch) for plan in plans for batch in plan if batch), default=0)


def free_gpu_bytes(device) -> int | None:
    """Free memory of `device` (None off the GPU)."""
    import torch

    if getattr(device, "type", device) != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def planned_steps(micro_batches: int, accumulation: int, num_epochs: float, max_steps: int) -> int:
    """Optimizer steps the run will take (max_steps when set, as the Trainer does)."""
    if max_steps > 0:
        return max_steps
    return math.ceil(micro_batches / max(1, accumulation) * num_epochs)
