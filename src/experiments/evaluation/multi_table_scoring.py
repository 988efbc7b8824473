"""Score predictions on multi-table datasets (Spider, BIRD): each question's gold and predicted SQL run on the
question's own database file, and the results compare under the dataset's official rules (multi_table_compare).

    scored = score_multi_table(examples, databases, predictions, semantics="spider")
    scored.metrics, scored.rows()

What is run. Gold and predicted SQL are untrusted text: each is bounded as score() bounds a prediction (sqlite_text,
then sql_parse's caps on length, tokens and nesting through safe_sql.parse_single_query: SQL past them is `other`
and is not run; more than one statement, or anything but a query, is `forbidden_statement`; so is a write inside a
query or a table-valued function, safe_sql.check_read_only; all in safe_sql.checked_database_query, which
execution-guided decoding shares) and then runs as written, in a worker of a DatabaseExecutors pool (one worker
per database file, the file opened read-only and immutable, any of its tables readable, nothing else:
sqlite_sandbox.py). SQL that sqlglot cannot parse still runs: the official evaluators hand
SQL to SQLite, whose grammar sqlglot's does not cover exactly, so SQLite's verdict (a syntax error or rows) is the
one recorded. Nothing is bound to a table and no column is checked against a header: Spider's gold SQL quotes
strings with double quotes, which SQLite's DQS reading needs.

Each database's examples run together (at most BATCH examples' queries per round trip to its worker), gold first,
and each distinct gold query once per batch; a prediction that is gold's SQL verbatim reuses gold's rows. The
results come back in the examples' order.

A gold query that fails (an error, the time limit, the row cap, or a database that cannot be opened) makes its
example `gold_error`: counted in `n` and never a match, so accuracy stays over the whole split. BIRD's evaluator does
the same (a failing query scores 0); Spider's asserts that gold runs, i.e. it counts every example and a gold
failure is an error of the setup, which `gold_errors` in the metrics shows rather than hiding it by shrinking the
denominator. An empty gold result is a result like any other here (Spider and BIRD both match two empty results),
unlike WikiSQL's scoring, where it is a gold error.

Each example ends in one of categories.MULTI_TABLE_CATEGORIES: a prediction that ran but does not match is named by
what differs from gold's SQL (multi_table_failures.mismatch_category_sql: wrong_table, missing_join, ...), one that
did not run by its error (syntax_error, unknown_table, unknown_column, timeout, ...).

Test-suite accuracy (`test_suite`: {db_id: its variant database files}, suite_databases.find_suite_databases; the
distilled test suites of Zhong et al. 2020). Execution accuracy stays what it is, on the question's own database;
in addition each example gets `test_suite_match`: its prediction matched on its own database and, under the same
semantics, on every variant of its database (all in the same pool, under the same limits). The variants run in
name order, each database's examples together (BATCH at a time); an example stops at the first variant it fails
on (as the official evaluator does), and one that already fails on its own database runs on no variant at all: its
`test_suite_match` is False with `test_suite_failure` None. Otherwise `test_suite_failure` says where and why:
{"database": the variant's file name, "category", "error"}. The official suites hold the original database among
the variants, so requiring the match on it first changes no verdict there. A gold query that fails on a variant:
the official evaluator stops the whole evaluation (it asserts that gold runs on every variant); here the example
counts as a test-suite miss (category `gold_error` in its failure), `test_suite_gold_errors` counts such examples
and a warning names their number, so a broken suite shows instead of shrinking the denominator. Only examples that
reach the variants run gold on them, so that count covers those examples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from experiments.evaluation.categories import (
    CORRECT,
    GOLD_ERROR,
    MISSING_PREDICTION,
    MULTI_TABLE_CATEGORIES,
    OTHER,
)
from experiments.evaluation.hardness import BIRD_DIFFICULTIES, HARDNESS_LEVELS, bird_difficulty, spider_hardness
from experiments.evaluation.multi_table_compare import (
    SEMANTICS,
    Semantics,
    gold_orders,
    results_equal,
    spider_executed_sql,
)
from experiments.evaluation.multi_table_failures import mismatch_category_sql
from experiments.evaluation.scoring import BATCH, check_prediction_ids, shown_id
from experiments.sql.errors import EvalError
from experiments.sql.executor import MAX_OPEN_DATABASES, MAX_RESULT_BYTES, DatabaseExecutors, Row, check_limits
from experiments.sql.safe_sql import checked_database_query

__all__ = ["DatabaseFile", "MultiTableExample", "MultiTableResult", "MultiTableScored", "score_multi_table"]

UNKNOWN_LEVEL = "unknown"  # a breakdown's key for examples without a level (gold SQL the hardness cannot read)


class MultiTableExample(Protocol):
    """What scoring reads of an example (experiments.data.schema.SqlExample has it)."""

    @property
    def id(self) -> str: ...

    @property
    def db_id(self) -> str: ...

    @property
    def question(self) -> str: ...

    @property
    def sql(self) -> str: ...

    @property
    def difficulty(self) -> str | None: ...


class DatabaseFile(Protocol):
    """What scoring reads of a database (experiments.data.schema.Database has it): its id and its SQLite file."""

    @property
    def id(self) -> str: ...

    @property
    def path(self) -> Path | str | None: ...


@dataclass
class MultiTableResult:
    id: str
    db_id: str
    question: str
    gold_sql: str
    pred_sql: str | None
    exec_match: bool
    error: str | None
    category: str
    valid_sql: bool  # the prediction ran without error (what valid_sql_rate counts)
    hardness: str | None  # Spider's level of the gold SQL; None when it cannot be read
    difficulty: str | None  # BIRD's, when the example has one
    test_suite_match: bool | None = None  # None: scored without a test suite
    test_suite_failure: dict[str, str | None] | None = None  # the first variant failed on: database, category, error


@dataclass
class MultiTableScored:
    """Every example's result (in the examples' order) and the metrics."""

    results: list[MultiTableResult]
    metrics: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        """The results as results.jsonl's rows."""
        return [dict(vars(r)) for r in self.results]


