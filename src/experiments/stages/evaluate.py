"""Stage 4: score predictions by executing them (and by logical form) against the test split's tables; for
multi-table data (Spider, BIRD), against each question's database (`run_eval_multi_table`).

Reads data/test.jsonl, data/tables.jsonl, data/tables.sqlite and predictions.jsonl (or eval.predictions=FILE:
any JSONL of {"id", "sql"}, no model needed); writes results.jsonl and the official evaluator's files, then the
failure analysis: analysis.json, plots/*.png (loss curves when the run has a trainer_state.json), report.md and a
self-contained report.html; metrics.json last, so that its presence says the evaluation finished (an interrupted
one leaves none). Each file is written once, atomically, here (`write_outputs`): scoring itself writes nothing.
To MLflow: the test metrics with their 95% intervals, the categories, counts as params, these files and plots/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.breakdown import interval_metrics
from experiments.analysis.multi_table_report import write_multi_table_analysis
from experiments.analysis.run_facts import run_facts
from experiments.analysis.run_report import write_run_analysis
from experiments.config import ExperimentConfig
from experiments.data.prepared import read_databases, read_prepared, read_tables
from experiments.data.records import Example, Table
from experiments.evaluation import Scored, read_predictions, score, score_multi_table
from experiments.evaluation.guidance_counts import (
    guidance_metrics,
    multi_table_guidance_metrics,
    read_top_candidates,
)
from experiments.evaluation.official_format import write_official_files
from experiments.evaluation.suite_databases import find_suite_databases
from experiments.fileio import write_json, write_jsonl
from experiments.runs.files import RunFiles
from experiments.sql.sqlite_tables import write_tables_sqlite
from experiments.stages.contract import Artifact, StageResult
from experiments.tracking.metric_names import eval_logged


def _write_in_order(files: RunFiles, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any],
                    write_analysis: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The one order an evaluation's outputs are written in, each once and atomically: results.jsonl, then what
    `write_analysis` writes, then metrics.json, last: its presence says the evaluation finished."""
    write_jsonl(files.results, rows)
    written = write_analysis()
    write_json(files.metrics, metrics)
    return {"results": files.results, "metrics_json": files.metrics, **written}


def write_outputs(out_dir: Path, scored: Scored, examples: Sequence[Example], tables: Mapping[str, Table],
                  metrics: Mapping[str, Any] | None = None, *, trainer_state: Path | None = None,
                  facts: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Write a WikiSQL evaluation's outputs into `out_dir` (_write_in_order): results.jsonl, the official
    evaluator's files, the analysis (analysis.json, plots/, report.md, report.html), then metrics.json (`metrics`,
    by default the scored ones). Returns the analysis and the paths written."""
    files = RunFiles(out_dir)
    rows = scored.rows()
    final = scored.metrics if metrics is None else metrics

    def write_analysis() -> dict[str, Any]:
        write_official_files(examples, tables, scored.official, files.root)
        return write_run_analysis(files.root, final, rows, examples, tables, trainer_state, facts=facts)

    return _write_in_order(files, rows, final, write_analysis)


def _predictions_path(cfg: ExperimentConfig, files: RunFiles) -> Path:
    path = Path(cfg.eval.predictions).expanduser() if cfg.eval.predictions else files.predictions
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions to score; run the infer stage or pass "
                                "eval.predictions=FILE (JSONL of {\"id\", \"sql\"})")
    return path


def run_eval_multi_table(cfg: ExperimentConfig, files: RunFiles) -> dict:
    """Spider, BIRD: each prediction and gold query run on the question's database (read-only, immutable, in the
    sandbox's workers), results compared under eval.compare's semantics (the source's own by default), and with
    eval.test_suite_path on every test-suite variant of that database too (test_suite_accuracy); then
    results.jsonl, analysis.json, report.md, report.html and metrics.json (last), each written once."""
    examples = [p.example for p in read_prepared(files.split("test"))]
    predictions_path = _predictions_path(cfg, files)
    predictions = read_predictions(predictions_path, expected_ids={e.id for e in examples})  # fails before work
    databases = read_databases(files.databases_jsonl)
    suite = None if cfg.eval.test_suite_path is None else \
        find_suite_databases(cfg.eval.test_suite_path, {e.db_id for e in examples})  # fails before work
    scoring = cfg.eval.multi_table_scoring(cfg.data.source)
    scored = score_multi_table(examples, databases, predictions, test_suite=suite, **scoring)
    rows = scored.rows()
    metrics = scored.metrics
    top_sql = read_top_candidates(predictions_path)
    if top_sql is not None:  # execution-guided decoding: did keeping another candidate fix or break answers?
        metrics.update(multi_table_guidance_metrics(examples, databases, rows, top_sql, **scoring))
    facts = run_facts(cfg, files)
    written = _write_in_order(files, rows, metrics,
                              lambda: write_multi_table_analysis(files.root, metrics, rows, facts=facts))
    return {"metrics": metrics, **written}


def run_eval(cfg: ExperimentConfig, run_dir: Path) -> dict:
    files = RunFiles(run_dir)
    if cfg.data.source.multi_table:
        return run_eval_multi_table(cfg, files)
    test = read_prepared(files.split("test"))
    examples = [p.example for p in test]
    predictions_path = _predictions_path(cfg, files)
    predictions = read_predictions(predictions_path, expected_ids={e.id for e in examples})  # fails before work
    tables = read_tables(files.tables_jsonl)
    if not files.tables_sqlite.is_file():
        write_tables_sqlite(files.tables_sqlite, tables.values())
    scored = score(examples, tables, predictions, files.tables_sqlite, timeout_s=cfg.eval.timeout_s,
                   max_rows=cfg.eval.max_rows)
    metrics = scored.metrics
    top_sql = read_top_candidates(predictions_path)
    if top_sql is not None:  # execution-guided decoding: did keeping another candidate fix or break answers?
        metrics.update(guidance_metrics(examples, tables, scored.rows(), top_sql, files.tables_sqlite,
                                        timeout_s=cfg.eval.timeout_s, max_rows=cfg.eval.max_rows))
    trainer_state = files.trainer_state if files.trainer_state.is_file() else None
    written = write_outputs(files.root, scored, examples, tables, metrics, trainer_state=trainer_state,
                            facts=run_facts(cfg, files))
    return {"metrics": metrics, **written}


def run(cfg: ExperimentConfig, files: RunFiles, tracker=None) -> StageResult:
    """The stage (stages/contract.py): the scores; the test metrics with their intervals, a `warning` tag for
    prediction ids that are no test example's, the outputs and plots/ for MLflow."""
    result = run_eval(cfg, files.root)
    metrics = result["metrics"]
    # loud in the run list too, not only in the report
    tags = {"warning": "; ".join(metrics.get("warnings", []))} if metrics.get("unknown_prediction_ids") else {}
    intervals = interval_metrics(result["analysis"])
    logged, counts = eval_logged(metrics, intervals)
    artifacts = tuple(Artifact(path) for path in (files.results, files.metrics, files.report_md, files.report_html,
                                                   files.analysis_json))
    return StageResult(summary={**{k: v for k, v in metrics.items() if not isinstance(v, dict)}, **intervals},
                       metrics=logged, params=counts, tags=tags,
                       artifacts=(*artifacts, Artifact(files.plots_dir, "plots")))  # plots/ logged as plots/*.png
