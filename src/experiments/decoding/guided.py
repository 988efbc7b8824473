"""Execution-guided decoding (Wang et al., 2018): of a question's k candidates, taken in order of model score, keep
the first that runs on the question's own table or database without error and returns a non-empty, non-NULL result;
when none does, keep the top candidate.

Candidates are untrusted SQL: each goes through the evaluator's checks and runs in its sandboxed, time- and
memory-limited executor. Where they run is a `CandidateRunner`: WikiSQL's `TableRunner` binds each candidate to the
question's one table (one read-only SELECT, real columns: sql.safe_sql.prepare_query) in the shared tables file;
Spider's and BIRD's `DatabaseRunner` runs it as written on the question's own database file (one read-only query:
sql.safe_sql.checked_database_query, as multi-table scoring checks it) in a pool of workers, one per file opened
immutable. Nothing about the gold query is used; only the table or database the question is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from experiments.data.records import Table
from experiments.data.schema import Database
from experiments.evaluation.results_compare import is_empty
from experiments.sql.errors import OTHER, EvalError
from experiments.sql.executor import DatabaseExecutors, Row, SafeExecutor
from experiments.sql.safe_sql import checked_database_query, parse_single_query, prepare_query
from experiments.sql.sqlite_tables import fold_identifier, sqlite_column_names, sqlite_table_name

EXECUTES = "executes"  # the kept candidate ran and returned a non-empty, non-NULL result
NONE_EXECUTES = "none_executes"  # no candidate did: the top one is kept

Outcome = list[Row] | EvalError  # a candidate's rows, or why it did not run or failed


@dataclass(frozen=True)
class Guided:
    """The kept candidate (`index` 0 is the model's top) and why: EXECUTES, or NONE_EXECUTES with the top
    candidate's failure."""

    index: int
    reason: str
    detail: str = ""


class CandidateRunner(Protocol):
    """Where each question's candidates run; one runner per decoding, closed when decoding ends."""

    def outcomes(self, candidates: Sequence[Sequence[str]], schemas: Sequence[Table] | Sequence[Database]
                 ) -> list[list[Outcome]]:
        """Each question's candidates' outcomes, in the candidates' order."""
        ...

    def close(self) -> None: ...


def _bound(sql: str, table_name: str, columns: frozenset[str]) -> str | EvalError:
    """The candidate as the executor runs it, or why it cannot run."""
    try:
        return prepare_query(sql, parse_single_query(sql), table_name, columns)
    except EvalError as error:
        return error
    except Exception as error:  # a dependency's oddity must not stop generation
        return EvalError(OTHER, f"{type(error).__name__}: {error}")


class TableRunner:
    """WikiSQL: each candidate bound to the question's one table, all of a call in one request to one executor on
    the run's tables file."""

    def __init__(self, executor: SafeExecutor):
        self.executor = executor

    @classmethod
    def open(cls, tables_sqlite: Path) -> TableRunner:
        return cls(SafeExecutor(tables_sqlite))

    def outcomes(self, candidates: Sequence[Sequence[str]], schemas: Sequence[Table] | Sequence[Database]
                 ) -> list[list[Outcome]]:
        queries: list[tuple[str, str]] = []
        slots: list[list[int | EvalError]] = []
        for sqls, table in zip(candidates, schemas, strict=True):
            if not isinstance(table, Table):
                raise TypeError(f"WikiSQL's execution guidance needs each question's table, got {type(table)}")
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
        answers = self.executor.execute_many(queries) if queries else []
        return [[slot if isinstance(slot, EvalError) else answers[slot] for slot in row] for row in slots]

    def close(self) -> None:
        self.executor.close()


class DatabaseRunner:
    """Spider, BIRD: each candidate run as written on its question's own database file, in the pool the multi-table
    evaluator uses (sql.executor.DatabaseExecutors: a worker per file, opened read-only and immutable); one request
    per database per call."""

    def __init__(self, pool: DatabaseExecutors):
        self.pool = pool

    @classmethod
    def open(cls) -> DatabaseRunner:
        return cls(DatabaseExecutors())

    def outcomes(self, candidates: Sequence[Sequence[str]], schemas: Sequence[Table] | Sequence[Database]
                 ) -> list[list[Outcome]]:
        # every slot is filled below: a check's refusal, or the database's answer
        results: list[list[Outcome]] = [[EvalError(OTHER, "not run")] * len(sqls) for sqls in candidates]
        by_path: dict[Path, list[tuple[int, int, str]]] = {}  # file -> (question, candidate, SQL to run)
        for q, (sqls, database) in enumerate(zip(candidates, schemas, strict=True)):
            if not isinstance(database, Database):
                raise TypeError(f"multi-table execution guidance needs each question's database, got {type(database)}")
            for c, sql in enumerate(sqls):
                checked = checked_database_query(sql)
                if isinstance(checked, EvalError):
                    results[q][c] = checked
                else:
                    by_path.setdefault(Path(database.path), []).append((q, c, checked))
        for path, queries in by_path.items():
            try:
                answers: list[Outcome] = self.pool.execute_many(path, [sql for _, _, sql in queries])
            except (OSError, RuntimeError) as error:  # missing file, not a database, a worker that cannot start
                answers = [EvalError(OTHER, f"cannot open database {path.name}: {error}")] * len(queries)
            for (q, c, _), answer in zip(queries, answers, strict=True):
                results[q][c] = answer
        return results

    def close(self) -> None:
        self.pool.close()


def choose(candidates: Sequence[Sequence[str]], schemas: Sequence[Table] | Sequence[Database],
           runner: CandidateRunner) -> list[Guided]:
    """For each question (its candidates in model-score order, and its table or database), the candidate to keep."""
    chosen = []
    for outcomes in runner.outcomes(candidates, schemas):
        index = next((i for i, rows in enumerate(outcomes) if not isinstance(rows, EvalError) and not is_empty(rows)),
                     None)
        if index is not None:
            chosen.append(Guided(index, EXECUTES))
            continue
        top = outcomes[0] if outcomes else None
        detail = str(top) if isinstance(top, EvalError) else "empty or NULL result" if top is not None else ""
        chosen.append(Guided(0, NONE_EXECUTES, detail))
    return chosen
