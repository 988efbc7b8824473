"""training.kernels (model/kernels.py): refused before the model loads, naming the key, where liger cannot run (no
CUDA GPU, liger-kernel or triton missing, a family liger has no kernels for); applied kernels leave the family's
modeling module as they found it once training ends. liger itself needs a GPU: its kernels are measured there
(benchmarks/speed_levers.sh)."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import tiny_mistral_config
from transformers import MistralForCausalLM
from transformers.models.mistral import modeling_mistral

from experiments.config import Kernels, ModelConfig
from experiments.model import kernels
from experiments.model.kernels import KernelsError, check_kernels, liger_kernels_applied, model_type


def test_no_kernels_need_nothing():
    check_kernels(Kernels.none, "gpt2", torch.device("cpu"))


def test_liger_is_refused_without_a_cuda_gpu():
    with pytest.raises(KernelsError, match=r"training.kernels=liger: .* CUDA GPU only.*device is cpu"):
        check_kernels(Kernels.liger, "mistral", torch.device("cpu"))


@pytest.fixture
def a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return torch.device("cuda", 0)


def test_liger_is_refused_when_liger_or_triton_cannot_be_imported(a_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # None in sys.modules: `import triton` raises ImportError
    with pytest.raises(KernelsError, match=r"training.kernels=liger: liger-kernel or triton cannot be imported.*"
                                           r"\.\[kernels\]"):
        check_kernels(Kernels.liger, "mistral", a_gpu)


def test_liger_is_refused_for_a_family_it_has_no_kernels_for(a_gpu, monkeypatch):
    monkeypatch.setattr(kernels, "_liger_families", lambda: {"llama": None, "mistral": None})
    with pytest.raises(KernelsError, match=r"training.kernels=liger: liger has no kernels for model type 'gpt2' "
                                           r"\(it has: llama, mistral\)"):
        check_kernels(Kernels.liger, "gpt2", a_gpu)
    check_kernels(Kernels.liger, "mistral", a_gpu)


def test_the_family_is_read_from_the_config_without_weights():
    assert model_type(ModelConfig(init={"hidden_size": 64, "num_hidden_layers": 1})) == "mistral"


def test_applied_kernels_patch_the_instance_and_restore_the_family_module(monkeypatch):
    """liger's apply functions also replace module-level names (the RoPE function, the norm class) that every
    later Mistral in the process would use; the context puts them back, and the trained instance keeps its
    kernels while it lasts."""
    applied = {}

    def fake_apply(model=None, rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=True,
                   cross_entropy=False):
        applied.update(rope=rope, rms_norm=rms_norm, swiglu=swiglu, flce=fused_linear_cross_entropy,
                       cross_entropy=cross_entropy)
        modeling_mistral.apply_rotary_pos_emb = lambda *a, **k: None
        modeling_mistral.MistralRMSNorm = type("FakeRMSNorm", (torch.nn.Module,), {})
        modeling_mistral.liger_added_name = True
        model.model.norm.forward = lambda hidden: hidden

    monkeypatch.setattr(kernels, "_liger_families", lambda: {"mistral": fake_apply})
    rope, norm = modeling_mistral.apply_rotary_pos_emb, modeling_mistral.MistralRMSNorm
    model = MistralForCausalLM(tiny_mistral_config(vocab_size=100))
    with liger_kernels_applied(model) as described:
        assert modeling_mistral.apply_rotary_pos_emb is not rope  # in force while training
        assert described == "liger: rope, rms_norm, swiglu, fused_linear_cross_entropy"
    assert applied == {"rope": True, "rms_norm": True, "swiglu": True, "flce": True, "cross_entropy": False}
    assert modeling_mistral.apply_rotary_pos_emb is rope and modeling_mistral.MistralRMSNorm is norm
    assert not hasattr(modeling_mistral, "liger_added_name")
    assert "forward" in vars(model.model.norm)  # the instance keeps its patch
