"""Static checks on untrusted SQL before SQLite sees it: one read-only query, one table, real columns.

SQLite itself is the second line of defence (read-only connection, authorizer, time and row limits: see
executor.py); these checks give each refusal a precise category and close SQLite's one silent hole: a
double-quoted name that is not a column is read as a string literal ("DQS"), so `WHERE "Nmae" = 'x'`
would run and quietly compare two strings. Every column name is therefore checked against the header.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlglot import exp

from experiments.data.prompt import quote_identifier
from experiments.sql.errors import (
    FORBIDDEN_STATEMENT,
    OTHER,
    SYNTAX_ERROR,
    UNKNOWN_COLUMN,
    EvalError,
)
from experiments.sql.sql_parse import SQLTooLarge, parse_sql
from experiments.sql.sqlite_tables import ROWID_NAMES, fold_identifier, sqlite_text

_WRITES = (exp.DDL, exp.DML, exp.Pragma, exp.Attach, exp.Detach, exp.Command, exp.Transaction, exp.Commit,
           exp.Rollback, exp.Set, exp.Use)


def parse_single_query(sql: str) -> exp.Query:
    """Parse `sql` (SQLite dialect) into exactly one read-only query, or raise EvalError saying why not (SQL past
    sql_parse's bounds on length and nesting is `other`)."""
    try:
        statements = parse_sql(sql)
    except SQLTooLarge as error:
        raise EvalError(OTHER, str(error)) from None
    except Exception as error:  # ParseError, TokenError...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvalError(SYNTAX_ERROR, f"cannot parse SQL: {first_line}") from None
    if not statements:
        raise EvalError(SYNTAX_ERROR, "empty SQL")
    if len(statements) > 1:
        raise EvalError(FORBIDDEN_STATEMENT, f"{len(statements)} statements; exactly one SELECT may run")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        kind = tree.this if isinstance(tree, exp.Command) and isinstance(tree.this, str) else tree.key
        raise EvalError(FORBIDDEN_STATEMENT, f"only a SELECT may run, not {kind.upper()}")
    return tree


@dataclass
class _Scan:
    """What the checks need from a tree, gathered in one walk (walking is most of the cost after parsing)."""

    tables: list[exp.Table] = field(default_factory=list)
    columns: list[exp.Column] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)  # select aliases, CTE/derived-table column lists


def _scan(tree: exp.Query) -> _Scan:
    scan = _Scan()
    for node in tree.walk():
        if isinstance(node, exp.Column):
            scan.columns.append(node)
        elif isinstance(node, exp.Table):
            scan.tables.append(node)
        elif isinstance(node, exp.Alias):
            scan.defined.add(fold_identifier(node.alias))
        elif isinstance(node, exp.TableAlias):  # `c(x)`: x is a column; c itself is a table name
            scan.defined.update(fold_identifier(c.name) for c in node.columns)
        elif isinstance(node, _WRITES):
            raise EvalError(FORBIDDEN_STATEMENT, f"{node.key.upper()} inside a query is not allowed")
    return scan


def is_cte(table: exp.Table) -> bool:
    """Whether SQLite reads `table` as a CTE: an unqualified name defined by the WITH of a query that holds it (its
    body or its WITH, which SQLite lets refer to itself and to the other CTEs of that WITH). A CTE defined in a
    subquery does not name anything outside it: in `SELECT count(*) FROM sqlite_master WHERE 1 = (WITH
    sqlite_master AS (SELECT 1) SELECT 1 FROM sqlite_master)` the outer name is a real table."""
    if table.args.get("db") or table.args.get("catalog"):
        return False
    name = fold_identifier(table.name)
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with")  # "with" in older sqlglot
        if isinstance(with_, exp.With) and any(fold_identifier(cte.alias) == name for cte in with_.expressions):
            return True
        node = node.parent
    return False


def bind_to_table(sql: str, tree: exp.Query, table_name: str, scan: _Scan | None = None) -> str:
    """`sql` with the one table it reads replaced by `table_name`, whatever the prediction called it.

    WikiSQL asks about one given table; which name the model writes in FROM is not what is measured. The
    name is spliced into the original text (the model's alias, or its table name as an alias, is kept, so
    qualified columns like `t.col` still resolve). A query naming two different tables is an error.
    """
    scan = scan or _scan(tree)
    refs: list[exp.Table] = []
    for table in scan.tables:
        if not isinstance(table.this, exp.Identifier):
            raise EvalError(FORBIDDEN_STATEMENT, f"table-valued function {table.this.sql()!r} is not allowed")
        if not is_cte(table):
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
    tree = tree.copy()
    for table in list(tree.find_all(exp.Table)):
        if is_cte(table):
            continue
        alias = table.alias or table.name
        table.replace(exp.alias_(exp.to_table(quote_identifier(table_name), dialect="sqlite"), alias,
                                 table=True, quoted=True))
    return tree.sql(dialect="sqlite")


def check_read_only(tree: exp.Query) -> None:
    """Raise EvalError(forbidden_statement) for a write inside the query or a table-valued function: the checks that
    apply to a query on a database of many tables (Spider, BIRD), which runs as written (no table to bind it to,
    and double-quoted strings are the datasets' own style, so no column check either)."""
    for table in _scan(tree).tables:
        if not isinstance(table.this, exp.Identifier):
            raise EvalError(FORBIDDEN_STATEMENT, f"table-valued function {table.this.sql()!r} is not allowed")


def check_columns(tree: exp.Query, columns: Collection[str], scan: _Scan | None = None) -> None:
    """Raise EvalError(unknown_column) for a column name neither in `columns` nor defined by the query.

    `columns` are folded with `fold_identifier`. Names the query defines itself (select aliases, CTE and
    derived-table columns) and SQLite's rowid are allowed.
    """
    scan = scan or _scan(tree)
    for column in scan.columns:
        if isinstance(column.this, exp.Star):
            continue
        name = fold_identifier(column.name)
        if name not in columns and name not in scan.defined and name not in ROWID_NAMES:
            raise EvalError(UNKNOWN_COLUMN, f"no such column: {column.name}")


def prepare_query(sql: str, tree: exp.Query, table_name: str, columns: Collection[str]) -> str:
    """Check a parsed prediction (no writes, one table, real columns); return the SQL to run on the table."""
    scan = _scan(tree)
    bound = bind_to_table(sql, tree, table_name, scan)
    check_columns(tree, columns, scan)
    return bound


def checked_database_query(sql: str) -> str | EvalError:
    """The SQL to run for `sql` on a database of many tables (Spider, BIRD), or why it may not run: one read-only
    query (parse_single_query's bounds, check_read_only), run as written. SQL that sqlglot cannot parse still goes
    to SQLite, whose grammar sqlglot's does not cover exactly: SQLite's verdict (a syntax error or rows) is the one
    recorded, as the official evaluators record it. Shared by multi-table scoring and execution-guided decoding."""
    sql = sqlite_text(sql)
    try:
        check_read_only(parse_single_query(sql))
    except EvalError as error:
        if error.category == SYNTAX_ERROR and str(error) != "empty SQL":
            return sql
        return error
    except Exception as error:  # a bug or an oddity in a dependency must not stop the run
        return EvalError(OTHER, f"{type(error).__name__}: {error}")
    return sql
