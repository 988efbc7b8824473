"""What an evaluation leaves behind: results, metrics, report, the official evaluator's files; and
predictions files that are wrong say where."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import players_table

from experiments.analysis.run_report import read_results
from experiments.data.prompt import render_sql
from experiments.data.records import DataError, Example, Query, Table
from experiments.evaluation import read_predictions, score
from experiments.fileio import write_jsonl
from experiments.stages.evaluate import write_outputs

TABLE = players_table(("Player", "No.", "School/Club Team", "Height (ft)"),
                      ("Antonio Lang", "Voshon Lenard", "Martin Lewis"))
EXAMPLES = [
    Example("test-0", TABLE.id, "What number did Antonio Lang wear?", Query(1, 0, ((0, 0, "Antonio Lang"),))),
    Example("test-1", TABLE.id, "Tallest player from Duke?", Query(3, 1, ((2, 0, "Duke"),))),
    Example("test-2", TABLE.id, "Who wore 32?", Query(0, 0, ((1, 0, 32),))),
    Example("test-3", TABLE.id, "Who is from Minnesota?", Query(0, 0, ((2, 0, "Minnesota"),))),
]
PREDICTIONS = {
    "test-0": render_sql(EXAMPLES[0].query, TABLE),
    "test-1": 'SELECT MIN("Height (ft)") FROM t WHERE "School/Club Team" = \'Duke\' AND Player = "x"',
    "test-2": "SELECT Player FROM t WHERE `No.` = 2",
    "ghost-7": "SELECT 1",
}
KEYS = {"id", "question", "gold_sql", "pred_sql", "exec_match", "lf_match", "error", "category"}


@pytest.fixture
def out(tmp_path: Path) -> tuple[Path, dict]:
    out_dir = tmp_path / "run"
    scored = score(EXAMPLES, {TABLE.id: TABLE}, PREDICTIONS, tmp_path / "run" / "data" / "tables.sqlite",
                   progress=False)
    write_outputs(out_dir, scored, EXAMPLES, {TABLE.id: TABLE})  # as the eval stage writes them
    return out_dir, scored.metrics


def test_results_and_metrics(out: tuple[Path, dict]) -> None:
    out_dir, metrics = out
    results = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [e.id for e in EXAMPLES]
    assert all(set(r) >= KEYS for r in results)
    categories = ["correct", "unknown_column", "wrong_where", "missing_prediction"]
    assert [r["category"] for r in results] == categories
    assert results[0]["gold_sql"] == render_sql(EXAMPLES[0].query, TABLE)
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics
    assert metrics["execution_accuracy"] == 0.25
    assert metrics["logical_form_accuracy"] == 0.25
    assert metrics["valid_sql_rate"] == 0.5
    assert metrics["n"] == 4
    assert metrics["unknown_prediction_ids"] == 1
    assert sum(metrics["categories"].values()) == 4
    assert metrics["eval_seconds"] >= 0


def test_report(out: tuple[Path, dict]) -> None:
    report = (out[0] / "report.md").read_text()
    assert "execution accuracy | 0.2500" in report
    assert "| unknown_column | 1 |" in report
    assert "### wrong_where (1)" in report
    assert "Who wore 32?" in report and "no such column: x" in report


def test_official_files_line_up(out: tuple[Path, dict]) -> None:
    out_dir = out[0]
    source = [json.loads(line) for line in (out_dir / "official_source.jsonl").read_text().splitlines()]
    preds = [json.loads(line) for line in (out_dir / "official_predictions.jsonl").read_text().splitlines()]
    tables = [json.loads(line) for line in (out_dir / "official_tables.jsonl").read_text().splitlines()]
    assert len(source) == len(preds) == len(EXAMPLES)
    assert source[0] == {"phase": 1, "table_id": TABLE.id, "question": EXAMPLES[0].question,
                         "sql": {"sel": 1, "agg": 0, "conds": [[0, 0, "Antonio Lang"]]}}
    assert preds[0] == {"query": {"sel": 1, "agg": 0, "conds": [[0, 0, "Antonio Lang"]]}}
    assert "error" in preds[1] and "error" in preds[3]
    assert preds[2] == {"query": {"sel": 0, "agg": 0, "conds": [[1, 0, 2]]}}
    assert tables == [TABLE.to_json()]
    conn = sqlite3.connect(out_dir / "official_tables.db")
    rows = conn.execute("SELECT col0, col1 FROM table_1_10015132_11 ORDER BY col1").fetchall()
    conn.close()
    assert rows[0] == ("voshon lenard", 2.0)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "predictions.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_read_predictions(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "test-0", "sql": "SELECT 1"}\n\n{"id": "test-1", "sql": ""}\n')
    assert read_predictions(path) == {"test-0": "SELECT 1", "test-1": ""}


def test_null_sql_is_one_missing_prediction_not_an_abort(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "test-0", "sql": null}\n{"id": "test-2", "sql": "SELECT Player FROM t"}\n')
    predictions = read_predictions(path, expected_ids={e.id for e in EXAMPLES})
    assert predictions == {"test-0": None, "test-2": "SELECT Player FROM t"}
    metrics = score(EXAMPLES, {TABLE.id: TABLE}, predictions, tmp_path / "db.sqlite", progress=False).metrics
    assert metrics["categories"]["missing_prediction"] == 3
    assert metrics["unknown_prediction_ids"] == 0 and metrics["warnings"] == []


@pytest.mark.parametrize(("text", "message"), [
    ("", "no predictions (the test split has 4 examples)"),
    ('{"id": "dev-0", "sql": "SELECT 1"}\n{"id": "dev-1", "sql": null}\n',
     "none of its 2 prediction ids is one of the 4 test example ids (expected e.g. 'test-0', 'test-1', 'test-2', "
     "got e.g. 'dev-0', 'dev-1')"),
])
def test_predictions_that_match_no_test_example_fail_naming_the_file(tmp_path: Path, text: str,
                                                                      message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as raised:
        read_predictions(path, expected_ids=[e.id for e in EXAMPLES])
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    listing = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="nothing to score"):
        score(EXAMPLES, {TABLE.id: TABLE}, read_predictions(path), tmp_path / "db.sqlite", progress=False)
    assert sorted(tmp_path.rglob("*")) == listing  # refused before any work


def test_unknown_prediction_ids_are_warned_about(tmp_path: Path, out: tuple[Path, dict],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    out_dir, metrics = out  # PREDICTIONS holds "ghost-7", which is no test example
    assert metrics["unknown_prediction_ids"] == 1
    assert metrics["warnings"] == ["1 of 4 predictions have ids that are not test examples and were ignored "
                                   "(e.g. 'ghost-7'): they may have been made for another split or data selection"]
    report = (out_dir / "report.md").read_text()
    assert "> **WARNING**: 1 of 4 predictions have ids that are not test examples" in report
    with caplog.at_level("WARNING"):
        score(EXAMPLES, {TABLE.id: TABLE}, PREDICTIONS, tmp_path / "db.sqlite", progress=False)
    assert "ghost-7" in caplog.text


FIRST = '{"id": "test-0", "sql": "SELECT 1"}\n'


@pytest.mark.parametrize(("text", "message"), [
    (FIRST + '{"id": "test-1", "sql": \n', "line 2: malformed JSON"),
    ('{"id": "test-0"}\n', "line 1: expected an object with keys 'id' and 'sql'"),
    ('["test-0", "SELECT 1"]\n', "line 1: expected a JSON object, got list"),
    ('{"id": "test-0", "sql": 42}\n', "line 1: 'sql' must be a string (or null: no prediction), not int"),
    ('{"id": ["test-0"], "sql": "SELECT 1"}\n', "line 1: 'id' must be a string (or an integer), not list"),
    ('{"id": "a", "sql": "x"}\n{"id": "b", "sql": "y"}\n{"id": "a", "sql": "z"}\n',
     "line 3: duplicate id 'a' (first seen on line 1)"),
    # issue 24: each of these ended the run with a bare traceback (UnicodeDecodeError, RecursionError, ValueError)
    (FIRST.encode() + b'{"id": "test-1", "sql": "SELECT \xe9"}\n', "line 2: not valid UTF-8 (byte 0xe9 at byte 33"),
    (FIRST + '{"id": "test-1", "sql": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "line 2: JSON nested too deeply"),
    (FIRST + '{"id": ' + "7" * 5_000 + ', "sql": "SELECT 1"}\n', "line 2: malformed JSON (a number of more than"),
    # ...and a key given twice was read last-wins, silently
    (FIRST + '{"id": "test-1", "sql": "SELECT 1", "sql": "SELECT 2"}\n', "line 2: key 'sql' appears twice"),
    (FIRST + '{"id": "test-1", "sql": "SELECT 1", "id": "test-2"}\n', "line 2: key 'id' appears twice"),
    ('{"id": "t\u0435st-0", "sql": "x"}\n{"id": "t\u0435st-0", "sql": "y"}\n',
     "line 2: duplicate id 't\\u0435st-0'"),  # a look-alike shown by its code points
], ids=["json", "keys", "list", "sql type", "id type", "duplicate id", "not utf-8", "nested", "long number",
        "two sql keys", "two id keys", "look-alike id"])
def test_read_predictions_errors_name_file_and_line(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as raised:
        read_predictions(path)
    assert str(raised.value).startswith(f"{path} line ")
    assert message in str(raised.value)


def test_a_bad_predictions_file_fails_the_eval_stage_before_it_writes_anything(tmp_path: Path) -> None:
    from experiments.config import ExperimentConfig
    from experiments.data.prepared import PreparedExample, write_prepared, write_tables
    from experiments.runs.files import RunFiles
    from experiments.stages.evaluate import run_eval

    files = RunFiles(tmp_path / "run")
    write_prepared(files.split("test"), [PreparedExample.build(e, TABLE) for e in EXAMPLES])
    write_tables(files.tables_jsonl, [TABLE])
    files.predictions.write_bytes(FIRST.encode() + b'{"id": "test-1", "sql": "SELECT \xff"}\n')
    before = sorted(p.relative_to(files.root) for p in files.root.rglob("*"))
    with pytest.raises(DataError, match=rf"^{re.escape(str(files.predictions))} line 2: not valid UTF-8"):
        run_eval(ExperimentConfig(), files.root)
    assert sorted(p.relative_to(files.root) for p in files.root.rglob("*")) == before  # nothing written or lost


def test_duplicate_example_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test-0"):
        score([EXAMPLES[0], EXAMPLES[0]], {TABLE.id: TABLE}, {}, tmp_path / "db.sqlite", progress=False)


def test_lone_surrogates_from_a_table_and_a_prediction_survive_every_output(tmp_path: Path) -> None:
    table = Table(id="1-2-3", header=("Name\udc80", "Score"), types=("text", "real"),
                  rows=(("caf\ud800", 1), ("plain", 2)))
    examples = [Example("test-0", table.id, "Score of caf\ud800?", Query(1, 0, ((0, 0, "caf\ud800"),))),
                Example("test-1", table.id, "Score of plain\udfff?", Query(1, 0, ((0, 0, "plain"),)))]
    predictions = {"test-0": render_sql(examples[0].query, table),  # right: the surrogate matches the table's
                   "test-1": "SELECT \"Score\" FROM t WHERE \"Name\udc80\" = 'caf\ud800' -- \udfff"}  # wrong row
    scored = score(examples, {table.id: table}, predictions, tmp_path / "db.sqlite", progress=False)
    write_outputs(tmp_path, scored, examples, {table.id: table})  # results, official files, analysis, metrics
    metrics = scored.metrics
    assert metrics["categories"]["correct"] == 1 and metrics["categories"]["wrong_where"] == 1
    results = read_results(tmp_path / "results.jsonl")
    assert results[1]["pred_sql"] == predictions["test-1"]  # kept exactly, escaped in the JSON
    for name in ("results.jsonl", "metrics.json", "report.md", "report.html", "analysis.json",
                 "official_source.jsonl", "official_predictions.jsonl", "official_tables.jsonl"):
        text = (tmp_path / name).read_bytes().decode("utf-8")  # valid UTF-8, or this raises
        if name.endswith(".jsonl"):
            [json.loads(line) for line in text.splitlines()]
        elif name.endswith(".json"):
            json.loads(text)
    for report in ("report.md", "report.html"):  # shown as escapes, not lost
        text = (tmp_path / report).read_text()
        assert "Score of plain\\udfff?" in text and "caf\\ud800" in text and "-- \\udfff" in text


def test_a_crash_while_writing_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    write_jsonl(path, [{"id": "old"}])

    def rows():
        yield {"id": "new"}
        raise RuntimeError("crash mid-file")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert path.read_text() == '{"id": "old"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # no temp file left either


def test_look_alike_unknown_ids_are_shown_by_their_code_points(tmp_path: Path) -> None:
    """`tеst-0` (a Cyrillic е) and `test-３` (a fullwidth digit) are not test-0 and test-3: the warning must not
    show them as if they were."""
    predictions = {"test-0": PREDICTIONS["test-0"], "t\u0435st-0": "SELECT 1", "test-\uff13": "SELECT 1"}
    scored = score(EXAMPLES, {TABLE.id: TABLE}, predictions, tmp_path / "db.sqlite", progress=False)
    write_outputs(tmp_path / "out", scored, EXAMPLES, {TABLE.id: TABLE})
    (warning,) = scored.metrics["warnings"]
    assert "(e.g. 't\\u0435st-0', 'test-\\uff13')" in warning
    assert "(e.g. 't\\u0435st-0', 'test-\\uff13')" in (tmp_path / "out" / "report.md").read_text()
