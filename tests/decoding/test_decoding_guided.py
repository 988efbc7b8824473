"""Execution-guided selection on hand-made candidates: a candidate that fails or returns nothing (or only NULL) is
skipped for the next one; when none runs, the model's top candidate stays. Candidates never touch the table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from experiments.data.records import Table
from experiments.decoding.guided import EXECUTES, NONE_EXECUTES, TableRunner, choose
from experiments.evaluation import SafeExecutor, materialize_tables

TABLE = Table(id="1-10015132-11", header=("Player", "No.", "School/Club Team"), types=("text", "real", "text"),
              rows=(("Antonio Lang", 21, "Duke"), ("Voshon Lenard", 2, "Minnesota"), ("Art Long", 42, None)))


@pytest.fixture
def executor(tmp_path: Path):
    db = tmp_path / "tables.sqlite"
    materialize_tables([TABLE], db)
    with SafeExecutor(db, timeout_s=1.0) as ex:
        yield TableRunner(ex), db


def test_errors_and_empty_results_are_skipped_for_the_next_candidate(executor):
    ex, _ = executor
    candidates = [['SELECT "Nmae" FROM "t"',                                    # unknown column: an error
                   'SELECT "Player" FROM "t" WHERE "No." = 99',                 # runs, returns no row
                   'SELECT MAX("No.") FROM "t" WHERE "Player" = \'nobody\'',    # runs, returns only NULL
                   'SELECT "Player" FROM "t" WHERE "No." = 21',                 # the first that answers
                   'SELECT "Player" FROM "t"']]
    (guided,) = choose(candidates, [TABLE], ex)
    assert (guided.index, guided.reason) == (3, EXECUTES)


def test_the_top_candidate_stays_when_it_runs_or_when_none_does(executor):
    ex, _ = executor
    runs = [['SELECT COUNT("Player") FROM "t"', 'SELECT "Player" FROM "t"']]
    none = [['SELECT "Nmae" FROM "t"', 'DROP TABLE "t"', 'SELECT "Player" FROM "t" WHERE "No." > 100']]
    top, fallback = choose(runs + none, [TABLE, TABLE], ex)
    assert (top.index, top.reason) == (0, EXECUTES)
    assert (fallback.index, fallback.reason) == (0, NONE_EXECUTES) and "Nmae" in fallback.detail


def test_hostile_candidates_change_nothing(executor):
    ex, db = executor
    before = sqlite3.connect(db).execute("SELECT * FROM sqlite_master").fetchall()
    hostile = [["DELETE FROM t", "ATTACH DATABASE '/tmp/x.db' AS x", "PRAGMA writable_schema=1",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
                'SELECT "Player" FROM "t" WHERE "No." = 2']]
    (guided,) = choose(hostile, [TABLE], ex)
    assert guided.index == 4
    assert sqlite3.connect(db).execute("SELECT * FROM sqlite_master").fetchall() == before
    assert not Path("/tmp/x.db").exists()


def test_the_eval_stage_counts_what_guidance_fixed_and_broke(tmp_path):
    import json

    from experiments.config import load_config
    from experiments.data.prepared import read_prepared
    from experiments.runs.files import RunFiles
    from experiments.stages.evaluate import run_eval
    from experiments.stages.prepare import run_prepare

    cfg = load_config(["experiment=smoke", "tracking=none", "data_size.train=4", "data_size.val=2", "data_size.test=3"])
    run_prepare(cfg, tmp_path)
    files = RunFiles(tmp_path)
    test = read_prepared(files.split("test"))
    rows = [  # guidance kept a right answer over a wrong top one; a wrong one over a right top; nothing changed
        {"id": test[0].example.id, "sql": test[0].target, "candidate": 2, "guided_reason": "executes",
         "top_sql": 'SELECT "no such column" FROM "t"'},
        {"id": test[1].example.id, "sql": 'SELECT "nope" FROM "t"', "candidate": 1, "guided_reason": "executes",
         "top_sql": test[1].target},
        {"id": test[2].example.id, "sql": test[2].target, "candidate": 0, "guided_reason": "executes"},
    ]
    files.predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = run_eval(cfg, tmp_path)["metrics"]
    assert (metrics["guided_changed"], metrics["guided_fixed"], metrics["guided_broke"]) == (2, 1, 1)
    assert json.loads(files.metrics.read_text())["guided_fixed"] == 1
    assert "execution-guided: another candidate kept | 2 (fixed 1, broke 1" in files.report_md.read_text()
