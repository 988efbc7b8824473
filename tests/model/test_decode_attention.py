"""Decode steps on grouped KV heads without copying the cache per query head (model/decode_attention.py): the
attention of one query position equals transformers' SDPA attention with the heads repeated, and generation under
it gives the same greedy tokens, on the tiny GQA Mistral (4 query heads on 2 KV heads), left-padded as generate_sql
pads."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mistral_config
from transformers import MistralForCausalLM
from transformers.integrations.sdpa_attention import repeat_kv

from experiments.decoding.generate import left_padded
from experiments.model.decode_attention import PACKED_SDPA, packed_gqa_decoding, packed_gqa_sdpa


class Grouped(torch.nn.Module):
    num_key_value_groups = 4


def reference(query, key, value, mask):
    """One query position attending every query head's repeated KV head (transformers' path without pack_gqa)."""
    out = torch.nn.functional.scaled_dot_product_attention(query, repeat_kv(key, 4), repeat_kv(value, 4),
                                                           attn_mask=mask)
    return out.transpose(1, 2)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_one_query_on_grouped_heads_attends_as_with_repeated_heads(mask_kind):
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 8, 1, 16), torch.randn(3, 2, 7, 16), torch.randn(3, 2, 7, 16)
    keep = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    keep[0, ..., :3] = False  # left padding of different lengths
    keep[1, ..., :1] = False
    mask = {"bool": keep, "float": torch.zeros(keep.shape).masked_fill(~keep, float("-inf")), "none": None}[mask_kind]
    out, weights = packed_gqa_sdpa(Grouped(), query, key, value, mask)
    assert weights is None
    assert out.shape == (3, 1, 8, 16)
    torch.testing.assert_close(out, reference(query, key, value, mask), rtol=1e-5, atol=1e-6)


def test_several_query_positions_take_the_stock_path():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)
    out, _ = packed_gqa_sdpa(Grouped(), query, key, value, None, is_causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(query, repeat_kv(key, 4), repeat_kv(value, 4),
                                                                is_causal=True).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_greedy_generation_under_packed_heads_is_unchanged_and_the_model_is_restored():
    torch.manual_seed(0)
    model = MistralForCausalLM(tiny_mistral_config(vocab_size=512)).eval()
    prompts = [[5, 17, 99, 3, 42, 8, 250], [7, 7, 300], [1, 2, 3, 4, 5]]
    input_ids, attention = left_padded(prompts, pad_id=0)
    options = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, output_scores=True,
                   return_dict_in_generate=True)
    plain = model.generate(input_ids=input_ids, attention_mask=attention, **options)
    with packed_gqa_decoding(model, force=True) as on:
        assert on and model.config._attn_implementation == PACKED_SDPA
        packed = model.generate(input_ids=input_ids, attention_mask=attention, **options)
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(packed.sequences, plain.sequences)
    torch.testing.assert_close(torch.stack(packed.scores), torch.stack(plain.scores), rtol=1e-4, atol=1e-4)


def test_a_model_without_grouped_heads_is_left_as_it_is():
    config = tiny_mistral_config(vocab_size=512)
    config.num_key_value_heads = config.num_attention_heads
    model = MistralForCausalLM(config)
    with packed_gqa_decoding(model, force=True) as on:
        assert not on and model.config._attn_implementation == "sdpa"
