"""Scoring a predictions file needs no model: `experiments stages='[prepare,eval]' eval.predictions=FILE`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.config import DataConfig
from experiments.data.prompt import render_sql
from experiments.data.sources import load_source
from experiments.evaluation import materialize_tables, score

SAMPLE = load_source(DataConfig())


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_gold_sql_of_every_sample_example_scores_one(tmp_path, split):
    data = SAMPLE[split]
    gold = {e.id: render_sql(e.query, data.tables[e.table_id]) for e in data.examples}
    db = tmp_path / "tables.sqlite"
    materialize_tables(data.tables.values(), db)
    metrics = score(data.examples, data.tables, gold, db, progress=False).metrics
    assert metrics["n"] == len(data.examples) > 0
    assert metrics["execution_accuracy"] == 1.0
    assert metrics["logical_form_accuracy"] == 1.0
    assert metrics["valid_sql_rate"] == 1.0


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_prepare_and_eval_score_a_predictions_file_from_an_official_directory(tmp_path, release_dir):
    predictions = tmp_path / "preds.jsonl"
    # test-0 right (other quoting, case, table name), test-1 wrong column, test-2 hostile, test-3 missing
    predictions.write_text("\n".join(json.dumps(p) for p in [
        {"id": "test-0", "sql": "select `No.` from players where player = 'ANTONIO LANG';"},
        {"id": "test-1", "sql": 'SELECT "Player" FROM "t" WHERE "Player" = \'voshon lenard\''},
        {"id": "test-2", "sql": "DROP TABLE t"},
    ]) + "\n")
    result = run_cli("experiment=smoke", "stages=[prepare,eval]", f"eval.predictions={predictions}", "data=official",
                     f"data.path={release_dir}", "data_size.train=null", "data_size.val=null", "data_size.test=null",
                     "tracking=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n"] == 4
    assert metrics["execution_accuracy"] == 0.25
    results = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "results.jsonl").read_text().splitlines())}
    assert results["test-0"]["exec_match"] and results["test-0"]["lf_match"]
    assert results["test-1"]["category"] == "wrong_select_column"
    assert results["test-2"]["category"] == "forbidden_statement"
    assert results["test-3"]["category"] == "missing_prediction"


def test_bad_config_key_fails_before_any_work(tmp_path):
    result = run_cli("experiment=smoke", "data_size.trian=5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "data_size.trian" in result.stderr
    assert not (tmp_path / "run" / "data").exists()


def test_unreachable_tracking_server_fails_at_start_naming_the_uri(tmp_path):
    result = run_cli("experiment=smoke",
                     "tracking.uri=http://127.0.0.1:9", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "http://127.0.0.1:9" in result.stderr and "unreachable" in result.stderr
    assert not (tmp_path / "run" / "data").exists()  # nothing ran


def test_a_notebook_preset_offline_fails_in_prepare_with_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline machine with an empty Hugging Face cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = run_cli("experiment=baseline", "tracking=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "stage prepare: starting" in output and "stage train" not in output  # no model was loaded
    assert "data=official data.path=DIR_OR_TARBALL" in output and "HF_HUB_OFFLINE=1" in output
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert summary["status"] == "FAILED"


def test_an_added_key_is_refused_like_a_typo(tmp_path):
    result = run_cli("experiment=smoke",
                     "+training.learnig_rate=1e-3", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "config error: training.learnig_rate: not a config key; did you mean training.learning_rate?" in \
        result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "data").exists()


def test_predictions_for_other_ids_fail_naming_the_file_instead_of_scoring_zero(tmp_path, release_dir):
    predictions = tmp_path / "dev_preds.jsonl"
    predictions.write_text('{"id": "dev-0", "sql": "SELECT 1"}\n{"id": "dev-1", "sql": null}\n')
    result = run_cli("experiment=smoke", "stages=[prepare,eval]", f"eval.predictions={predictions}", "data=official",
                     f"data.path={release_dir}", "data_size.train=null", "data_size.val=null", "data_size.test=null",
                     "tracking=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert f"{predictions}: none of its 2 prediction ids is one of the 4 test example ids" in result.stderr
    assert "'test-0'" in result.stderr and "'dev-0'" in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_help_names_the_project_presets_groups_and_examples(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith("experiments: LoRA fine-tuning")
    for expected in ("quickstart the default: SmolLM2-135M-Instruct", "smoke", "learn", "baseline", "tweaked",
                     "extended", "scaling", "model: mistral_7b, smollm2_135m, tiny_mistral",
                     "hydra/launcher: basic", "local_parallel", "slurm", "experiments -m experiment=smoke",
                     "sqlite:///<outputs_dir>/mlflow.db"):
        assert expected in text, expected
