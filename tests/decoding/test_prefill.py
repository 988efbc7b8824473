"""The prefill of a large batch in length-sorted slices (decoding/prefill.py): generation that goes on from the joined
cache gives the tokens and scores of one prefill, for full-attention, sliding-window and hybrid models, and through
generate_sql; models whose cache cannot be joined keep the one prefill."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mistral_config
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, MistralForCausalLM
from transformers.cache_utils import DynamicLayer

from experiments.config import DataConfig, ModelConfig, load_config
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.decoding.generate import Decoding, generate_sql, left_padded
from experiments.decoding.prefill import (
    CACHE_ARGUMENT,
    MAX_PREFILL_CHUNKS,
    PreallocatedLayer,
    chunked_prefill,
    joinable,
    prefill_chunk_count,
)
from experiments.model.loading import load_tokenizer

PROMPTS = [[5, 17, 99, 3, 42, 8, 250, 11, 12], [7, 7, 300, 4, 9, 81, 2], [1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5],
           [30, 31, 32, 33], [44, 45, 46], [61, 62, 63], [70, 71]]  # longest first, as generate_sql sorts them
NEW_TOKENS = 10


def llama():
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def gemma3():  # sliding-window and full-attention layers in one model
    config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=32,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                              initializer_range=0.3)
    config._attn_implementation = "sdpa"
    return Gemma3ForCausalLM(config)


MODELS = {"llama": llama, "mistral": lambda: MistralForCausalLM(tiny_mistral_config(vocab_size=512)),
          "gemma3": gemma3}


def generated(model, prefilled=None):
    input_ids, attention = left_padded(PROMPTS, pad_id=0)
    options = {CACHE_ARGUMENT: prefilled} if prefilled is not None else {}
    return model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=NEW_TOKENS, do_sample=False,
                          pad_token_id=0, output_scores=True, return_dict_in_generate=True, **options)


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("chunks", [2, 3, 8])
@pytest.mark.parametrize("room", [pytest.param(NEW_TOKENS, id="room-for-all"),
                                  pytest.param(2, id="room-runs-out")])
def test_generation_from_the_joined_slices_is_the_generation_of_one_prefill(family, chunks, room):
    torch.manual_seed(0)
    model = MODELS[family]().eval()
    plain = generated(model)
    input_ids, attention = left_padded(PROMPTS, pad_id=0)
    prefilled = chunked_prefill(model, input_ids, attention, chunks, new_tokens=room)
    assert prefilled is not None and prefilled.get_seq_length() == input_ids.shape[1] - 1
    chunked = generated(model, prefilled)
    assert torch.equal(chunked.sequences, plain.sequences)
    torch.testing.assert_close(torch.stack(chunked.scores), torch.stack(plain.scores), rtol=1e-4, atol=1e-4)
    written_in_place = [layer.buffers is not None and layer.keys.data_ptr() == layer.buffers[0].data_ptr()
                        for layer in prefilled.layers if isinstance(layer, PreallocatedLayer)]
    assert written_in_place and all(written_in_place) == (room >= NEW_TOKENS)  # else the layers fell back to cat


def test_a_window_that_drops_keys_during_generation_keeps_its_sliding_layers():
    torch.manual_seed(0)
    model = MistralForCausalLM(tiny_mistral_config(vocab_size=512, sliding_window=12)).eval()  # prompts 9, +10 new
    plain = generated(model)
    input_ids, attention = left_padded(PROMPTS, pad_id=0)
    prefilled = chunked_prefill(model, input_ids, attention, 3, new_tokens=NEW_TOKENS)
    assert not any(isinstance(layer, PreallocatedLayer) for layer in prefilled.layers)
    chunked = generated(model, prefilled)
    assert torch.equal(chunked.sequences, plain.sequences)
    torch.testing.assert_close(torch.stack(chunked.scores), torch.stack(plain.scores), rtol=1e-4, atol=1e-4)


def test_a_window_shorter_than_the_prompts_keeps_one_prefill():
    model = MistralForCausalLM(tiny_mistral_config(vocab_size=512, sliding_window=4)).eval()
    input_ids, attention = left_padded(PROMPTS, pad_id=0)
    assert not joinable(model, input_ids.shape[1])
    assert chunked_prefill(model, input_ids, attention, 4) is None
    assert joinable(MistralForCausalLM(tiny_mistral_config(vocab_size=512, sliding_window=64)), input_ids.shape[1])


def test_a_rotary_embedding_scaled_by_the_batch_length_keeps_one_prefill():
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=6,
                         rope_parameters={"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0})
    input_ids, attention = left_padded(PROMPTS, pad_id=0)
    assert chunked_prefill(LlamaForCausalLM(config).eval(), input_ids, attention, 4) is None
    assert joinable(llama(), input_ids.shape[1])


def test_small_batches_keep_one_prefill_and_large_ones_are_split_in_bounded_slices():
    assert prefill_chunk_count(100, 64) == 1
    assert prefill_chunk_count(128, 64) == 2
    assert prefill_chunk_count(1000, 64) == MAX_PREFILL_CHUNKS
    assert prefill_chunk_count(1000, 0) == 1  # off


@pytest.mark.parametrize("overrides", [pytest.param(["inference.constrain=none"], id="free"),
                                       pytest.param(["inference.constrain=grammar"], id="grammar")])
def test_generate_sql_prefills_large_batches_in_slices_with_the_same_sql(overrides):
    cfg = load_config(["experiment=smoke", "tracking=none", "device=cpu", *overrides])
    tokenizer = load_tokenizer(ModelConfig())
    split = load_source(DataConfig())["test"]
    examples = split.examples[:9]
    prompts = [PreparedExample.build(e, split.tables[e.table_id]).prompt for e in examples]
    tables = [split.tables[e.table_id] for e in examples]
    torch.manual_seed(0)
    model = MistralForCausalLM(tiny_mistral_config()).eval()
    results = {}
    for rows in (0, 3):
        decoding = Decoding.for_run(cfg.inference, tokenizer, tables_sqlite=None)
        decoding.batch_size, decoding.prefill_chunk_rows = 9, rows
        results[rows] = generate_sql(model, tokenizer, prompts, cfg, torch.device("cpu"), 12, progress=False,
                                     schemas=tables, decoding=decoding)
        assert decoding.prefilled_in_chunks == (1 if rows else 0)
        assert decoding.summary().get("prefilled_in_chunks", 0) == decoding.prefilled_in_chunks
    assert results[3] == results[0]


@pytest.mark.parametrize("change", ["reset", "crop"])
def test_a_preallocated_layer_changed_by_a_cache_operation_keeps_exact_keys(change):
    """reset() (transformers 5.2x drops the keys, 5.17 zeroes them) and crop() leave the buffers behind or reuse
    them: the next update must give the keys a DynamicLayer would hold."""
    keys = torch.zeros(2, 1, 6, 4)
    keys[:, :, :3] = torch.arange(24.0).reshape(2, 1, 3, 4)
    layer = PreallocatedLayer(keys, keys.clone(), 3)
    plain = DynamicLayer()
    plain.update(keys[:, :, :3].clone(), keys[:, :, :3].clone())
    new = torch.full((2, 1, 1, 4), 7.0)
    for cache_layer in (layer, plain):
        getattr(cache_layer, change)(*(() if change == "reset" else (-1,)))
        cache_layer.update(new, new)
    assert torch.equal(layer.keys, plain.keys) and torch.equal(layer.values, plain.values)
