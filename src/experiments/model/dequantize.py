"""NF4 weights dequantised once: the 4-bit model's exact maths without dequantising 224 weights on every call.

bitsandbytes' 4-bit matmul, on the shapes a training step has, dequantises the weight to the compute dtype and runs
an ordinary matmul (`gemm_4bit`'s dequantise + `F.linear` path; its backward always dequantises and multiplies).
So a frozen dense copy of that dequantised weight, used with the same casts, computes bit-identical outputs and
gradients, at 2 bytes per weight instead of ~0.52 and without the per-call dequantise and its Python overhead.
(bitsandbytes 0.50's fused 4-bit kernel takes over only for calls of few rows: on an H100/H200, by its heuristic, at
most 64 tokens per call for Mistral-7B's weights, i.e. single-sequence decoding, never a training micro-batch of more
than 64 tokens; other GPUs may use it up to 512 rows, where the two agree to rounding rather than bit for bit.)

`DequantizedLinear` keeps the 4-bit layer (outside the module tree: not in state_dict, not moved, not counted), so a
run that runs out of memory can go back to dequantising per call (`use_per_call_dequantization`) with the same
maths. Module names and shapes do not change, so a LoRA adapter trained on top loads onto the 4-bit model as is.

transformers' own `model.dequantize()` is not used: it builds plain `nn.Linear` layers whose output stays in the
compute dtype (a 4-bit layer casts back to its input's dtype, which is float32 after k-bit preparation), dequantises
through the quantisation-time dtype first, and drops the 4-bit weights the fallback needs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _linear4bit_class():
    import bitsandbytes as bnb

    return bnb.nn.Linear4bit


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The weight of a bitsandbytes `Linear4bit` exactly as its matmul dequantises it: nested (double-quantised)
    absmax restored in float32, then the 4-bit codes scaled straight into the layer's compute dtype (one rounding)."""
    from bitsandbytes.functional import dequantize_4bit

    state = layer.weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        raise RuntimeError(f"{type(layer).__name__}: the 4-bit weight was repacked for CPU inference (bitsandbytes "
                           "does that on the first no-grad CPU forward); dequantise before running the model")
    state = copy.copy(state)  # the dtype is the only change: dequantise into the compute dtype as the matmul does
    state.dtype = compute_dtype(layer)
    return dequantize_4bit(layer.weight.data, state)


def compute_dtype(layer: nn.Module) -> torch.dtype:
    """The dtype a 4-bit layer computes in (its compute_dtype, else the dtype it was quantised from)."""
    return layer.compute_dtype or layer.weight.quant_state.dtype


class DequantizedLinear(nn.Linear):
    """A frozen dense copy of a `Linear4bit`'s dequantised weight, computing what the 4-bit layer computes: input
    cast to the compute dtype, `F.linear`, output cast back to the input's dtype. A subclass of `nn.Linear`, so
    PEFT wraps it as a plain linear layer (and can merge an adapter into it). After `use_per_call()` it hands every
    call to the kept 4-bit layer instead and holds no dense weight."""

    def __init__(self, quantized: nn.Module, keep_quantized: bool = True) -> None:
        nn.Module.__init__(self)  # nn.Linear.__init__ would allocate a weight we are about to replace
        self.in_features, self.out_features = quantized.in_features, quantized.out_features
        self.compute_dtype = compute_dtype(quantized)
        self.weight = nn.Parameter(dequantized_weight(quantized), requires_grad=False)
        if quantized.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = quantized.bias  # shared with the 4-bit layer
            self.bias.requires_grad_(False)
        self.per_call = False
        # Not a submodule: it must not appear in state_dict, named_modules (PEFT would target it) or .to().
        object.__setattr__(self, "quantized", quantized if keep_quantized else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_call:
            return self.quantized(x)
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return nn.functional.linear(x.to(self.compute_dtype), self.weight, bias).to(x.dtype)

    def use_per_call(self) -> None:
        """Dequantise per call again (the kept 4-bit layer), releasing the dense weight."""
        if self.quantized is None:
            raise RuntimeError("this DequantizedLinear kept no 4-bit layer to fall back to")
        self.per_call = True
        self.weight = nn.Parameter(torch.empty(0, dtype=self.weight.dtype, device=self.weight.device),
                                   requires_grad=False)

    def extra_repr(self) -> str:
        mode = "per call (4-bit)" if self.per_call else f"dequantised once, {self.compute_dtype}"
        return f"{super().extra_repr()}, {mode}"


def dequantize_4bit_layers(model: nn.Module, keep_quantized: bool = True) -> int:
    """Replace every bitsandbytes `Linear4bit` in `model` by a `DequantizedLinear` (in place; one layer at a time, so
    the extra memory at any moment is one dense weight) and return how many. Call it after PEFT's
    `prepare_model_for_kbit_training` (which would cast dense half-precision weights to float32) and before adding
    LoRA (so PEFT wraps plain linear layers)."""
    linear4bit = _linear4bit_class()
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, linear4bit)]
    for name, module in targets:
        model.set_submodule(name, DequantizedLinear(module, keep_quantized=keep_quantized))
    return len(targets)


def use_per_call_dequantization(model: nn.Module) -> int:
    """Every `DequantizedLinear` in `model` back to dequantising per call; returns how many were switched."""
    switched = 0
    for module in model.modules():
        if isinstance(module, DequantizedLinear) and not module.per_call:
            module.use_per_call()
            switched += 1
    return switched


def match_4bit_lora_casts(model: nn.Module) -> int:
    """Make the LoRA layers over `DequantizedLinear`s cast their input as PEFT's 4-bit LoRA layers do; returns how
    many. Under autocast, PEFT's 4-bit LoRA layer feeds the adapter its input as it comes (dropout included), while
    its plain-linear one first casts the input to the adapter's float32: o_proj's half-precision input would then
    get its dropout in another dtype, and the step would no longer be the 4-bit one (seen on CPU with PEFT's autocast
    check made to see CPU autocast, tests/model/test_dequantize.py). Without autocast the input is already
    float32 after k-bit preparation, so no cast is needed either way."""
    count = 0
    for module in model.modules():
        if isinstance(getattr(module, "base_layer", None), DequantizedLinear) and hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
            count += 1
    return count


def count_dequantized(model: nn.Module) -> tuple[int, int]:
    """(layers dequantised once, layers dequantising per call) among the model's `DequantizedLinear`s."""
    layers = [m for m in model.modules() if isinstance(m, DequantizedLinear)]
    return sum(not m.per_call for m in layers), sum(m.per_call for m in layers)
