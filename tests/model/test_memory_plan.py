"""The memory plans (memory_plan.py): what `auto` picks for a GPU of a given size, the peak-memory estimate against
the measured peaks it was calibrated on, the out-of-memory ladder, and the model facts it is computed from."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig

from experiments.config import LoraConfig, MemoryPlan, QuantizationConfig, QuantMode
from experiments.model.memory_plan import (
    GIB,
    facts_from_module,
    fits,
    infer_peak_bytes,
    longest_micro_batch_tokens,
    plan_inference,
    plan_training,
    smaller,
    train_peak_bytes,
)

MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8)
NF4 = QuantizationConfig(mode=QuantMode.nf4, compute_dtype="float16", double_quant=True)
# free memory of a GPU of each nominal size once the CUDA context exists (GiB)
FREE_GIB = {141: 139.0, 80: 78.5, 24: 22.5, 16: 14.5}
BASELINE_TOKENS, EXTENDED_TOKENS = 16 * 256, 16 * 512  # the longest micro-batch either preset can plan
BASELINE_STEPS, EXTENDED_STEPS = 63, 1000


@pytest.fixture(scope="module")
def mistral():
    config = MistralConfig(**MISTRAL_7B)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return facts_from_module(model, config, NF4, LoraConfig(), weight_bytes=2)


def auto(facts, tokens: int, gpu: int, steps: int):
    return plan_training(MemoryPlan.auto, facts, tokens, int(FREE_GIB[gpu] * GIB), steps,
                         configured_checkpointing=True, configured_compile=False)


def test_mistral_facts(mistral):
    assert mistral.quantized_params == 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    assert mistral.other_params == 2 * 32000 * 4096 + (2 * 32 + 1) * 4096  # embeddings, lm_head, norms
    assert mistral.lora_params == 41_943_040  # r16 on all seven projections, as PEFT reports for the presets
    assert mistral.kv_width == 1024


def test_estimate_reproduces_the_measured_peaks(mistral):
    """Calibrated on the H200's 21 GiB (NF4, no checkpointing, 16 x 100 tokens); the README's 26.7 GiB without and
    6.9 GiB with checkpointing came from ~2,170-token micro-batches (checkpointing over-estimated, on the safe side)."""
    assert train_peak_bytes(mistral, 1600, False, False) / GIB == pytest.approx(21.0, abs=0.1)
    assert train_peak_bytes(mistral, 2170, False, False) / GIB == pytest.approx(26.7, abs=0.2)
    assert 6.9 <= train_peak_bytes(mistral, 2170, False, True) / GIB <= 6.9 * 1.1
    # the dequantised copy costs 2 bytes per quantised weight on top
    extra = train_peak_bytes(mistral, 1600, True, False) - train_peak_bytes(mistral, 1600, False, False)
    assert extra == 2 * mistral.quantized_params


@pytest.mark.parametrize(("gpu", "tokens", "steps", "dequantized", "checkpointing", "compiled"), [
    (141, BASELINE_TOKENS, BASELINE_STEPS, True, False, False),
    (141, EXTENDED_TOKENS, EXTENDED_STEPS, True, False, True),
    (80, BASELINE_TOKENS, BASELINE_STEPS, True, False, False),
    (80, EXTENDED_TOKENS, EXTENDED_STEPS, True, True, True),
    (24, BASELINE_TOKENS, BASELINE_STEPS, False, True, False),
    (24, EXTENDED_TOKENS, EXTENDED_STEPS, False, True, True),
    (16, BASELINE_TOKENS, BASELINE_STEPS, False, True, False),
])
def test_auto_picks_the_fastest_plan_that_fits(mistral, gpu, tokens, steps, dequantized, checkpointing, compiled):
    plan = auto(mistral, tokens, gpu, steps)
    assert (plan.dequantize_once, plan.gradient_checkpointing, plan.compile) == (dequantized, checkpointing, compiled)
    assert plan.split == 1


def test_low_plans_keep_todays_peaks(mistral):
    """memory_plan=low is today's notebook-sized plan: baseline <= 10 GiB, extended <= 16 GiB at their longest."""
    for tokens, limit in ((BASELINE_TOKENS, 10), (EXTENDED_TOKENS, 16)):
        plan = plan_training(MemoryPlan.low, mistral, tokens, int(139 * GIB), 1000, True, True)
        assert (plan.dequantize_once, plan.gradient_checkpointing, plan.compile) == (False, True, True)
        assert plan.predicted_peak_gib <= limit


def test_low_and_cpu_auto_are_the_configured_switches(mistral):
    for mode, free in ((MemoryPlan.low, int(139 * GIB)), (MemoryPlan.auto, None)):
        plan = plan_training(mode, mistral, 1600, free, 1000, configured_checkpointing=False, configured_compile=True)
        assert (plan.dequantize_once, plan.gradient_checkpointing, plan.compile) == (False, False, True)


def test_fast_forces_the_fast_plan_even_where_it_does_not_fit(mistral):
    plan = plan_training(MemoryPlan.fast, mistral, EXTENDED_TOKENS, int(22.5 * GIB), EXTENDED_STEPS, True, False)
    assert (plan.dequantize_once, plan.gradient_checkpointing, plan.compile) == (True, False, True)
    assert plan.predicted_peak_gib > 22.5
    not_nf4 = facts_with(mistral, quantization=QuantMode.none)
    assert not plan_training(MemoryPlan.fast, not_nf4, 1600, int(79 * GIB), 10, True, False).dequantize_once


def facts_with(facts, **changes):
    from dataclasses import replace

    return replace(facts, **changes)


