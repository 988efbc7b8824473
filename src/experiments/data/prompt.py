"""The one prompt template and the one gold-SQL renderer; training, inference and evaluation all call these.

Changing either changes what every run learns and is scored on: `PROMPT_VERSION` is recorded with each run so
comparisons between runs with different templates can be flagged.
"""

from __future__ import annotations

import math
import re

from experiments.data.records import AGG_OPS, COND_OPS, CondValue, Query, Table

PROMPT_VERSION = "v1"
TABLE_NAME = "t"  # the table name the prompt shows; the evaluator accepts any single table name in FROM
SQL_SECTION = "### SQL\n"
_WHITESPACE = re.compile(r"\s+")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_number(value: float) -> str:
    """1990.0 -> '1990', 3.50 -> '3.5': numbers as a person writes them."""
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def number_or_none(value: object) -> float | None:
    """A finite number from a number or numeric text (thousands separators allowed); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).replace(",", "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def render_value(value: CondValue, column_type: str) -> str:
    """A condition value as an SQL literal: numbers as numbers (JSON numbers, or numeric text in a real column)."""
    number = number_or_none(value) if isinstance(value, int | float) or column_type == "real" else None
    if number is not None:
        return format_number(number)
    return quote_string(str(value))


def render_sql(query: Query, table: Table, table_name: str = TABLE_NAME) -> str:
    """Gold SQL for a logical form: double-quoted identifiers, single-quoted strings, numbers as numbers."""
    column = quote_identifier(table.header[query.sel])
    agg = AGG_OPS[query.agg]
    select = f"{agg}({column})" if agg else column
    sql = f"SELECT {select} FROM {quote_identifier(table_name)}"
    if query.conds:
        conditions = [
            f"{quote_identifier(table.header[col])} {COND_OPS[op]} {render_value(value, table.types[col])}"
            for col, op, value in query.conds
        ]
        sql += " WHERE " + " AND ".join(conditions)
    return sql


def schema_line(table: Table, table_name: str = TABLE_NAME) -> str:
    columns = ", ".join(f"{quote_identifier(h)} {t.upper()}" for h, t in zip(table.header, table.types, strict=True))
    return f"CREATE TABLE {quote_identifier(table_name)} ({columns})"


def build_prompt(question: str, table: Table) -> str:
    """Schema section, question section, SQL section; the model's continuation is the SQL."""
    question = _WHITESPACE.sub(" ", question).strip()
    return f"### Schema\n{schema_line(table)}\n### Question\n{question}\n{SQL_SECTION}"
