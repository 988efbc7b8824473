"""The train stage refuses training.kernels=liger where it cannot run before it loads anything (tokenizer, data,
model), naming the key."""

from __future__ import annotations

import pytest

from experiments.config import load_config
from experiments.model.kernels import KernelsError
from experiments.stages import train


def test_liger_on_the_cpu_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("loaded before refusing training.kernels")

    monkeypatch.setattr(train, "load_tokenizer", loaded)
    monkeypatch.setattr(train, "load_base_model", loaded)
    cfg = load_config(["experiment=smoke", "device=cpu", "tracking=none", "training.exact_qlora=false",
                       "training.kernels=liger"])
    with pytest.raises(KernelsError, match=r"training.kernels=liger: .* CUDA GPU only.*set training.kernels=none"):
        train.run_train(cfg, tmp_path)
