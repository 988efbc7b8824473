"""Grammar-constrained decoding in the infer stage and in training's val execution accuracy on multi-table data (the
bundled Spider-layout sample, spider_smoke's default): every prediction is a query, or the start of one, of its own
database's grammar, and infer_summary.json carries what the grammar cost."""

from __future__ import annotations

import json

import torch

import experiments.stages.infer as infer
from experiments.config import load_config
from experiments.data.prepared import read_databases, read_prepared
from experiments.decoding.constraint import SchemaConstraint
from experiments.model.loading import load_base_model, load_tokenizer
from experiments.runs.distributed import dist_context
from experiments.runs.files import RunFiles
from experiments.stages.prepare import run_prepare
from experiments.training.val_execution import ValidationScorer

SMALL = ["experiment=spider_smoke", "tracking=none", "data_size.train=8", "data_size.val=4", "data_size.test=6",
         "training.eval_generate_examples=4", "inference.max_new_tokens=12", "stages=[infer]"]


def test_infer_writes_predictions_of_each_databases_grammar_and_its_costs(tmp_path):
    cfg = load_config(SMALL)
    assert cfg.inference.constrain.value == "grammar"  # the preset's default
    run_prepare(cfg, tmp_path)
    files = RunFiles(tmp_path)
    infer.run_infer(cfg, tmp_path)
    test = read_prepared(files.split("test"))
    databases = read_databases(files.databases_jsonl)
    rows = [json.loads(line) for line in files.predictions.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.example.id for p in test]
    constraint = SchemaConstraint(load_tokenizer(cfg.model), multi_table=True)
    for row, p in zip(rows, test, strict=True):
        database = databases[p.example.db_id]
        matcher = constraint.matcher(database)  # a whole query, or one cut by max_new_tokens: never off the grammar
        assert row["sql"].upper().startswith("SELECT"), row
        assert matcher.consume_tokens(constraint.tokenizer_info.tokenize_str(row["sql"])), row
    summary = json.loads(files.infer_summary.read_text())
    assert summary["constrain"] == "grammar" and summary["grammar_rejected_tokens"] == 0
    assert summary["grammars_compiled"] == len({p.example.db_id for p in test}) > 1
    assert summary["grammar_compile_seconds"] > 0 and summary["grammar_masked_tokens"] > 0
    assert summary["grammar_mask_seconds_per_token"] > 0


def test_validation_decodes_under_each_val_databases_grammar(tmp_path):
    cfg = load_config(SMALL)
    run_prepare(cfg, tmp_path)
    files = RunFiles(tmp_path)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    scorer = ValidationScorer(cfg, files, tokenizer, torch.device("cpu"), dist_context())
    model = load_base_model(cfg.model, cfg.quantization, torch.device("cpu")).eval()
    try:
        found = scorer(model)
    finally:
        scorer.close()
    assert found["val_generated_examples"] == 4
    stats = scorer.decoding.constraint.stats
    val = read_prepared(files.split("val"))
    assert stats.grammars == len({p.example.db_id for p in val}) and stats.masked_tokens > 0
