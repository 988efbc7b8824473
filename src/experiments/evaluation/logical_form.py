"""Logical-form accuracy, WikiSQL's official metric: predicted SQL parsed back into `Query(sel, agg, conds)`.

Only WikiSQL's query shape parses: `SELECT [agg(]col[)] FROM t [WHERE col op value AND ...]` with agg one
of MAX/MIN/COUNT/SUM/AVG and op one of =, >, <. Anything else (joins, ORDER BY, OR, `COUNT(*)`, ...) has no
logical form and scores lf_match False.
"""

from __future__ import annotations

from sqlglot import exp

from experiments.data.prompt import format_number, number_or_none
from experiments.data.records import AGG_OPS, CondValue, Query, Table
from experiments.sql.sql_parse import parse_sql
from experiments.sql.sqlite_tables import fold_identifier, sqlite_column_names

_AGG_NODES: dict[type[exp.Expression], int] = {
    exp.Max: AGG_OPS.index("MAX"), exp.Min: AGG_OPS.index("MIN"), exp.Count: AGG_OPS.index("COUNT"),
    exp.Sum: AGG_OPS.index("SUM"), exp.Avg: AGG_OPS.index("AVG"),
}
_OPS: dict[type[exp.Expression], int] = {exp.EQ: 0, exp.GT: 1, exp.LT: 2}
_FLIPPED = {0: 0, 1: 2, 2: 1}  # `5 < col` is `col > 5`
_ALLOWED_SELECT_ARGS = {"expressions", "from_", "from", "where"}  # "from" in older sqlglot


def column_index(table: Table) -> dict[str, int]:
    """Header name (or its SQLite column name), folded to lower case -> column index; the first one wins."""
    index: dict[str, int] = {}
    for i, name in enumerate(sqlite_column_names(table.header)):
        index.setdefault(fold_identifier(name), i)
    for i, name in enumerate(table.header):
        index.setdefault(fold_identifier(name), i)
        index.setdefault(name.lower(), i)
    return index


def _column(node: exp.Expression, columns: dict[str, int]) -> int | None:
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        return None
    name = node.name
    found = columns.get(fold_identifier(name))
    return found if found is not None else columns.get(name.lower())


def _value(node: exp.Expression) -> CondValue | None:
    negative = False
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if not isinstance(node, exp.Literal):
        return None
    if node.is_string:
        return None if negative else node.this
    text = node.this
    try:
        number: int | float = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
    return -number if negative else number


def _conditions(node: exp.Expression, columns: dict[str, int]) -> list[tuple[int, int, CondValue]] | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        left = _conditions(node.this, columns)
        right = _conditions(node.expression, columns)
        return None if left is None or right is None else left + right
    op = _OPS.get(type(node))
    if op is None:
        return None
    left, right = node.this, node.expression
    col, value = _column(left, columns), _value(right)
    if col is None or value is None:
        col, value, op = _column(right, columns), _value(left), _FLIPPED[op]
    if col is None or value is None:
        return None
    return [(col, op, value)]


def parse_logical_form(sql: str | exp.Expression, table: Table,
                       columns: dict[str, int] | None = None) -> Query | None:
    """The WikiSQL logical form of `sql` against `table`'s header, or None where it has none.

    Column names match case-insensitively, quoted or not; keyword case, the table name and a trailing
    semicolon don't matter. Pass an already parsed tree (and a `column_index`) to avoid parsing twice. SQL past
    sql_parse's bounds (length, tokens, nesting) has none: it is refused before it is parsed.
    """
    if columns is None:
        columns = column_index(table)
    if isinstance(sql, str):
        try:
            statements = parse_sql(sql)
        except Exception:  # SQLTooLarge, ParseError, TokenError...
            return None
        if len(statements) != 1:
            return None
        tree = statements[0]
    else:
        tree = sql
    if not isinstance(tree, exp.Select) or set(k for k, v in tree.args.items() if v) - _ALLOWED_SELECT_ARGS:
        return None
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None or not isinstance(source.this, exp.Table):
        return None
    if not isinstance(source.this.this, exp.Identifier):
        return None
    if len(tree.expressions) != 1:
        return None
    selected = tree.expressions[0]
    if isinstance(selected, exp.Alias):
        selected = selected.this
    agg = 0
    agg_index = _AGG_NODES.get(type(selected))
    if agg_index is not None:
        agg, selected = agg_index, selected.this
    sel = _column(selected, columns)
    if sel is None:
        return None
    conds: list[tuple[int, int, CondValue]] = []
    where = tree.args.get("where")
    if where is not None:
        found = _conditions(where.this, columns)
        if found is None:
            return None
        conds = found
    return Query(sel=sel, agg=agg, conds=tuple(conds))


def canonical_value(value: CondValue) -> str:
    """A condition value as the official evaluator compares it (`str(value).lower()`), with one change:
    numbers, and numeric text, are written one way (`format_number`), so 1990, 1990.0 and '1990' match.
    That also makes '1,990' (read as a number by render_sql in real columns) equal 1990.
    """
    number = number_or_none(value)
    return format_number(number) if number is not None else str(value).lower()


def canonical_conditions(query: Query) -> frozenset[tuple[int, int, str]]:
    return frozenset((col, op, canonical_value(value)) for col, op, value in query.conds)


def logical_forms_match(predicted: Query | None, gold: Query) -> bool:
    """Official WikiSQL comparison: same sel, same agg, same conditions as an order-insensitive set."""
    if predicted is None:
        return False
    return (predicted.sel == gold.sel and predicted.agg == gold.agg
            and canonical_conditions(predicted) == canonical_conditions(gold))
