"""lora.modules_to_save: the smoke preset trains tiny_mistral's tied embeddings in full beside LoRA."""

from __future__ import annotations

import torch

from experiments.config import load_config
from experiments.modeling import add_lora, load_base_model


def test_smoke_trains_its_tied_embeddings_beside_lora_and_keeps_them_tied():
    cfg = load_config(["tracking=none"])
    assert cfg.lora.modules_to_save == ["embed_tokens"] and cfg.model.init["tie_word_embeddings"]
    model = add_lora(load_base_model(cfg.model, cfg.quantization, torch.device("cpu")), cfg.lora, cfg.quantization,
                     gradient_checkpointing=False)
    base = model.get_base_model()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens" in name for name in trainable) and any("lora_A" in name for name in trainable)
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight  # one trained matrix
    assert base.get_input_embeddings().weight.requires_grad
