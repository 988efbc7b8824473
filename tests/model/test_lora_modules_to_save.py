"""LoRA on the base model: the smoke preset trains tiny_mistral's tied embeddings in full beside the adapters
(lora.modules_to_save); target names another architecture lacks are refused by name."""

from __future__ import annotations

import pytest
import torch

from experiments.config import load_config
from experiments.model.loading import add_lora, load_base_model


def test_smoke_trains_its_tied_embeddings_beside_lora_and_keeps_them_tied():
    cfg = load_config(["experiment=smoke", "tracking=none"])
    assert cfg.lora.modules_to_save == ["embed_tokens"] and cfg.model.init["tie_word_embeddings"]
    model = add_lora(load_base_model(cfg.model, cfg.quantization, torch.device("cpu")), cfg.lora, cfg.quantization,
                     gradient_checkpointing=False)
    base = model.get_base_model()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens" in name for name in trainable) and any("lora_A" in name for name in trainable)
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight  # one trained matrix
    assert base.get_input_embeddings().weight.requires_grad


def test_lora_targets_a_model_does_not_have_are_named_with_the_ones_it_has():
    """Another architecture's names (GPT-2 calls its projections c_attn, c_proj, c_fc): an error naming the key and
    the model's own linear layers, and [all-linear] as the way that fits any model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from experiments.config import LoraConfig, QuantizationConfig

    def gpt2():
        return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, bos_token_id=0,
                                          eos_token_id=0))

    with pytest.raises(ValueError, match=r"lora.target_modules=.*c_attn, c_fc, c_proj.*\[all-linear\]"):
        add_lora(gpt2(), LoraConfig(), QuantizationConfig(), gradient_checkpointing=False)
    model = add_lora(gpt2(), LoraConfig(target_modules=["all-linear"]), QuantizationConfig(),
                     gradient_checkpointing=False)
    assert model.get_nb_trainable_parameters()[0] > 0
