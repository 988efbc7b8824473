"""The infer stage with execution-guided decoding on multi-table data (the bundled Spider-layout sample): each
question's candidates run on its own database, predictions.jsonl says which was kept and why, infer_summary.json
counts the changes and the time spent running candidates."""

from __future__ import annotations

import json

from conftest import NO_TABLE_SQL, ScriptedSqlModel, first_table

import experiments.stages.infer as infer
from experiments.config import load_config
from experiments.data.prepared import read_databases, read_prepared
from experiments.decoding.guided import EXECUTES, NONE_EXECUTES
from experiments.runs.files import RunFiles
from experiments.stages.prepare import run_prepare

GUIDED = ["experiment=spider_smoke", "tracking=none", "data_size.train=8", "data_size.val=4", "data_size.test=6",
          "inference.execution_guided=2", "inference.max_new_tokens=8", "stages=[infer]"]


def prepared(tmp_path):
    cfg = load_config(GUIDED)
    run_prepare(cfg, tmp_path)
    return cfg, RunFiles(tmp_path)


def rows_and_summary(files: RunFiles) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in files.predictions.read_text().splitlines()]
    return rows, json.loads(files.infer_summary.read_text())


def test_guided_infer_with_the_tiny_model_records_each_choice(tmp_path):
    cfg, files = prepared(tmp_path)
    infer.run_infer(cfg, tmp_path)
    rows, summary = rows_and_summary(files)
    assert [r["id"] for r in rows] == [p.example.id for p in read_prepared(files.split("test"))]
    for row in rows:
        assert row["candidate"] in (0, 1) and row["guided_reason"] in (EXECUTES, NONE_EXECUTES)
        assert ("top_sql" in row) == (row["candidate"] != 0)
    assert summary["execution_guided"] == 2 and summary["guided_changed"] == sum(r["candidate"] != 0 for r in rows)
    assert summary["guidance_seconds"] > 0


def test_guidance_keeps_the_candidate_that_runs_on_the_questions_database(tmp_path, monkeypatch):
    cfg, files = prepared(tmp_path)
    monkeypatch.setattr(infer, "load_inference_base",
                        lambda cfg, device, plan: ScriptedSqlModel(infer.load_tokenizer(cfg.model)))
    infer.run_infer(cfg, tmp_path)
    rows, summary = rows_and_summary(files)
    test = read_prepared(files.split("test"))
    databases = read_databases(files.databases_jsonl)
    # the questions are on several databases, and a count that runs on one question's fails on another's
    assert any(databases[q.example.db_id].table(first_table(p.prompt)) is None for p in test for q in test)
    for row, p in zip(rows, test, strict=True):
        table = first_table(p.prompt)
        assert row == {"id": p.example.id, "sql": f"SELECT count(*) FROM {table}", "candidate": 1,
                       "guided_reason": EXECUTES, "top_sql": NO_TABLE_SQL}
    assert summary["guided_changed"] == len(test) == 6 and summary["guidance_seconds"] > 0
