"""Execution evaluation: score predictions by running them (through experiments.sql, re-exported here). Writes no
file: the eval stage writes the outputs (stages/evaluate.py).

    materialize_tables(tables, run_dir / "data" / "tables.sqlite")        # once per run
    predictions = read_predictions(path, expected_ids={e.id for e in examples})   # no match: DataError
    scored = score(examples, tables, predictions, db_path)  # queries in a killable worker
    scored.metrics, scored.rows()                            # the metrics, results.jsonl's rows

Multi-table datasets (Spider, BIRD), each question on its own database file (multi_table_scoring.py):

    scored = score_multi_table(examples, databases, predictions, semantics="spider")
"""

from experiments.evaluation.categories import CATEGORIES
from experiments.evaluation.logical_form import logical_forms_match, parse_logical_form
from experiments.evaluation.multi_table_scoring import MultiTableResult, MultiTableScored, score_multi_table
from experiments.evaluation.results_compare import normalise_rows, results_match
from experiments.evaluation.scoring import ExampleResult, Scored, read_predictions, score
from experiments.sql.errors import EvalError
from experiments.sql.executor import DatabaseExecutors, SafeExecutor
from experiments.sql.sqlite_tables import materialize_tables, sqlite_column_names, sqlite_table_name

__all__ = [
    "CATEGORIES",
    "DatabaseExecutors",
    "EvalError",
    "ExampleResult",
    "MultiTableResult",
    "MultiTableScored",
    "SafeExecutor",
    "Scored",
    "logical_forms_match",
    "materialize_tables",
    "normalise_rows",
    "parse_logical_form",
    "read_predictions",
    "results_match",
    "score",
    "score_multi_table",
    "sqlite_column_names",
    "sqlite_table_name",
]
