"""The infer stage's model under its memory plan (memory_plan.plan_inference, inference.memory_plan).

With memory to spare, NF4 weights are dequantised once (exactly what the 4-bit model computes with, dequantize.py)
and the adapter is merged into them: decoding then runs plain dense matmuls, none of the 224 per-call dequantisations
and LoRA side paths per token (measured on an H200: 44 s -> 10 s per 1,000 prompts before merging). A static KV
cache with compiled decode steps (transformers' `cache_implementation="static"` + `compile_config`, CUDA graphs)
comes on top when the run generates enough tokens to pay for the compile. With little memory: today's path, 4-bit
weights with the adapter unmerged.
"""

from __future__ import annotations

import logging

import torch

from experiments.config import ExperimentConfig, QuantMode
from experiments.model.loading import load_base_model, weights_dtype
from experiments.model.memory_plan import InferencePlan, free_gpu_bytes, model_facts, plan_inference
from experiments.model.tokenization import encode_prompt

log = logging.getLogger(__name__)


def inference_plan_for(cfg: ExperimentConfig, tokenizer, prompts: list[str], new_tokens: int,
                       device: torch.device) -> InferencePlan:
    """This rank's inference plan for its prompts (the longest sets the KV cache), logged before the model loads."""
    inf = cfg.inference
    rows_per_prompt = max(1, inf.execution_guided)
    longest = max((len(encode_prompt(tokenizer, p)) for p in prompts), default=0)
    facts = model_facts(cfg.model, cfg.quantization, cfg.lora,
                        weights_dtype(cfg.model, cfg.quantization, device).itemsize)
    plan = plan_inference(inf.memory_plan, facts, len(prompts), inf.batch_size, inf.max_batch_size, rows_per_prompt,
                          longest, new_tokens, free_gpu_bytes(device))
    free = f" of {plan.free_gib:.1f} GiB free" if plan.free_gib is not None else ""
    log.info("inference plan (inference.memory_plan=%s): %s; predicted peak %.1f GiB%s (%d prompts x %d rows, up to %d "
             "tokens + %d new); %s", inf.memory_plan.value, plan.describe(), plan.predicted_peak_gib, free,
             len(prompts), rows_per_prompt, longest, new_tokens, plan.reason)
    return plan


def load_inference_base(cfg: ExperimentConfig, device: torch.device, plan: InferencePlan):
    """The base model, its NF4 weights dequantised once when the plan says so (then a dense model to transformers,
    which otherwise refuses to compile a bitsandbytes-quantised model's decoding)."""
    model = load_base_model(cfg.model, cfg.quantization, device)
    if plan.dequantize_merge and cfg.quantization.mode == QuantMode.nf4:
        from experiments.model.dequantize import dequantize_4bit_layers

        count = dequantize_4bit_layers(model, keep_quantized=False)
        model.hf_quantizer.remove_quantization_config(model)
        log.info("infer: %d NF4 layers dequantised once to %s", count, cfg.quantization.compute_dtype)
    return model


def merges_adapter(cfg: ExperimentConfig, plan: InferencePlan) -> bool:
    """Whether the adapter is merged into the weights: under the plan's dequantise-and-merge (NF4 dequantised, or a
    plain model), or with inference.merge_adapter on an unquantised model as before. Never into int8 weights."""
    quant = cfg.quantization.mode
    return (plan.dequantize_merge and quant != QuantMode.int8) or (cfg.inference.merge_adapter and
                                                                     quant == QuantMode.none)
