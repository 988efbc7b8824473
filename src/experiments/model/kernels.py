"""liger-kernel's Triton kernels on the train stage's model (`training.kernels=liger`).

A LoRA step on a 7B model is bound by kernel launches and elementwise work, not by matmuls (README "Speed"); liger
fuses RMSNorm, the SwiGLU activation and RoPE into one Triton kernel each, and computes the loss with its fused
linear cross-entropy (FLCE), which projects onto the vocabulary in chunks and never holds the logits.

Why the model-level FLCE patch, and not `LigerFusedLinearCrossEntropyLoss` by hand: this project does not compute
the loss from logits itself. The collator passes `labels`, `shift_labels` and a tensor `logits_to_keep` (only the
positions that carry a label), the Trainer passes `num_items_in_batch` (the loss tokens of the whole optimizer step,
training/batching.py and replan.py), and the model's own `loss_function` sums the token losses and divides by that
count. liger's per-family `lce_forward` (0.8.x) takes the same arguments: it slices the hidden states at
`logits_to_keep`, uses `shift_labels` as given, and with `num_items_in_batch` reduces by sum and divides by it
(`loss_utils.fixed_fused_linear_cross_entropy`), so the step's loss normalisation, fused or accumulated or split by
the out-of-memory re-plan, is the same; only rounding differs (the logits are never materialised in the compute
dtype). In evaluation (`model.eval()`) it computes logits and the model's own loss, as before.

liger's `apply_liger_kernel_to_<family>(model=...)` patches the instance (norm and MLP forwards, the causal LM's
forward) and also replaces module-level names of the family's modeling module (the RoPE function, the norm and MLP
classes), which every model of that family in the process would then use. `liger_kernels_applied` puts those names
back when the train stage ends, so the infer stage in the same process builds and runs its model as it would alone.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from experiments.config import Kernels, ModelConfig

# What liger replaces: every kernel it has for the family's decoder, FLCE instead of its plain cross-entropy
LIGER_OPTIONS = {"rope": True, "rms_norm": True, "swiglu": True, "fused_linear_cross_entropy": True,
                 "cross_entropy": False}
INSTALL_HINT = "pip install -e '.[kernels]' (liger-kernel; triton comes with torch's CUDA builds on Linux)"


class KernelsError(RuntimeError):
    """training.kernels cannot work on this machine or model; the message names the key and what to change."""


def model_type(cfg: ModelConfig) -> str:
    """The model's family as transformers names it (config.json's `model_type`), read without loading weights."""
    from transformers import AutoConfig, MistralConfig

    from experiments.model.model_files import resolve_model_files

    if cfg.name_or_path is None and cfg.gguf_file is None:
        return MistralConfig(**(cfg.init or {})).model_type
    files = resolve_model_files(cfg)
    return AutoConfig.from_pretrained(files.path, revision=files.revision).model_type


def _liger_families() -> dict:
    """liger's table of families it can patch (model_type -> apply function); importing it needs triton."""
    importlib.import_module("triton")
    return importlib.import_module("liger_kernel.transformers.monkey_patch").MODEL_TYPE_TO_APPLY_LIGER_FN


def check_kernels(kernels: Kernels, family: str, device: torch.device) -> None:
    """Refuse, before the model loads, a `training.kernels` choice that cannot run here: liger needs a CUDA GPU,
    liger-kernel and triton importable, and a model family liger has kernels for."""
    if kernels == Kernels.none:
        return
    key = f"training.kernels={kernels.value}"
    if device.type != "cuda" or not torch.cuda.is_available():
        raise KernelsError(f"{key}: liger's Triton kernels run on a CUDA GPU only, and this run's device is {device}; "
                           "set training.kernels=none")
    try:
        families = _liger_families()
    except ImportError as err:
        raise KernelsError(f"{key}: liger-kernel or triton cannot be imported ({type(err).__name__}: {err}); "
                           f"{INSTALL_HINT}, or set training.kernels=none") from None
    if family not in families:
        raise KernelsError(f"{key}: liger has no kernels for model type {family!r} (it has: "
                           f"{', '.join(sorted(families))}); set training.kernels=none")


@contextmanager
def liger_kernels_applied(model) -> Iterator[str]:
    """liger's kernels on `model` (a PEFT model or a plain causal LM; check_kernels first) for as long as the
    context lasts; yields what was applied, for the run's summary. The instance stays patched; the family's
    module-level names are restored on exit (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    apply = _liger_families()[base.config.model_type]
    modeling = sys.modules[type(base).__module__]
    saved = dict(vars(modeling))
    accepted = inspect.signature(apply).parameters
    options = {name: on for name, on in LIGER_OPTIONS.items() if name in accepted}
    try:
        apply(model=base, **options)
        yield "liger: " + ", ".join(name for name, on in options.items() if on)
    finally:
        for name in set(vars(modeling)) - set(saved):
            delattr(modeling, name)
        for name, value in saved.items():
            if vars(modeling).get(name) is not value:
                setattr(modeling, name, value)