def _same_sql(a: str, b: str) -> bool:
    return a.strip().rstrip(";").rstrip() == b.strip().rstrip(";").rstrip()


def _hardness(gold_sql: str) -> str | None:
    try:
        return spider_hardness(gold_sql)
    except Exception:  # not one SELECT sqlglot can read (ValueError), or an oddity in a dependency
        return None


@dataclass
class _Pending:
    example: MultiTableExample
    gold_sql: str
    pred_sql: str | None
    gold_query: str | EvalError  # the checked SQL to run, or why it may not run
    pred_query: str | EvalError | None  # likewise; None: no prediction, or gold's SQL verbatim
    verbatim: bool
    difficulty: str | None
    gold: str | list[Row] | EvalError = field(init=False)  # gold_query, then its rows or why none
    pred: str | list[Row] | EvalError | None = field(init=False)  # pred_query, then likewise

    def __post_init__(self) -> None:
        self.gold, self.pred = self.gold_query, self.pred_query

    def unrun(self) -> _Pending:
        """A copy whose queries have not run yet, for another database (a test-suite variant)."""
        return replace(self)


class _MultiTableScorer:
    def __init__(self, pool: DatabaseExecutors, databases: Mapping[str, DatabaseFile], semantics: Semantics,
                 keep_distinct: bool = False):
        self.pool = pool
        self.databases = databases
        self.semantics = semantics
        self.keep_distinct = keep_distinct

    def executed(self, sql: str) -> str:
        """The SQL that runs for `sql`: under Spider's semantics, what its official evaluator runs
        (multi_table_compare.spider_executed_sql); else `sql` itself."""
        if self.semantics != "spider":
            return sql
        return spider_executed_sql(sql, keep_distinct=self.keep_distinct)

    def prepare(self, example: MultiTableExample, pred_sql: str | None, difficulty: str | None) -> _Pending:
        """An example and its prediction with both queries checked, not yet run."""
        gold_sql = example.sql if isinstance(example.sql, str) else str(example.sql)
        if pred_sql is not None and not isinstance(pred_sql, str):
            pred_sql = str(pred_sql)
        gold = checked_database_query(self.executed(gold_sql))
        if isinstance(gold, EvalError):
            gold = EvalError(GOLD_ERROR, f"gold SQL cannot run: {gold}")
        verbatim = pred_sql is not None and _same_sql(pred_sql, gold_sql)
        pred = checked_database_query(self.executed(pred_sql)) if pred_sql is not None and not verbatim else None
        return _Pending(example, gold_sql, pred_sql, gold, pred, verbatim, difficulty)

    def score_many(self, db_id: str, batch: Sequence[_Pending]) -> list[MultiTableResult]:
        """The results of `batch` (prepared, not run), all on database `db_id`."""
        self._run(repr(db_id), self._database_path(db_id), batch)
        results = []
        for p in batch:
            category, error, exec_match = self._verdict(p)
            rows = p.gold if p.verbatim else p.pred
            example = p.example
            results.append(MultiTableResult(
                id=example.id, db_id=example.db_id, question=example.question, gold_sql=p.gold_sql,
                pred_sql=p.pred_sql, exec_match=exec_match, error=error, category=category,
                valid_sql=isinstance(rows, list), hardness=_hardness(p.gold_sql), difficulty=p.difficulty))
        return results

    def score_on_suite(self, variants: Sequence[Path], reached: Sequence[tuple[_Pending, MultiTableResult]]
                       ) -> None:
        """Set `test_suite_match` (and `test_suite_failure`) of the `reached` examples, those that matched on their
        own database: each runs on the `variants` in order (BATCH examples a request) until one it fails on."""
        alive = list(reached)
        for path in variants:
            survivors = []
            for start in range(0, len(alive), BATCH):
                chunk = alive[start:start + BATCH]
                runs = [p.unrun() for p, _ in chunk]
                self._run(path.name, path, runs)
                for (p, result), run in zip(chunk, runs, strict=True):
                    category, error, match = self._verdict(run)
                    if match:
                        survivors.append((p, result))
                    else:
                        result.test_suite_failure = {"database": path.name, "category": category, "error": error}
            alive = survivors
        for _, result in alive:
            result.test_suite_match = True

    def _database_path(self, db_id: str) -> Path | EvalError:
        database = self.databases.get(db_id)
        if database is None:
            return EvalError(GOLD_ERROR, f"database {db_id!r} is not among the databases")
        if database.path is None:
            return EvalError(GOLD_ERROR, f"database {db_id!r} has no SQLite file")
        return Path(database.path)

    def _run(self, shown: str, path: Path | EvalError, pending: Sequence[_Pending]) -> None:
        """Run the batch's gold queries (each distinct one once), then its predictions, in one request on `path`
        (`shown` in messages; an EvalError: why no database, every query's answer)."""
        queries: list[str] = []
        golds: dict[str, int] = {}
        predictions: list[tuple[_Pending, int]] = []
        for p in pending:
            if isinstance(p.gold, str) and p.gold not in golds:
                golds[p.gold] = len(queries)
                queries.append(p.gold)
        for p in pending:
            if isinstance(p.pred, str):
                predictions.append((p, len(queries)))
                queries.append(p.pred)
        if not queries:
            return
        answers: list[list[Row] | EvalError]
        if isinstance(path, EvalError):
            answers = [path] * len(queries)
        else:
            try:
                answers = self.pool.execute_many(path, queries)
            except (OSError, RuntimeError) as error:  # missing file, not a database, a worker that cannot start
                answers = [EvalError(GOLD_ERROR, f"cannot open database {shown}: {error}")] * len(queries)
        for p in pending:
            if isinstance(p.gold, str):
                answer = answers[golds[p.gold]]
                p.gold = EvalError(GOLD_ERROR, f"gold SQL failed: {answer}") if isinstance(answer, EvalError) \
                    else answer
        for p, i in predictions:
            answer = answers[i]
            p.pred = EvalError(OTHER, f"not run: {answer}") if isinstance(answer, EvalError) and \
                answer.category == GOLD_ERROR else answer

    def _verdict(self, p: _Pending) -> tuple[str, str | None, bool]:
        """(category, error, match) of a run example."""
        assert not isinstance(p.gold, str) and not isinstance(p.pred, str)
        rows = p.gold if p.verbatim else p.pred
        pred_error = str(rows) if isinstance(rows, EvalError) else None
        if isinstance(p.gold, EvalError):
            if p.pred_sql is None:
                return MISSING_PREDICTION, "no prediction for this example; " + str(p.gold), False
            return GOLD_ERROR, str(p.gold) + (f"; prediction: {pred_error}" if pred_error else ""), False
        if p.pred_sql is None:
            return MISSING_PREDICTION, "no prediction for this example", False
        if isinstance(rows, EvalError):
            return rows.category, pred_error, False
        assert rows is not None
        try:
            match = results_equal(p.gold, rows, semantics=self.semantics, gold_orders=gold_orders(p.gold_sql))
        except Exception as failure:  # a bug or an oddity in a dependency must not stop the run
            return OTHER, f"comparing the results failed: {type(failure).__name__}: {failure}", False
        return (CORRECT if match else mismatch_category_sql(p.gold_sql, p.pred_sql)), None, match


