"""Static checks on untrusted SQL before SQLite sees it: one read-only query, one table, real columns.

SQLite itself is the second line of defence (read-only connection, authorizer, time and row limits: see
executor.py); these checks give each refusal a precise category and close SQLite's one silent hole: a
double-quoted name that is not a column is read as a string literal ("DQS"), so `WHERE "Nmae" = 'x'`
would run and quietly compare two strings. Every column name is therefore checked against the header.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlglot
from sqlglot import exp

from experiments.evaluation.categories import FORBIDDEN_STATEMENT, OTHER, SYNTAX_ERROR, UNKNOWN_COLUMN, EvalError
from experiments.evaluation.sqlite_tables import ROWID_NAMES, fold_identifier
from experiments.prompt import quote_identifier

MAX_SQL_CHARS = 20_000  # generated WikiSQL queries are ~100 characters; anything this long is garbage
_WRITES = (exp.DDL, exp.DML, exp.Pragma, exp.Attach, exp.Detach, exp.Command, exp.Transaction, exp.Commit,
           exp.Rollback, exp.Set, exp.Use)


def parse_single_query(sql: str) -> exp.Query:
    """Parse `sql` (SQLite dialect) into exactly one read-only query, or raise EvalError saying why not."""
    if len(sql) > MAX_SQL_CHARS:
        raise EvalError(OTHER, f"SQL is {len(sql)} characters long (limit {MAX_SQL_CHARS})")
    try:
        parsed = sqlglot.parse(sql, dialect="sqlite")
    except Exception as error:  # ParseError, TokenError, RecursionError on absurd nesting...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvalError(SYNTAX_ERROR, f"cannot parse SQL: {first_line}") from None
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise EvalError(SYNTAX_ERROR, "empty SQL")
    if len(statements) > 1:
        raise EvalError(FORBIDDEN_STATEMENT, f"{len(statements)} statements; exactly one SELECT may run")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise EvalError(FORBIDDEN_STATEMENT, f"only a SELECT may run, not {tree.key.upper()}")
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise EvalError(FORBIDDEN_STATEMENT, f"{node.key.upper()} inside a query is not allowed")
    return tree


def _cte_names(tree: exp.Expression) -> set[str]:
    return {fold_identifier(cte.alias) for cte in tree.find_all(exp.CTE) if cte.alias}


def bind_to_table(sql: str, tree: exp.Query, table_name: str) -> str:
    """`sql` with the one table it reads replaced by `table_name`, whatever the prediction called it.

    WikiSQL asks about one given table; which name the model writes in FROM is not what is measured. The
    name is spliced into the original text (the model's alias, or its table name as an alias, is kept, so
    qualified columns like `t.col` still resolve). A query naming two different tables is an error.
    """
    ctes = _cte_names(tree)
    refs: list[exp.Table] = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise EvalError(FORBIDDEN_STATEMENT, f"table-valued function {table.this.sql()!r} is not allowed")
        if not table.args.get("db") and not table.args.get("catalog") and fold_identifier(table.name) in ctes:
            continue
        refs.append(table)
    names = sorted({fold_identifier(t.name) for t in refs})
    if len(names) > 1:
        raise EvalError(OTHER, f"query names {len(names)} tables ({', '.join(names)}); the question has one")
    edits: list[tuple[int, int, str]] = []
    for table in refs:
        parts = [p for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p is not None]
        starts = [p.meta.get("start") for p in parts]
        ends = [p.meta.get("end") for p in parts]
        if None in starts or None in ends:  # positions unknown: rebuild the SQL from the tree instead
            return _rebuilt(tree, table_name)
        replacement = quote_identifier(table_name)
        if not table.alias:
            replacement += " AS " + quote_identifier(table.name)
        edits.append((min(starts), max(ends) + 1, replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        sql = sql[:start] + replacement + sql[end:]
    return sql


def _rebuilt(tree: exp.Query, table_name: str) -> str:
    ctes = _cte_names(tree)
    tree = tree.copy()
    for table in list(tree.find_all(exp.Table)):
        if not table.args.get("db") and not table.args.get("catalog") and fold_identifier(table.name) in ctes:
            continue
        alias = table.alias or table.name
        table.replace(exp.alias_(exp.to_table(quote_identifier(table_name), dialect="sqlite"), alias,
                                 table=True, quoted=True))
    return tree.sql(dialect="sqlite")


def check_columns(tree: exp.Query, columns: Collection[str]) -> None:
    """Raise EvalError(unknown_column) for a column name that is neither in `columns` nor an alias.

    `columns` are folded with `fold_identifier`. Names the query defines itself (select aliases, CTE and
    derived-table columns) and SQLite's rowid are allowed.
    """
    defined: set[str] = set()
    for node in tree.find_all(exp.Alias, exp.TableAlias):
        if isinstance(node, exp.Alias):
            defined.add(fold_identifier(node.alias))
        else:
            defined.add(fold_identifier(node.name))
            defined.update(fold_identifier(c.name) for c in node.columns)
    for column in tree.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        name = fold_identifier(column.name)
        if name not in columns and name not in defined and name not in ROWID_NAMES:
            raise EvalError(UNKNOWN_COLUMN, f"no such column: {column.name}")


def prepare_prediction(sql: str, table_name: str, columns: Collection[str]) -> tuple[exp.Query, str]:
    """Parse and check a prediction; return its tree (for the logical form) and the SQL to run."""
    tree = parse_single_query(sql)
    bound = bind_to_table(sql, tree, table_name)
    check_columns(tree, columns)
    return tree, bound
