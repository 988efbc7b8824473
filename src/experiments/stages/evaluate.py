"""Stage 4: score predictions by executing them (and by logical form) against the test split's tables.

Reads data/test.jsonl, data/tables.jsonl, data/tables.sqlite and predictions.jsonl (or eval.predictions=FILE:
any JSONL of {"id", "sql"}, no model needed); writes results.jsonl and the official evaluator's files, then the
failure analysis: analysis.json, plots/*.png (loss curves when the run has a trainer_state.json), report.md and a
self-contained report.html; metrics.json last, so that its presence says the evaluation finished (an interrupted
one leaves none). Each file is written once, atomically.
"""

from __future__ import annotations

from pathlib import Path

from experiments.analysis.run_report import run_facts, write_run_analysis
from experiments.config import ExperimentConfig
from experiments.data.jsonl import write_json
from experiments.data.prepared import read_prepared, read_tables
from experiments.evaluation import read_predictions, score
from experiments.evaluation.guidance_counts import guidance_metrics, read_top_candidates
from experiments.evaluation.scoring import write_scored
from experiments.runs.files import RunFiles
from experiments.sql.sqlite_tables import write_tables_sqlite


def run_eval(cfg: ExperimentConfig, run_dir: Path) -> dict:
    files = RunFiles(run_dir)
    test = read_prepared(files.split("test"))
    examples = [p.example for p in test]
    predictions_path = Path(cfg.eval.predictions).expanduser() if cfg.eval.predictions else files.predictions
    if not predictions_path.is_file():
        raise FileNotFoundError(f"{predictions_path}: no predictions to score; run the infer stage or pass "
                                "eval.predictions=FILE (JSONL of {\"id\", \"sql\"})")
    predictions = read_predictions(predictions_path, expected_ids={e.id for e in examples})  # fails before work
    tables = read_tables(files.tables_jsonl)
    if not files.tables_sqlite.is_file():
        write_tables_sqlite(files.tables_sqlite, tables.values())
    scored = score(examples, tables, predictions, files.tables_sqlite, timeout_s=cfg.eval.timeout_s,
                   max_rows=cfg.eval.max_rows)
    results = write_scored(scored, examples, tables, files.root)
    metrics = scored.metrics
    top_sql = read_top_candidates(predictions_path)
    if top_sql is not None:  # execution-guided decoding: did keeping another candidate fix or break answers?
        metrics.update(guidance_metrics(examples, tables, results, top_sql, files.tables_sqlite,
                                        timeout_s=cfg.eval.timeout_s, max_rows=cfg.eval.max_rows))
    trainer_state = files.trainer_state if files.trainer_state.is_file() else None
    written = write_run_analysis(files.root, metrics, results, examples, tables, trainer_state,
                                 facts=run_facts(cfg, files))
    write_json(files.metrics, metrics)  # last: its presence says the evaluation finished
    return {"metrics": metrics, "results": files.results, **written}