def _accuracy(results: Sequence[MultiTableResult]) -> float:
    return sum(r.exec_match for r in results) / len(results) if results else 0.0


def _breakdown(results: Sequence[MultiTableResult], attribute: str, levels: Sequence[str]) -> dict[str, Any]:
    """{level: {"n", "execution_accuracy"}} for each of `levels` (n 0: accuracy None), then UNKNOWN_LEVEL for the
    results without a level, if any."""
    groups: dict[str, list[MultiTableResult]] = {level: [] for level in levels}
    for r in results:
        groups.setdefault(getattr(r, attribute) or UNKNOWN_LEVEL, []).append(r)
    if not groups.get(UNKNOWN_LEVEL, True):
        del groups[UNKNOWN_LEVEL]
    return {level: {"n": len(group), "execution_accuracy": _accuracy(group) if group else None}
            for level, group in groups.items()}


def _metrics(results: Sequence[MultiTableResult], semantics: Semantics, unknown_ids: int, warnings: list[str],
             restarts: int, seconds: float) -> dict[str, Any]:
    n = len(results)
    counts = Counter(r.category for r in results)
    categories = {c: counts.get(c, 0) for c in MULTI_TABLE_CATEGORIES}
    categories.update({c: k for c, k in counts.items() if c not in categories})
    has_difficulty = any(r.difficulty is not None for r in results)
    return {
        "semantics": semantics,
        "execution_accuracy": _accuracy(results),
        "valid_sql_rate": sum(r.valid_sql for r in results) / n if n else 0.0,
        "n": n,
        "categories": categories,
        "missing_predictions": categories[MISSING_PREDICTION],
        "gold_errors": categories[GOLD_ERROR],
        "by_hardness": _breakdown(results, "hardness", HARDNESS_LEVELS),
        "by_difficulty": _breakdown(results, "difficulty", BIRD_DIFFICULTIES) if has_difficulty else {},
        "unknown_prediction_ids": unknown_ids,
        "warnings": warnings,
        "worker_restarts": restarts,
        "eval_seconds": seconds,
    }


