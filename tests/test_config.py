"""Composition of every preset, overrides, and schema errors that name the offending key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from experiments.config import DataSource, LossOn, QuantMode, load_config


def test_default_is_the_offline_smoke_preset():
    cfg = load_config()
    assert cfg.preset == "smoke"
    assert cfg.model.name == "tiny_mistral" and cfg.model.name_or_path is None
    assert cfg.quantization.mode == QuantMode.none
    assert cfg.data.source == DataSource.sample
    assert cfg.device == "cpu"


@pytest.mark.parametrize(("preset", "sizes", "max_length"), [
    ("baseline", (1000, 200, 200), 256),
    ("tweaked", (1000, 200, 200), 256),
    ("extended", (8000, 1000, 1000), 512),
])
def test_notebook_presets(preset, sizes, max_length):
    cfg = load_config([f"experiment={preset}"])
    assert cfg.preset == preset
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert cfg.quantization.mode == QuantMode.nf4 and cfg.quantization.double_quant
    assert cfg.quantization.compute_dtype == "float16"
    assert (cfg.data_size.train, cfg.data_size.val, cfg.data_size.test) == sizes
    assert cfg.data_size.max_length == max_length
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_tweaked_changes_schedule_and_batch_arrangement_only():
    base, tweaked = load_config(["experiment=baseline"]), load_config(["experiment=tweaked"])
    assert base.data_size == tweaked.data_size
    assert (base.training.per_device_batch_size, base.training.gradient_accumulation_steps) != \
        (tweaked.training.per_device_batch_size, tweaked.training.gradient_accumulation_steps)
    assert base.training.learning_rate != tweaked.training.learning_rate


def test_command_line_overrides_reach_the_typed_config():
    cfg = load_config(["experiment=extended", "training.num_epochs=3", "model.name_or_path=/models/m7b",
                       "training.loss_on=completion", "quantization.compute_dtype=bfloat16", "stages=[prepare,eval]"])
    assert cfg.training.num_epochs == 3
    assert cfg.model.name_or_path == "/models/m7b"
    assert cfg.training.loss_on == LossOn.completion
    assert cfg.quantization.compute_dtype == "bfloat16"
    assert [s.value for s in cfg.stages] == ["prepare", "eval"]


@pytest.mark.parametrize(("override", "key"), [
    ("training.learnig_rate=1e-3", "training.learnig_rate"),
    ("training.learning_rate=fast", "training.learning_rate"),
    ("data.source=kaggle", "data.source"),
    ("data_size.train=many", "data_size.train"),
    ("stages=[prepare,deploy]", "stages"),
])
def test_bad_override_fails_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        load_config([override])
    message = str(info.value) + str(info.value.__cause__)
    assert key in message
