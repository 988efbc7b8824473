"""Why a multi-table prediction that ran returned other rows than gold's: the first part of the query that differs,
read off both SQL texts. Spider and BIRD come without logical forms, so WikiSQL's way (categories.mismatch_category
compares them) is not open; this compares the parsed queries' parts instead.

    mismatch_category_sql(gold_sql, pred_sql)  # -> "wrong_join_key"

The parts, in the order they are compared; the first that differs names the failure:
- `wrong_table`: the sets of tables read (anywhere: joins, subqueries, set operations, CTE bodies) differ, while the
  prediction reads as many different tables as gold or more;
- `missing_join`: the prediction reads fewer different tables than gold (a self-join left out, which reads no fewer,
  shows as its missing join key);
- `wrong_join_key`: the equalities between columns of two different table references (in ON, USING or WHERE), as
  unordered pairs of `table.column`;
- `wrong_set_operation`: the UNION / INTERSECT / EXCEPT (ALL or not), in order;
- `wrong_group_by`: GROUP BY items (in any order) and HAVING's conditions;
- `wrong_order_by`: ORDER BY items with their direction, LIMIT and OFFSET;
- `wrong_select`: each SELECT's items, in order, and its DISTINCT;
- `wrong_where`: WHERE's conditions as a set of ANDed conditions (with ON's conditions other than join keys, which
  are compared above);
- `wrong_result`: none of these differ (a value or function the parts do not separate), or either SQL cannot be read.

Normalised away: identifiers' case (as SQLite folds it), table aliases (`T1.name` is `singer.name`), the table of an
unqualified column in a SELECT that reads one table (`name` is `singer.name`), formatting, the order of ANDed
conditions and of joined tables, select aliases used in ORDER BY or HAVING (`ORDER BY c` after `count(*) AS c`), and
Spider's double-quoted strings (`= "France"` is `= 'France'`, as SQLite's DQS reads it). Each SELECT's parts are
compared without the subqueries inside them (a subquery's parts count as its own SELECT's), so a difference in a
subquery is named by the part it is in. Not known without the schema: the table of an unqualified column in a join,
so `year` and `c.year` differ there.

Both texts are untrusted: they are parsed once each by the bounded parse (safe_sql.parse_single_query, sql_parse's
caps), and SQL past the caps, SQL sqlglot cannot read or anything odd is `wrong_result`; this never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from experiments.evaluation.categories import (
    MISSING_JOIN,
    WRONG_GROUP_BY,
    WRONG_JOIN_KEY,
    WRONG_ORDER_BY,
    WRONG_RESULT,
    WRONG_SELECT,
    WRONG_SET_OPERATION,
    WRONG_TABLE,
    WRONG_WHERE,
)
from experiments.sql.safe_sql import is_cte, parse_single_query
from experiments.sql.sqlite_tables import fold_identifier, sqlite_text

__all__ = ["QueryShape", "mismatch_category_sql", "query_shape"]

_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)
_SUBQUERY = "(subquery)"  # what a nested query reads as inside its enclosing SELECT's parts


@dataclass(frozen=True)
class QueryShape:
    """The parts of one query that mismatch_category_sql compares, each normalised (see the module's docstring)."""

    tables: frozenset[str]
    join_keys: frozenset[frozenset[str]]
    set_operations: tuple[str, ...]
    group_by: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # per SELECT that groups: items, HAVING
    order_by: tuple[tuple[tuple[tuple[str, bool], ...], str, str], ...]  # per query that orders or limits
    select: tuple[tuple[bool, tuple[str, ...]], ...]  # per SELECT: DISTINCT, items
    where: tuple[tuple[str, ...], ...]  # per SELECT that filters: its conditions, sorted


def mismatch_category_sql(gold_sql: str, pred_sql: str) -> str:
    """The failure category of a prediction that ran but whose rows differ from gold's: its first part that differs
    from gold's, or `wrong_result` when none does or either SQL cannot be read. Never raises."""
    try:
        gold, predicted = query_shape(gold_sql), query_shape(pred_sql)
    except Exception:  # EvalError (past the caps, unparseable, not a query) or an oddity in sqlglot
        return WRONG_RESULT
    return _first_difference(gold, predicted)


def _first_difference(gold: QueryShape, predicted: QueryShape) -> str:
    if gold.tables != predicted.tables and len(predicted.tables) >= len(gold.tables):
        return WRONG_TABLE
    if len(predicted.tables) < len(gold.tables):  # a join dropped; a query that reads no table reads the wrong one
        return MISSING_JOIN if len(gold.tables) > 1 and predicted.tables else WRONG_TABLE
    for category, part in ((WRONG_JOIN_KEY, "join_keys"), (WRONG_SET_OPERATION, "set_operations"),
                           (WRONG_GROUP_BY, "group_by"), (WRONG_ORDER_BY, "order_by"), (WRONG_SELECT, "select"),
                           (WRONG_WHERE, "where")):
        if getattr(gold, part) != getattr(predicted, part):
            return category
    return WRONG_RESULT


@dataclass(frozen=True)
class _Resolved:
    table: str | None  # None: an unqualified column of a SELECT reading several tables
    name: str
    reference: str | None  # the alias (or table name) it was read through, which tells a self-join's sides apart


def query_shape(sql: str) -> QueryShape:
    """The compared parts of `sql`; EvalError when the bounded parse refuses it (see safe_sql.parse_single_query)."""
    tree = parse_single_query(sqlite_text(sql))
    tables = [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and not is_cte(t)]
    selects = list(tree.find_all(exp.Select))
    sources = {id(s): _sources(s) for s in selects}
    columns = list(tree.find_all(exp.Column))
    resolved = {id(c): _resolve(c, sources) for c in columns}
    join_keys: set[frozenset[str]] = set()
    join_equalities: set[int] = set()  # ids of the EQ nodes that are join keys (left out of WHERE's conditions)
    for select in selects:
        join_keys.update(_using_keys(select))
        for condition in _conditions(select):
            key = _join_key(condition, resolved)
            if key is not None:
                join_keys.add(key)
                join_equalities.add(id(condition))
    _normalise(columns, resolved)
    queries = [n for n in tree.walk() if isinstance(n, (exp.Select, *_SET_OPERATIONS))]
    return QueryShape(
        tables=frozenset(fold_identifier(t.name) for t in tables),
        join_keys=frozenset(join_keys),
        set_operations=tuple(f"{n.key}{'' if n.args.get('distinct') else ' all'}" for n in queries
                             if isinstance(n, _SET_OPERATIONS)),
        group_by=tuple(g for s in selects if (g := _group_by(s)) != ((), ())),
        order_by=tuple(o for q in queries if (o := _order_by(q)) != ((), "", "")),
        select=tuple((bool(s.args.get("distinct")), tuple(_canonical(e.unalias()) for e in s.expressions))
                     for s in selects),
        where=tuple(w for s in selects if (w := tuple(sorted(_canonical(c) for c in _conditions(s)
                                                             if id(c) not in join_equalities)))),
    )


def _from(select: exp.Select) -> exp.Expression | None:
    found = select.args.get("from_") or select.args.get("from")  # "from" in older sqlglot
    return found.this if isinstance(found, exp.From) else None


def _sources(select: exp.Select) -> dict[str, str]:
    """{reference: table} of what `select` reads, in order: a table's alias (its name without one) to its name; a
    subquery's alias to itself."""
    found: dict[str, str] = {}
    for source in [_from(select), *(j.this for j in select.args.get("joins") or ())]:
        if isinstance(source, exp.Table):
            name = fold_identifier(source.name)
            found[fold_identifier(source.alias) if source.alias else name] = name
        elif isinstance(source, exp.Expression) and source.alias:
            found[fold_identifier(source.alias)] = fold_identifier(source.alias)
    return found


def _resolve(column: exp.Column, sources: Mapping[int, Mapping[str, str]]) -> _Resolved:
    """Which table `column` reads: its qualifier looked up in its SELECT, then in the enclosing ones (a correlated
    subquery); unqualified, the one table its SELECT reads, if it reads one."""
    name = fold_identifier(column.name)
    qualifier = fold_identifier(column.table) if column.table else None
    select = column.find_ancestor(exp.Select)
    if qualifier is None:
        visible = sources.get(id(select), {}) if select is not None else {}
        if len(visible) == 1:
            reference, table = next(iter(visible.items()))
            return _Resolved(table, name, reference)
        return _Resolved(None, name, None)
    while select is not None:
        visible = sources.get(id(select), {})
        if qualifier in visible:
            return _Resolved(visible[qualifier], name, qualifier)
        select = select.find_ancestor(exp.Select)
    return _Resolved(qualifier, name, qualifier)


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    """The conditions ANDed in `condition` (parentheses looked through), without recursion."""
    found: list[exp.Expression] = []
    stack = [condition] if condition is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, exp.And):
            stack.extend((node.expression, node.this))
        elif isinstance(node, exp.Paren):
            stack.append(node.this)
        else:
            found.append(node)
    return found


