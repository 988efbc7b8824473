"""How hard a gold query is: Spider's hardness levels, computed from the SQL, and BIRD's difficulty, read from the data.

Spider (test-suite-sql-eval's `Evaluator.eval_hardness`) sorts a gold query into easy / medium / hard / extra from
three counts taken on the outermost query only (for a set operation, on its first SELECT):
- component1: one each for WHERE, GROUP BY, ORDER BY and LIMIT; one per table joined beyond the first; one per OR
  connective and one per LIKE condition in the JOIN conditions, WHERE and HAVING;
- component2: one per subquery used as a condition's value in the JOIN conditions, WHERE or HAVING, plus one for a
  UNION / INTERSECT / EXCEPT (only one: the official parser nests a chain of them into the right operand);
- others: one each for "more than one aggregation", "more than one SELECT column", "more than one WHERE condition"
  and "more than one GROUP BY column".
`_level` holds the official thresholds on those counts.

The official code counts on the `sql` dict of its own parser (process_sql); this module counts on sqlglot's tree
(through sql_parse.parse_sql) and reproduces that parser's reading, quirks included:
- "Aggregations" are what the official `count_agg` sees: SELECT items that are a MAX/MIN/COUNT/SUM/AVG call; in
  ORDER BY, such calls as an item or as either operand of one arithmetic operation; GROUP BY items that are such
  calls; WHERE conditions negated with NOT (NOT IN, NOT LIKE, NOT BETWEEN: the official code reads the condition's
  NOT flag where it means the aggregation); and in HAVING, the NOT conditions plus every AND/OR connective (it reads
  the first character of 'and'/'or' as an aggregation id), while HAVING's own aggregate calls count for nothing.
- A subquery used as a table in FROM counts as a joined table, not in component2; a subquery anywhere else than a
  condition's value (in SELECT, or inside a subquery) counts for nothing.
- ORDER BY and LIMIT written after a set operation belong, for the official parser, to its last SELECT, so they do
  not count; so here they do not either.
Where the counting can differ: on SQL the official parser cannot read (it raises) this module still answers —
comma joins (`FROM a, b`, counted here as joins), parenthesised or NOT-prefixed conditions (flattened here), IS NULL,
EXISTS, `<>`, a subquery in SELECT or on a condition's left side, an aggregate followed by arithmetic in SELECT,
aggregates other than the five, JOIN ... USING, an aliased FROM subquery. Spider's gold queries avoid these (the
official evaluator has to parse every one of them).

BIRD's difficulty (simple / moderate / challenging) comes with each example: `bird_difficulty` only normalises it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp
from sqlglot.errors import SqlglotError

from experiments.sql.sql_parse import parse_sql

Hardness = Literal["easy", "medium", "hard", "extra"]
HARDNESS_LEVELS: tuple[Hardness, ...] = ("easy", "medium", "hard", "extra")
BIRD_DIFFICULTIES: tuple[str, ...] = ("simple", "moderate", "challenging")

_AGGREGATES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)
_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)


@dataclass(frozen=True)
class HardnessCounts:
    component1: int
    component2: int
    others: int

    @property
    def level(self) -> Hardness:
        return _level(self.component1, self.component2, self.others)


def _level(component1: int, component2: int, others: int) -> Hardness:
    """The official thresholds."""
    if component1 <= 1 and others == 0 and component2 == 0:
        return "easy"
    if component2 == 0 and ((others <= 2 and component1 <= 1) or (component1 <= 2 and others < 2)):
        return "medium"
    if ((others > 2 and component1 <= 2 and component2 == 0)
            or (2 < component1 <= 3 and others <= 2 and component2 == 0)
            or (component1 <= 1 and others == 0 and component2 <= 1)):
        return "hard"
    return "extra"


def spider_hardness(sql: str) -> Hardness:
    """Spider's hardness level of a gold query; ValueError when it does not parse as one SELECT statement."""
    return hardness_counts(sql).level


@dataclass
class _Condition:
    """A WHERE / HAVING / JOIN condition as the official parser flattens it: conditions and their connectives."""
    leaves: list[exp.Expression]
    connectives: list[str]

    @property
    def negated(self) -> int:
        return sum(_is_negated(leaf) for leaf in self.leaves)

    @property
    def likes(self) -> int:
        return sum(isinstance(_unnegated(leaf), exp.Like | exp.ILike) for leaf in self.leaves)

    @property
    def ors(self) -> int:
        return self.connectives.count("or")

    @property
    def subqueries(self) -> int:
        return sum(_count_subqueries(leaf) for leaf in self.leaves)


