"""Execution accuracy while training: which checkpoint is kept, when training stops, and that only val (from dev)
is ever generated for, never test."""

from __future__ import annotations

import json

import pytest

from experiments.config import BestBy, load_config
from experiments.runs.files import RunFiles
from experiments.stages.prepare import run_prepare
from experiments.training.val_execution import BestCheckpoint


def metrics(ex: float, loss: float) -> dict[str, float]:
    return {"val_execution_accuracy": ex, "eval_loss": loss}


def saver(saved: list):
    def save(directory):
        directory.mkdir(parents=True)
        (directory / "adapter_config.json").write_text("{}")
        saved.append(directory)
    return save


def test_the_best_evaluation_by_execution_accuracy_wins_ties_by_eval_loss(tmp_path):
    best, saved = BestCheckpoint(BestBy.execution_accuracy, None, tmp_path / "best", resume=False), []
    assert best.consider(10, metrics(0.2, 3.0), saver(saved), is_main=True)
    assert best.consider(20, metrics(0.4, 2.5), saver(saved), is_main=True)
    assert not best.consider(30, metrics(0.3, 1.0), saver(saved), is_main=True)  # lower loss, worse execution
    assert best.consider(40, metrics(0.4, 2.0), saver(saved), is_main=True)  # a tie, broken by eval_loss
    assert best.summary()["best_step"] == 40 and best.summary()["best_score"] == 0.4
    assert json.loads((tmp_path / "best" / "best.json").read_text())["step"] == 40
    by_loss = BestCheckpoint(BestBy.eval_loss, None, tmp_path / "by-loss", resume=False)
    for step, m in ((10, metrics(0.2, 3.0)), (20, metrics(0.4, 2.5)), (30, metrics(0.3, 1.0))):
        by_loss.consider(step, m, saver([]), is_main=True)
    assert by_loss.summary()["best_step"] == 30 and by_loss.summary()["best_score"] == 1.0
    last = BestCheckpoint(BestBy.last, None, tmp_path / "last", resume=False)
    assert not last.consider(10, metrics(0.9, 0.1), saver([]), is_main=True) and last.best is None


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path):
    best = BestCheckpoint(BestBy.execution_accuracy, 2, tmp_path / "best", resume=False)
    best.consider(10, metrics(0.5, 2.0), saver([]), is_main=True)
    best.consider(20, metrics(0.4, 1.0), saver([]), is_main=True)
    assert not best.should_stop()
    best.consider(30, metrics(0.5, 2.1), saver([]), is_main=True)
    assert best.should_stop()


def test_a_resumed_run_keeps_its_best_and_a_new_run_starts_clean(tmp_path):
    first = BestCheckpoint(BestBy.execution_accuracy, None, tmp_path / "best", resume=False)
    first.consider(10, metrics(0.5, 2.0), saver([]), is_main=True)
    resumed = BestCheckpoint(BestBy.execution_accuracy, None, tmp_path / "best", resume=True)
    assert resumed.best is not None and resumed.best.step == 10
    assert not resumed.consider(20, metrics(0.4, 1.0), saver([]), is_main=True)
    fresh = BestCheckpoint(BestBy.execution_accuracy, None, tmp_path / "best", resume=False)
    assert fresh.best is None and not (tmp_path / "best").exists()


@pytest.mark.slow
def test_training_scores_val_from_dev_keeps_the_best_and_never_reads_test(tmp_path, monkeypatch):
    import experiments.data.prepared as prepared
    from experiments.stages.train import run_train

    cfg = load_config(["experiment=smoke", "tracking=none", "data_size.train=32", "data_size.val=6", "data_size.test=4",
                       "training.max_steps=5", "training.eval_steps=2", "training.logging_steps=1",
                       "training.save_steps=100", "training.eval_generate_examples=4", "inference.max_new_tokens=6"])
    run_prepare(cfg, tmp_path)
    files = RunFiles(tmp_path)
    read = prepared.read_prepared

    def read_no_test(path):
        assert path != files.split("test"), "the train stage read the test split"
        return read(path)

    monkeypatch.setattr(prepared, "read_prepared", read_no_test)
    files.split("test").unlink()  # nothing in training may depend on test
    summary = run_train(cfg, tmp_path)["summary"]

    assert summary["evaluations"] == 3  # steps 2, 4 and the last step, 5
    assert summary["best_by"] == "execution_accuracy" and summary["best_step"] in (2, 4, 5)
    assert summary["validation_seconds"] > 0
    state = json.loads(files.trainer_state.read_text())
    curves = [e for e in state["log_history"] if "val_execution_accuracy" in e]
    assert [e["step"] for e in curves] == [2, 4, 5]
    assert all(e["val_generated_examples"] == 4 for e in curves)
    assert state["best_global_step"] == summary["best_step"]
    best = json.loads((files.best_adapter_dir / "best.json").read_text())
    assert best["step"] == summary["best_step"]
    assert (files.adapter_dir / "adapter_model.safetensors").read_bytes() == \
        (files.best_adapter_dir / "adapter_model.safetensors").read_bytes()  # adapter/ is the best one
    val_ids = [json.loads(line)["id"] for line in files.split("val").read_text().splitlines()]
    assert all(i.startswith("dev-") for i in val_ids)  # val is drawn from WikiSQL's dev split


@pytest.mark.parametrize("guided", [0, 2])
def test_validation_decodes_as_infer_does_with_guidance_on_multi_table_data(tmp_path, guided):
    """inference.execution_guided applies to validation on Spider-style data too: each val question's candidates
    run on its own database, so the scripted model's second candidate (the one that runs) is what gets scored."""
    import torch
    from conftest import ScriptedSqlModel

    from experiments.model.loading import load_tokenizer
    from experiments.runs.distributed import dist_context
    from experiments.training.val_execution import ValidationScorer

    cfg = load_config(["experiment=spider_smoke", "tracking=none", "data_size.train=8", "data_size.val=4",
                       "data_size.test=4", "training.eval_generate_examples=4", f"inference.execution_guided={guided}"])
    run_prepare(cfg, tmp_path)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    scorer = ValidationScorer(cfg, RunFiles(tmp_path), tokenizer, torch.device("cpu"), dist_context())
    try:
        found = scorer(ScriptedSqlModel(tokenizer))
    finally:
        scorer.close()
    assert found["val_generated_examples"] == 4
    assert found["val_valid_sql_rate"] == (1.0 if guided else 0.0)  # without guidance the no-such-table one stays