def _conditions(select: exp.Select) -> list[exp.Expression]:
    """The ANDed conditions of `select`'s ON clauses and its WHERE (for inner joins, one set of conditions)."""
    found: list[exp.Expression] = []
    for join in select.args.get("joins") or ():
        found.extend(_conjuncts(join.args.get("on")))
    where = select.args.get("where")
    found.extend(_conjuncts(where.this if isinstance(where, exp.Where) else None))
    return found


def _join_key(condition: exp.Expression, resolved: Mapping[int, _Resolved]) -> frozenset[str] | None:
    """`{a.x, b.y}` when `condition` is `a.x = b.y` between two different table references; None otherwise."""
    if not (isinstance(condition, exp.EQ) and isinstance(condition.this, exp.Column)
            and isinstance(condition.expression, exp.Column)):
        return None
    left, right = resolved.get(id(condition.this)), resolved.get(id(condition.expression))
    if left is None or right is None or left.table is None or right.table is None \
            or left.reference == right.reference:
        return None
    return frozenset((f"{left.table}.{left.name}", f"{right.table}.{right.name}"))


def _using_keys(select: exp.Select) -> list[frozenset[str]]:
    """`a JOIN b USING (x)`: the pair {a.x, b.x}, `a` being the table read just before `b`."""
    keys: list[frozenset[str]] = []
    previous = _from(select)
    for join in select.args.get("joins") or ():
        right = join.this
        if isinstance(previous, exp.Table) and isinstance(right, exp.Table):
            for column in join.args.get("using") or ():
                name = fold_identifier(column.name)
                keys.append(frozenset((f"{fold_identifier(previous.name)}.{name}",
                                       f"{fold_identifier(right.name)}.{name}")))
        previous = right
    return keys


