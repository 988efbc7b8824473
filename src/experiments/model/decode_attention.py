"""Decode steps of grouped-query attention without copying the KV cache for every query head.

Generation pads on the left, so every step passes a padding mask, and transformers before `pack_gqa` (the GPU
image's 5.17) then repeats each key/value head for each of its query heads: a Mistral decode step copies its whole
cache four times (32 query heads on 8 KV heads) and attends four times the keys. On an H100, 1,000 prompts in one
batch spent ~190 ms a decode step, of which ~18 ms in matmuls (`benchmarks/profile_generation.py`). For a single
query position the query heads of one KV head can instead be read as that head's query rows: the same SDPA call on
[batch, kv_heads, groups, dim] against the cache as it is, the same maths. transformers 5.2x does this itself;
`packed_gqa_decoding` brings it to versions that do not, and changes nothing where it is not needed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations import sdpa_attention
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_SDPA = "sdpa_packed_gqa"  # the attention implementation's name while decoding
STOCK_PACKS_GQA = hasattr(sdpa_attention, "pack_gqa")  # transformers already attends a single query without copies


def packed_gqa_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that one query position on grouped KV heads attends the cache as is.
    Returns [batch, positions, heads, dim] as every transformers attention function does."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, positions, dim = query.shape
    per_head_mask = attention_mask is not None and attention_mask.shape[1] != 1  # a group cannot share it
    if positions != 1 or groups == 1 or torch.compiler.is_compiling() or kwargs.get("position_bias") is not None \
            or per_head_mask:
        return sdpa_attention.sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                                     scaling=scaling, **kwargs)
    packed = query.reshape(batch, heads // groups, groups, dim)  # a KV head's query heads as its query rows
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _registered() -> None:
    """Make PACKED_SDPA known to transformers (its attention and its mask, which is SDPA's); idempotent."""
    AttentionInterface.register(PACKED_SDPA, packed_gqa_sdpa)
    AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)


@contextmanager
def packed_gqa_decoding(model, force: bool = False) -> Iterator[bool]:
    """Generation under packed_gqa_sdpa when the model attends with SDPA on grouped KV heads and the installed
    transformers does not pack them itself (`force`: even then, for tests). Yields whether it is on; the model's
    attention implementation is restored after."""
    config = getattr(model, "config", None)  # (a stand-in model of a test may have none)
    grouped = getattr(config, "num_key_value_heads", None) not in (None, getattr(config, "num_attention_heads", None))
    if getattr(config, "_attn_implementation", None) != "sdpa" or not grouped or (STOCK_PACKS_GQA and not force):
        yield False
        return
    _registered()
    config._attn_implementation = PACKED_SDPA
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"
