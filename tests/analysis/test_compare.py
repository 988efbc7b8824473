"""experiments-compare on hand-made run directories: paired statistics, fixed/broken examples, category changes,
fingerprint warnings, and runs found through MLflow by id or name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.analysis.compare_runs import build_comparison, main
from experiments.analysis.document import Alert, Document, TableBlock, to_html
from experiments.analysis.run_records import load_run
from experiments.analysis.stats import mcnemar
from experiments.data.fingerprints import examples_fingerprint, ids_fingerprint, prompt_fingerprint

IDS = [f"test-{i}" for i in range(6)]


def write_run(root: Path, exec_matches: list[bool], categories: list[str] | None = None, *, ids: list[str] = IDS,
              prompt: str | None = None, stages: tuple[str, ...] = ("prepare", "train", "infer", "eval"),
              mlflow_run_id: str | None = None) -> Path:
    """A run directory as the pipeline leaves it, with only the files the comparison reads."""
    categories = categories or ["correct" if m else "wrong_where" for m in exec_matches]
    examples = [{"id": i, "table_id": "1-1", "question": f"question <{i}>?", "sql": {"sel": 0, "agg": 0, "conds": []}}
                for i in ids]
    (root / "data").mkdir(parents=True)
    (root / "data" / "test.jsonl").write_text("".join(json.dumps({**e, "prompt": "p", "target": "t"}) + "\n"
                                                      for e in examples))
    (root / "data" / "report.json").write_text(json.dumps({
        "prompt_version": "v1", "prompt_fingerprint": prompt or prompt_fingerprint(),
        "subsets": {"test": {"drawn": len(ids), "ids_sha": ids_fingerprint(ids),
                             "examples_sha": examples_fingerprint(examples)},
                    "train": {"drawn": 100}}}))
    rows = [{"id": i, "question": f"question <{i}>?", "exec_match": m, "lf_match": m, "category": c}
            for i, m, c in zip(ids, exec_matches, categories, strict=True)]
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    n, hits = len(rows), sum(exec_matches)
    (root / "metrics.json").write_text(json.dumps({
        "execution_accuracy": hits / n, "logical_form_accuracy": hits / n, "valid_sql_rate": 1.0, "n": n,
        "categories": {c: categories.count(c) for c in set(categories)}}))
    seconds = {f"{s}_seconds": 1.5 for s in stages}
    (root / "run_summary.json").write_text(json.dumps({"status": "FINISHED", "mlflow_run_id": mlflow_run_id,
                                                       **seconds}))
    (root / "config.yaml").write_text(f"preset: {root.name}\nstages: [{', '.join(stages)}]\nadapter: null\n")
    if "train" in stages:
        (root / "train_summary.json").write_text(json.dumps({"train_examples": 100, "train_seconds": 12.0,
                                                             "peak_memory_gib": 3.25}))
    return root


def test_mcnemar_matches_hand_computed_values():
    exact = mcnemar(1, 9)  # two-sided exact binomial: 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert exact.method == "exact" and math.isclose(exact.p_value, 2 * (1 + 10) / 1024)
    assert mcnemar(0, 0).p_value == 1.0
    chi2 = mcnemar(10, 30)  # (|10 - 30| - 1)^2 / 40 = 9.025
    assert chi2.method == "chi2" and math.isclose(chi2.statistic, 9.025)
    assert math.isclose(chi2.p_value, math.erfc(math.sqrt(9.025 / 2)))
    tie = mcnemar(20, 20)  # no evidence either way: the continuity correction must not go below zero
    assert tie.method == "chi2" and tie.statistic == 0 and tie.p_value == 1.0


def test_compare_two_runs_gives_paired_table_fixed_broken_and_category_changes(tmp_path):
    a = write_run(tmp_path / "base", [True, False, False, True, False, True],
                  ["correct", "wrong_where", "syntax_error", "correct", "wrong_where", "correct"])
    b = write_run(tmp_path / "tuned", [True, True, True, False, False, True],
                  ["correct", "correct", "correct", "wrong_select_column", "wrong_where", "correct"])
    out = tmp_path / "cmp"
    assert main([str(a), str(b), "--out", str(out), "--no-mlflow"]) == 0
    data = json.loads((out / "comparison.json").read_text())
    assert data["warnings"] == []
    (pair,) = data["pairs"]
    assert [e["id"] for e in pair["fixed"]] == ["test-1", "test-2"]
    assert [e["id"] for e in pair["broken"]] == ["test-3"]
    assert pair["fixed"][0]["question"] == "question <test-1>?"
    assert pair["mcnemar"]["method"] == "exact" and math.isclose(pair["mcnemar"]["p_value"], 1.0)
    assert pair["categories"]["correct"] == {"a": 3, "b": 4, "change": 1}
    assert pair["categories"]["syntax_error"] == {"a": 1, "b": 0, "change": -1}
    assert pair["categories"]["wrong_select_column"] == {"a": 0, "b": 1, "change": 1}
    assert pair["categories"]["wrong_where"] == {"a": 2, "b": 1, "change": -1}
    runs = data["runs"]
    assert runs[0]["execution_accuracy"] == 0.5 and runs[1]["execution_accuracy"] == 4 / 6
    low, high = runs[0]["execution_accuracy_ci95"]
    assert low < 0.5 < high
    assert runs[0]["train_seconds"] == 12.0 and runs[0]["peak_memory_gib"] == 3.25

    md = (out / "comparison.md").read_text()
    assert "WARNING" not in md
    assert "| test-1 | question &lt;test-1&gt;? |" in md and "+16.67 pts" in md  # escaped for Markdown viewers
    assert "| syntax_error | 1 | 0 | -1 |" in md
    html = (out / "comparison.html").read_text()
    assert "question &lt;test-1&gt;?" in html and "question <test-1>" not in html  # escaped
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained


def test_zero_shot_run_is_compared_like_any_other(tmp_path):
    base = write_run(tmp_path / "zero", [False] * 6, stages=("prepare", "infer", "eval"))
    tuned = write_run(tmp_path / "tuned", [True, True, False, False, False, False])
    doc, data = build_comparison([load_run(base), load_run(tuned)])
    assert data["runs"][0]["zero_shot"] and data["runs"][0]["train_examples"] is None
    assert not data["runs"][1]["zero_shot"]
    assert data["pairs"][0]["mcnemar"]["fixed"] == 2 and data["pairs"][0]["mcnemar"]["broken"] == 0


def test_fingerprint_mismatch_warns_and_skips_paired_stats_across_test_sets(tmp_path):
    a = write_run(tmp_path / "a", [True] * 6)
    b = write_run(tmp_path / "b", [False] * 6, prompt="0123456789abcdef")
    c = write_run(tmp_path / "c", [True, False, True], ids=["test-7", "test-8", "test-9"])
    doc, data = build_comparison([load_run(a), load_run(b), load_run(c)])
    titles = [w["title"] for w in data["warnings"]]
    assert "runs differ in prompt fingerprint" in titles
    assert "runs were scored on different test examples" in titles
    prompt_warning = next(w for w in data["warnings"] if "prompt" in w["title"])
    assert any("#2 b" in line and "0123456789abcdef" in line for line in prompt_warning["lines"])
    pairs = {(p["a"], p["b"]): p for p in data["pairs"]}
    assert pairs[(1, 2)]["skipped"] is None  # same test ids: paired, but flagged above
    assert "different test examples" in pairs[(1, 3)]["skipped"]
    assert "mcnemar" not in pairs[(2, 3)]
    assert isinstance(doc.blocks[0], Alert)  # the warnings come first
    assert data["runs"][2]["execution_accuracy"] == 2 / 3  # per-run metrics still shown


def test_same_ids_different_examples_warn(tmp_path):
    a = write_run(tmp_path / "a", [True] * 6)
    b = write_run(tmp_path / "b", [True] * 6)
    lines = (b / "data" / "test.jsonl").read_text().replace("question <test-0>?", "another question?")
    (b / "data" / "test.jsonl").write_text(lines)
    _, data = build_comparison([load_run(a), load_run(b)])
    assert [w["title"] for w in data["warnings"]] == ["runs' test examples differ in content"]
    assert "different examples" in data["pairs"][0]["skipped"]


def test_unknown_run_is_a_clear_error(tmp_path, capsys):
    a = write_run(tmp_path / "a", [True] * 6)
    assert main([str(a), str(tmp_path / "missing"), "--no-mlflow", "--out", str(tmp_path / "o")]) == 2
    assert "missing: not a run directory" in capsys.readouterr().err


def test_html_escapes_everything():
    doc = Document("<t>").add(Alert("<w>", ("<l>",)), TableBlock(("<h>",), (("<v>",),)))
    html = to_html(doc)
    assert "<t>" not in html and "<w>" not in html and "<l>" not in html and "<v>" not in html


@pytest.fixture
def mlflow_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("text2sql-lora", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client, experiment


def test_runs_resolved_by_mlflow_name_and_id_and_comparison_logged(tmp_path, mlflow_store):
    uri, client, experiment = mlflow_store
    base_dir, tuned_dir = tmp_path / "runs" / "base", tmp_path / "runs" / "tuned"
    base = client.create_run(experiment, run_name="zero-shot-base", tags={"run_dir": str(base_dir)})
    tuned = client.create_run(experiment, run_name="baseline", tags={"run_dir": str(tuned_dir)})
    write_run(base_dir, [False] * 6, stages=("prepare", "infer", "eval"), mlflow_run_id=base.info.run_id)
    write_run(tuned_dir, [True, True, True, False, False, False], mlflow_run_id=tuned.info.run_id)
    out = tmp_path / "cmp"
    assert main(["zero-shot-base", tuned.info.run_id, "--tracking-uri", uri, "--out", str(out)]) == 0
    data = json.loads((out / "comparison.json").read_text())
    assert [r["run_dir"] for r in data["runs"]] == [str(base_dir), str(tuned_dir)]
    assert [e["id"] for e in data["pairs"][0]["fixed"]] == ["test-0", "test-1", "test-2"]
    # Logged with its figures in an experiment of its own, not on top of the training runs' list
    assert not client.search_runs([experiment], filter_string="tags.kind = 'comparison'")
    comparisons = client.get_experiment_by_name("text2sql-lora comparisons").experiment_id
    (logged,) = client.search_runs([comparisons], filter_string="tags.kind = 'comparison'")
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"comparison.md", "comparison.html", "comparison.json"} <= artifacts
    assert logged.data.metrics["run_1/execution_accuracy"] == 0.0 and logged.data.metrics["run_2/execution_accuracy"] \
        == 0.5
    assert logged.data.metrics["pair_1_2/fixed"] == 3 and logged.data.metrics["pair_1_2/broken"] == 0
    assert 0 < logged.data.metrics["pair_1_2/p_value"] < 1
    assert logged.data.tags["compared_runs"] == f"{base.info.run_id},{tuned.info.run_id}"


def test_ambiguous_or_unknown_mlflow_name_is_a_clear_error(tmp_path, mlflow_store, capsys):
    uri, client, experiment = mlflow_store
    for _ in range(2):
        client.create_run(experiment, run_name="baseline", tags={"run_dir": str(tmp_path / "x")})
    assert main(["baseline", "nothing-like-it", "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 2
    assert "baseline: 2 MLflow runs have that name" in capsys.readouterr().err
    write_run(tmp_path / "a", [True] * 6)
    assert main([str(tmp_path / "a"), "nothing-like-it", "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 2
    assert "nothing-like-it: not a run directory, nor the id or name" in capsys.readouterr().err


def test_run_whose_directory_is_gone_is_read_from_its_mlflow_artifacts(tmp_path, mlflow_store):
    uri, client, experiment = mlflow_store
    staging = write_run(tmp_path / "staging", [True, False, True, False, True, False])
    run = client.create_run(experiment, run_name="moved", tags={"run_dir": str(tmp_path / "elsewhere")})
    for name in ("config.yaml", "run_summary.json", "metrics.json", "results.jsonl", "train_summary.json"):
        client.log_artifact(run.info.run_id, str(staging / name))
    client.log_artifact(run.info.run_id, str(staging / "data" / "report.json"), "data")
    other = write_run(tmp_path / "other", [True] * 6)
    out = tmp_path / "cmp"
    assert main([run.info.run_id, str(other), "--tracking-uri", uri, "--out", str(out)]) == 0
    data = json.loads((out / "comparison.json").read_text())
    assert data["runs"][0]["execution_accuracy"] == 0.5
    assert [e["id"] for e in data["pairs"][0]["fixed"]] == ["test-1", "test-3", "test-5"]


@pytest.mark.slow
def test_runs_that_differ_only_in_decoding_are_paired(tmp_path):
    """Decoding settings are not part of the prompt: the zero-shot base model decoded without and with the grammar
    is scored on the same test examples under the same prompt fingerprint, so the comparison pairs the two."""
    from experiments.config import load_config
    from experiments.pipeline import run_pipeline

    runs = []
    for constrain in ("none", "grammar"):
        cfg = load_config(["experiment=smoke",
                           "tracking=none", "stages=[prepare,infer,eval]", f"inference.constrain={constrain}",
                           "data_size.train=8", "data_size.val=4", "data_size.test=6", "inference.max_new_tokens=6"])
        run_pipeline(cfg, tmp_path / constrain)
        runs.append(tmp_path / constrain)
    out = tmp_path / "cmp"
    assert main([*map(str, runs), "--out", str(out), "--no-mlflow"]) == 0
    data = json.loads((out / "comparison.json").read_text())
    assert data["warnings"] == []
    (pair,) = data["pairs"]
    assert pair["n"] == 6