def _is_double_quoted_string(column: exp.Column) -> bool:
    """Spider's `country = "France"`: an unqualified quoted name compared with something, which SQLite reads as a
    string unless a column has that name (not known here; Spider's gold means the string)."""
    return (not column.table and isinstance(column.this, exp.Identifier) and bool(column.this.args.get("quoted"))
            and isinstance(column.parent, exp.Predicate) and column.arg_key != "this")


def _select_alias_use(column: exp.Column) -> exp.Select | None:
    """The SELECT whose select alias an unqualified column in its ORDER BY or HAVING names, if it names one."""
    if column.table:
        return None
    clause = column.find_ancestor(exp.Order, exp.Having, exp.Select)
    if not isinstance(clause, exp.Order | exp.Having) or not isinstance(clause.parent, exp.Select):
        return None
    select = clause.parent
    name = fold_identifier(column.name)
    return select if any(isinstance(e, exp.Alias) and fold_identifier(e.alias) == name
                         for e in select.expressions) else None


def _normalise(columns: Sequence[exp.Column], resolved: Mapping[int, _Resolved]) -> None:
    """Rewrite the tree of `columns` in place so that equal parts print alike: each column as `table.name` (folded),
    Spider's double-quoted strings as strings, select aliases in ORDER BY / HAVING as what they stand for."""
    strings = [(c, c.name) for c in columns if _is_double_quoted_string(c)]  # the text as written, case kept
    aliased = [(c, s) for c in columns if (s := _select_alias_use(c)) is not None]
    for column in columns:
        where = resolved[id(column)]
        column.set("catalog", None)
        column.set("db", None)
        column.set("table", exp.Identifier(this=where.table, quoted=False) if where.table else None)
        if isinstance(column.this, exp.Identifier):
            column.set("this", exp.Identifier(this=where.name, quoted=False))
    for column, text in strings:
        column.replace(exp.Literal.string(text))
    for column, select in aliased:
        target = next(e for e in select.expressions
                      if isinstance(e, exp.Alias) and fold_identifier(e.alias) == column.name)
        column.replace(target.this.copy())


def _canonical(node: exp.Expression) -> str:
    """`node` as SQL, its nested queries each printed as one placeholder (their parts are compared on their own)."""
    node = node.copy()
    if isinstance(node, exp.Query):
        return _SUBQUERY
    for query in list(node.find_all(exp.Query)):
        if query.parent is not None:
            query.replace(exp.Var(this=_SUBQUERY))
    return node.sql(dialect="sqlite")


def _group_by(select: exp.Select) -> tuple[tuple[str, ...], tuple[str, ...]]:
    group = select.args.get("group")
    having = select.args.get("having")
    items = tuple(sorted(_canonical(e) for e in group.expressions)) if isinstance(group, exp.Group) else ()
    conditions = tuple(sorted(_canonical(c) for c in _conjuncts(having.this))) if isinstance(having, exp.Having) \
        else ()
    return items, conditions


def _order_by(query: exp.Expression) -> tuple[tuple[tuple[str, bool], ...], str, str]:
    order = query.args.get("order")
    items = tuple((_canonical(o.this), bool(o.args.get("desc"))) for o in order.expressions) \
        if isinstance(order, exp.Order) else ()
    limit, offset = query.args.get("limit"), query.args.get("offset")
    return (items, _canonical(limit) if isinstance(limit, exp.Expression) else "",
            _canonical(offset) if isinstance(offset, exp.Expression) else "")