def _is_negated(leaf: exp.Expression) -> bool:
    """NOT x, or a negated operator (sqlglot keeps `x NOT LIKE y` as a Like with negate=True)."""
    return isinstance(leaf, exp.Not) or bool(leaf.args.get("negate"))


def _unnegated(leaf: exp.Expression) -> exp.Expression:
    return leaf.this if isinstance(leaf, exp.Not) else leaf


def _flatten(condition: exp.Expression | None) -> _Condition:
    flat = _Condition([], [])
    if condition is None:
        return flat
    stack: list[exp.Expression | str] = [condition]
    while stack:  # in order, left to right, without recursion
        node = stack.pop()
        if isinstance(node, str):
            flat.connectives.append(node)
        elif isinstance(node, exp.Paren):
            stack.append(node.this)
        elif isinstance(node, exp.And | exp.Or):
            stack.extend([node.expression, "and" if isinstance(node, exp.And) else "or", node.this])
        else:
            flat.leaves.append(node)
    return flat


def _count_subqueries(node: exp.Expression) -> int:
    """Subqueries in `node`, not counting those inside another subquery."""
    count = 0
    stack = list(node.iter_expressions())
    while stack:
        child = stack.pop()
        if isinstance(child, (exp.Subquery, exp.Select, *_SET_OPERATIONS)):
            count += 1
        else:
            stack.extend(child.iter_expressions())
    return count


def _is_aggregate(node: exp.Expression | None) -> bool:
    return isinstance(node, _AGGREGATES)


def _order_aggregates(node: exp.Expression) -> int:
    if isinstance(node, exp.Ordered):
        node = node.this
    if isinstance(node, _ARITHMETIC):
        return _is_aggregate(node.this) + _is_aggregate(node.expression)
    return int(_is_aggregate(node))


def _unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Subquery | exp.Paren):
        node = node.this
    return node


def _first_select(sql: str) -> tuple[exp.Select, int]:
    try:
        statements = parse_sql(sql)
    except SqlglotError as error:
        raise ValueError(f"cannot parse the SQL: {error}") from None
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    node = _unwrap(statements[0])
    set_operations = 0
    while isinstance(node, _SET_OPERATIONS):
        set_operations = 1
        node = _unwrap(node.this)
    if not isinstance(node, exp.Select):
        raise ValueError(f"not a SELECT query: {type(node).__name__}")
    return node, set_operations


def _items(node: exp.Expression | None) -> Iterator[exp.Expression]:
    if node is not None:
        yield from node.expressions


def hardness_counts(sql: str) -> HardnessCounts:
    """The official counts (component1, component2, others) of `sql`; ValueError when it is not one SELECT query."""
    select, set_operations = _first_select(sql)
    from_clause = select.args.get("from_") or select.args.get("from")
    joins = select.args.get("joins") or []
    join_conditions = [_flatten(join.args.get("on")) for join in joins]
    joined = _Condition([leaf for c in join_conditions for leaf in c.leaves],
                        [connective for c in join_conditions for connective in c.connectives])
    where_clause = select.args.get("where")
    where = _flatten(where_clause.this if where_clause else None)
    having_clause = select.args.get("having")
    having = _flatten(having_clause.this if having_clause else None)
    group = list(_items(select.args.get("group")))
    order = list(_items(select.args.get("order")))
    conditions = (joined, where, having)

    tables = (1 if from_clause is not None else 0) + len(joins)
    component1 = (bool(where.leaves) + bool(group) + bool(order) + (select.args.get("limit") is not None)
                  + max(tables - 1, 0) + sum(c.ors for c in conditions) + sum(c.likes for c in conditions))
    component2 = sum(c.subqueries for c in conditions) + set_operations

    columns = [item.this if isinstance(item, exp.Alias) else item for item in select.expressions]
    aggregates = (sum(_is_aggregate(c) for c in columns) + where.negated + sum(_is_aggregate(g) for g in group)
                  + sum(_order_aggregates(o) for o in order) + having.negated + len(having.connectives))
    others = (aggregates > 1) + (len(columns) > 1) + (len(where.leaves) > 1) + (len(group) > 1)
    return HardnessCounts(component1=component1, component2=component2, others=others)


def bird_difficulty(value: object) -> str | None:
    """BIRD's difficulty label as one of BIRD_DIFFICULTIES (case and surrounding space ignored); None when the
    example has none (None or blank); ValueError for any other value."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"BIRD difficulty must be text, got {type(value).__name__}: {value!r}")
    label = value.strip().casefold()
    if not label:
        return None
    if label not in BIRD_DIFFICULTIES:
        raise ValueError(f"unknown BIRD difficulty {value!r} (expected one of {', '.join(BIRD_DIFFICULTIES)})")
    return label
