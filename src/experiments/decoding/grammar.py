"""The SQL a WikiSQL question can have, for one table, as a grammar (llguidance's Lark dialect).

The grammar is exactly the language `experiments.prompt.render_sql` writes, with the table's own column names:

    SELECT [AGG(]"column"[)] FROM "t" [WHERE "column" op value [AND "column" op value]...]

AGG is one of MAX, MIN, COUNT, SUM, AVG around exactly one real column; op is =, > or <; a value is a
single-quoted string ('' for a quote) or a number as `format_number` writes it. Identifiers and the table name
are quoted by `quote_identifier` itself, so a header holding quotes, parentheses, dots or any Unicode is spelled
the way the prompt and the gold SQL spell it. Nothing else is allowed: no other column, no `;`, no second
statement, no other spacing.

The grammar accepts one optional leading space. Training tokenises the target as the prompt's continuation
('SELECT' ...), but Mistral's SentencePiece tokenizer writes the same SQL on its own as '▁SE' 'LECT' ..., the
natural start for a base model zero-shot or an adapter trained on targets tokenised alone; `clean_generation`
strips the space either way. It accepts one optional newline at the end, because inference stops at any
newline as well as at EOS; the end of the grammar is where EOS becomes allowed (llguidance allows EOS exactly
when the grammar is complete). A string value cannot hold a newline for the same reason: generation would stop
inside it.
"""

from __future__ import annotations

import json

from experiments.data.model import AGG_OPS, COND_OPS, Table
from experiments.prompt import TABLE_NAME, quote_identifier

AGGREGATIONS: tuple[str, ...] = tuple(agg for agg in AGG_OPS if agg)
OPERATORS: tuple[str, ...] = tuple(op for op in COND_OPS if op != "OP")  # "OP" is the release's unused operator
# quote_string's output, newline excepted (see the module docstring)
STRING_PATTERN = r"'([^'\n]|'')*'"
# format_number's output for a finite number: an integer (str(int)), or repr(float) such as 3.5, -0.25, 1e-05,
# 1.2345678901234568e+16. Non-finite values are not numbers SQL can hold and are left out.
NUMBER_PATTERN = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?(e[+-][0-9]+)?"


def lark_literal(text: str) -> str:
    """`text` as a Lark string literal: llguidance reads string literals as JSON strings, so JSON escaping
    spells any character (quotes, backslashes, control characters) exactly."""
    return json.dumps(text, ensure_ascii=False)


def sql_grammar(table: Table, table_name: str = TABLE_NAME) -> str:
    """The Lark grammar of the SQL `render_sql` can write for `table` (see the module docstring)."""
    if not table.header:
        raise ValueError(f"table {table.id!r} has no columns: no SQL can be generated for it")
    columns = list(dict.fromkeys(lark_literal(quote_identifier(name)) for name in table.header))  # header order
    alternatives = "\n    | ".join(columns)
    aggregations = " | ".join(lark_literal(agg) for agg in AGGREGATIONS)
    operators = " | ".join(lark_literal(op) for op in OPERATORS)
    return f"""start: " "? "SELECT " select " FROM " {lark_literal(quote_identifier(table_name))} where? "\\n"?
select: column | AGG "(" column ")"
where: " WHERE " condition (" AND " condition)*
condition: column " " OP " " value
value: STRING | NUMBER
column: {alternatives}
AGG: {aggregations}
OP: {operators}
STRING: /{STRING_PATTERN}/
NUMBER: /{NUMBER_PATTERN}/
"""
