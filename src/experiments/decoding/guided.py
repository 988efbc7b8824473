"""Execution-guided decoding (Wang et al., 2018): of a question's k candidates, taken in order of model score, keep
the first that runs on the question's own table without error and returns a non-empty, non-NULL result; when none
does, keep the top candidate.

Candidates are untrusted SQL: each goes through the evaluator's checks (one read-only SELECT, one table, real
columns: evaluation.safe_sql) and runs in its sandboxed, time- and memory-limited executor. Nothing about the gold
query is used; only the table the question is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from experiments.data.records import Table
from experiments.evaluation.results_compare import is_empty
from experiments.sql.errors import EvalError
from experiments.sql.executor import SafeExecutor
from experiments.sql.safe_sql import parse_single_query, prepare_query
from experiments.sql.sqlite_tables import fold_identifier, sqlite_column_names, sqlite_table_name

EXECUTES = "executes"  # the kept candidate ran and returned a non-empty, non-NULL result
NONE_EXECUTES = "none_executes"  # no candidate did: the top one is kept


@dataclass(frozen=True)
class Guided:
    """The kept candidate (`index` 0 is the model's top) and why: EXECUTES, or NONE_EXECUTES with the top
    candidate's failure."""

    index: int
    reason: str
    detail: str = ""


def _bound(sql: str, table_name: str, columns: frozenset[str]) -> str | EvalError:
    """The candidate as the executor runs it, or why it cannot run."""
    try:
        return prepare_query(sql, parse_single_query(sql), table_name, columns)
    except EvalError as error:
        return error
    except Exception as error:  # a dependency's oddity must not stop generation
        return EvalError("other", f"{type(error).__name__}: {error}")


def choose(candidates: Sequence[Sequence[str]], tables: Sequence[Table], executor: SafeExecutor) -> list[Guided]:
    """For each question (its candidates in model-score order, and its table), the candidate to keep. All
    candidates of the call go to the executor in one request."""
    queries: list[tuple[str, str]] = []
    slots: list[list[int | EvalError]] = []
    for sqls, table in zip(candidates, tables, strict=True):
        name = sqlite_table_name(table.id)
        columns = frozenset(fold_identifier(c) for c in sqlite_column_names(table.header))
        row: list[int | EvalError] = []
        for sql in sqls:
            bound = _bound(sql, name, columns)
            if isinstance(bound, EvalError):
                row.append(bound)
            else:
                row.append(len(queries))
                queries.append((bound, name))
        slots.append(row)
    answers = executor.execute_many(queries) if queries else []
    chosen = []
    for row in slots:
        outcomes = [slot if isinstance(slot, EvalError) else answers[slot] for slot in row]
        index = next((i for i, rows in enumerate(outcomes) if not isinstance(rows, EvalError) and not is_empty(rows)),
                     None)
        if index is not None:
            chosen.append(Guided(index, EXECUTES))
            continue
        top = outcomes[0] if outcomes else None
        detail = str(top) if isinstance(top, EvalError) else "empty or NULL result" if top is not None else ""
        chosen.append(Guided(0, NONE_EXECUTES, detail))
    return chosen