def _suite_metrics(results: Sequence[MultiTableResult], files: int, warnings: list[str]) -> dict[str, Any]:
    """Test-suite accuracy over all examples, the variant files of the split's databases, and the examples whose
    gold failed on a variant (each also a warning: the official evaluator would have stopped)."""
    gold_errors = sum(1 for r in results if r.test_suite_failure and r.test_suite_failure["category"] == GOLD_ERROR)
    if gold_errors:
        warnings.append(f"{gold_errors} gold queries failed on a test-suite database (counted as test-suite misses; "
                        "see test_suite_failure in results.jsonl)")
    return {"test_suite_accuracy": sum(bool(r.test_suite_match) for r in results) / len(results) if results else 0.0,
            "test_suite_databases": files, "test_suite_gold_errors": gold_errors}


def _database_map(databases: Mapping[str, DatabaseFile] | Iterable[DatabaseFile]) -> dict[str, DatabaseFile]:
    items = databases.values() if isinstance(databases, Mapping) else databases
    found: dict[str, DatabaseFile] = {}
    for database in items:
        if database.id in found:
            raise ValueError(f"database id {database.id!r} occurs more than once")
        found[database.id] = database
    return found


def score_multi_table(examples: Sequence[MultiTableExample],
                      databases: Mapping[str, DatabaseFile] | Iterable[DatabaseFile],
                      predictions: Mapping[str, str | None], *, semantics: Semantics, timeout_s: float = 10.0,
                      max_rows: int = 100_000, max_result_bytes: int = MAX_RESULT_BYTES,
                      max_open: int = MAX_OPEN_DATABASES, progress: bool = True,
                      test_suite: Mapping[str, Sequence[Path]] | None = None,
                      keep_distinct: bool = False) -> MultiTableScored:
    """Score `predictions` ({example id: SQL, or None for none}) on `examples`, each run on the database of its
    `db_id` among `databases` (by id, or a mapping from id), writing nothing.

    `semantics` ("spider" or "bird"; "wikisql" is accepted too) picks the official comparison
    (multi_table_compare.results_equal); row order counts where Spider's rule says so (gold_orders of the gold SQL).
    Under Spider's semantics gold and prediction run as its official evaluator runs them: DISTINCT removed unless
    `keep_distinct` (multi_table_compare.spider_executed_sql).
    The limits (`timeout_s` per query, `max_rows`, `max_result_bytes` per result) apply to gold and predictions
    alike; the defaults leave room for BIRD's larger databases and results (its evaluator allows 30 s a query).
    At most `max_open` database workers run at once. An example without a prediction counts as wrong
    (`missing_prediction`); predictions whose ids are not among the examples are ignored, counted
    (`unknown_prediction_ids`) and warned about, as score() does; a ValueError when no prediction is for an example,
    when an example id or database id occurs twice, or when a difficulty is not one of BIRD's.

    `test_suite` ({db_id: its variant database files, in the order to run them}: suite_databases.py) adds each
    example's `test_suite_match` and the metrics `test_suite_accuracy`, `test_suite_databases` (the variant files of
    the examples' databases) and `test_suite_gold_errors` (see the module's docstring); a ValueError, before any
    query runs, when an example's database has no variant there.
    """
    start = time.perf_counter()
    check_limits(timeout_s, max_rows, max_result_bytes)
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown comparison semantics {semantics!r} (expected one of {', '.join(SEMANTICS)})")
    unknown, warnings = check_prediction_ids([e.id for e in examples], predictions)
    database_map = _database_map(databases)
    difficulties: list[str | None] = []
    for example in examples:
        try:
            difficulties.append(bird_difficulty(getattr(example, "difficulty", None)))
        except ValueError as error:
            raise ValueError(f"example {shown_id(example.id)}: {error}") from None
    if test_suite is not None:
        bare = sorted({e.db_id for e in examples if not test_suite.get(e.db_id)})
        if bare:
            raise ValueError(f"no test-suite database for {', '.join(map(repr, bare))}: every database of the "
                             "examples needs at least one variant")
    by_database: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_database.setdefault(example.db_id, []).append(i)
    results: list[MultiTableResult | None] = [None] * len(examples)
    with DatabaseExecutors(max_open=max_open, timeout_s=timeout_s, max_rows=max_rows,
                           max_result_bytes=max_result_bytes) as pool, \
            tqdm(total=len(examples), desc="evaluating", unit="ex", disable=not progress) as bar:
        scorer = _MultiTableScorer(pool, database_map, semantics, keep_distinct)
        for db_id, indices in by_database.items():
            reached: list[tuple[_Pending, MultiTableResult]] = []  # matched on their own database
            for start_at in range(0, len(indices), BATCH):
                chunk = indices[start_at:start_at + BATCH]
                batch = [scorer.prepare(examples[i], predictions.get(examples[i].id), difficulties[i]) for i in chunk]
                for i, p, result in zip(chunk, batch, scorer.score_many(db_id, batch), strict=True):
                    results[i] = result
                    if test_suite is not None:
                        result.test_suite_match = False
                        if result.exec_match:
                            reached.append((p, result))
                bar.update(len(chunk))
            if test_suite is not None:
                scorer.score_on_suite(test_suite[db_id], reached)
        restarts = pool.restarts
    done = [r for r in results if r is not None]
    assert len(done) == len(examples)
    suite = {} if test_suite is None else \
        _suite_metrics(done, sum(len(test_suite[db_id]) for db_id in by_database), warnings)
    distinct = {"keep_distinct": keep_distinct} if semantics == "spider" else {}
    return MultiTableScored(done, {**_metrics(done, semantics, len(unknown), warnings, restarts,
                                              time.perf_counter() - start), **distinct, **suite})
