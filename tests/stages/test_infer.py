"""The infer stage: which adapter it loads (none for a zero-shot run), on the tiny model and the sample."""

from __future__ import annotations

import json

import pytest

from experiments.config import load_config
from experiments.runs.files import RunFiles
from experiments.stages.prepare import run_prepare


@pytest.fixture
def run_with_an_adapter(tmp_path):
    """A prepared run directory that also holds an adapter (as after a train stage)."""
    cfg = load_config(["experiment=smoke", "tracking=none", "data_size.train=8", "data_size.val=4", "data_size.test=4"])
    run_prepare(cfg, tmp_path)
    files = RunFiles(tmp_path)
    files.adapter_dir.mkdir()
    (files.adapter_dir / "adapter_config.json").write_text("{}")
    return files


@pytest.mark.parametrize("zero_shot", [True, False])
def test_zero_shot_loads_no_adapter_even_when_the_run_has_one(run_with_an_adapter, monkeypatch, zero_shot):
    import experiments.stages.infer as infer

    loaded = []

    def load_adapter(model, adapter_dir, merge=False):
        loaded.append(adapter_dir)
        return model  # the base model stands in: this test is about which adapter is asked for

    monkeypatch.setattr(infer, "load_adapter", load_adapter)
    cfg = load_config(["experiment=smoke",
                       "tracking=none", "stages=[infer,eval]", f"zero_shot={str(zero_shot).lower()}",
                       "inference.max_new_tokens=4"])
    infer.run_infer(cfg, run_with_an_adapter.root)
    summary = json.loads(run_with_an_adapter.infer_summary.read_text())
    if zero_shot:
        assert loaded == [] and summary["adapter"] is None
    else:
        assert loaded == [run_with_an_adapter.adapter_dir] and summary["adapter"] == str(loaded[0])
    assert len(run_with_an_adapter.predictions.read_text().splitlines()) == 4