def test_inexact_qlora_counts_non_quantised_weights_and_checkpoints_in_the_weights_dtype(mistral):
    """training.exact_qlora=false keeps embeddings, lm_head and norms in bf16/fp16 (no k-bit upcast), and each
    checkpointed block input is half precision: the estimate drops by exactly those bytes, nothing else."""
    inexact = facts_with(mistral, exact_qlora=False)
    for checkpointing in (False, True):
        saved = train_peak_bytes(mistral, 1600, True, checkpointing) - train_peak_bytes(inexact, 1600, True,
                                                                                         checkpointing)
        stream = 1600 * 32 * (4 - 2) * 4096 if checkpointing else 0
        assert saved == (4 - 2) * mistral.other_params + stream


def test_fused_linear_cross_entropy_holds_no_logits(mistral):
    """liger's FLCE (training.kernels=liger) never materialises the logits: the per-token vocabulary term goes."""
    fused = facts_with(mistral, exact_qlora=False, fused_loss=True)
    inexact = facts_with(mistral, exact_qlora=False)
    saved = train_peak_bytes(inexact, 1600, True, False) - train_peak_bytes(fused, 1600, True, False)
    assert saved == pytest.approx(1600 * (12 * 32000 - 14 * 4096))
    assert train_peak_bytes(fused, 1600, True, False) < train_peak_bytes(inexact, 1600, True, False)


def test_when_nothing_fits_auto_takes_the_smallest_plan(mistral):
    plan = auto(mistral, 16 * 4096, 16, BASELINE_STEPS)
    assert (plan.dequantize_once, plan.gradient_checkpointing) == (False, True)
    assert "nothing fits" in plan.reason


def test_out_of_memory_ladder_ends_at_one_example_per_piece(mistral):
    plan = auto(mistral, BASELINE_TOKENS, 141, BASELINE_STEPS)
    seen = []
    while plan is not None:
        seen.append((plan.dequantize_once, plan.gradient_checkpointing, plan.split))
        plan = smaller(plan, rows=16)
    assert seen == [(True, False, 1), (True, False, 2), (True, True, 1), (False, True, 1), (False, True, 2),
                    (False, True, 4), (False, True, 8), (False, True, 16)]
    assert smaller(auto(mistral, BASELINE_TOKENS, 141, 1), rows=1).gradient_checkpointing  # one row: no split


def test_inference_plans(mistral):
    prompt, new = 200, 40
    merged = infer_peak_bytes(mistral, 128, prompt, new, True) / GIB
    assert 13 < merged < 20  # 13 GiB of dense weights + KV cache and prefill
    assert infer_peak_bytes(mistral, 128, prompt, new, False) / GIB < merged - 8

    def plan(mode, prompts, free_gib, max_batch=1024, rows_per_prompt=1):
        free = None if free_gib is None else int(free_gib * GIB)
        return plan_inference(mode, mistral, prompts, 128, max_batch, rows_per_prompt, prompt, new, free)

    h200 = plan(MemoryPlan.auto, 1000, 139)  # a test split on an H200: one merged batch of all 1,000, eager
    assert (h200.dequantize_merge, h200.batch_size, h200.static_cache, h200.compile) == (True, 1000, False, False)
    assert "batches of 1000" in h200.describe() and h200.predicted_peak_gib < 139
    assert plan(MemoryPlan.auto, 1000, 139, max_batch=None).batch_size == 128  # null: the configured batch
    assert plan(MemoryPlan.auto, 50, 139).batch_size == 128  # never below batch_size
    guided = plan(MemoryPlan.auto, 1000, 80, rows_per_prompt=4)  # 4 beams a prompt on 80 GB: smaller, still fits
    assert 128 <= guided.batch_size < 1000
    assert fits(infer_peak_bytes(mistral, guided.batch_size * 4, prompt, new, True), 80 * GIB)
    assert not fits(infer_peak_bytes(mistral, (guided.batch_size * 4 // 3 + 2) * 4, prompt, new, True), 80 * GIB)
    endless = plan(MemoryPlan.auto, 10_000_000, 139)  # compiled decoding pays only for a huge number of steps
    assert (endless.static_cache, endless.compile) == (True, True)
    small = plan(MemoryPlan.auto, 1000, 14.5)
    assert not small.dequantize_merge and small.batch_size is None
    fast = plan(MemoryPlan.fast, 1000, 14.5)  # forced: merged, at the configured batch as nothing larger fits
    assert (fast.dequantize_merge, fast.static_cache, fast.compile, fast.batch_size) == (True, True, True, 128)
    for mode, free in ((MemoryPlan.low, 139), (MemoryPlan.auto, None)):
        low = plan(mode, 1000, free)
        assert (low.dequantize_merge, low.static_cache, low.compile, low.batch_size) == (False, False, False, None)


def test_longest_micro_batch_over_epochs():
    lengths = [10, 50, 20, 30]
    assert longest_micro_batch_tokens(lengths, [[[0, 2], [1, 3]], [[0, 1, 2, 3]]]) == 200
    assert longest_micro_batch_tokens(lengths, []) == 0


def test_facts_match_the_model_and_adapter_peft_builds():
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = MistralConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2)
    for lora in (LoraConfig(r=4), LoraConfig(r=4, modules_to_save=["embed_tokens"])):
        model = AutoModelForCausalLM.from_config(config)
        facts = facts_from_module(model, config, NF4, lora, weight_bytes=4)
        assert facts.quantized_params + facts.other_params == sum(p.numel() for p in model.parameters())
        peft = get_peft_model(model, PeftLoraConfig(r=4, target_modules=list(lora.target_modules),
                                                    modules_to_save=lora.modules_to_save or None))
        assert facts.lora_params == peft.get_nb_trainable_parameters()[0]
