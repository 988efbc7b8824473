"""The SQL a WikiSQL question can have, for one table, as a grammar (llguidance's Lark dialect).

The grammar is exactly the language `experiments.data.prompt.render_sql` writes, with the table's own column names:

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

The grammar is also bounded, so that a model caught in a loop ('chicagoicagoicago...', 'AND ... AND ...') is made
to end its query rather than run to `inference.max_new_tokens` and leave it unfinished (invalid SQL): at most
MAX_CONDITIONS conditions (WikiSQL's most), a string value of at most `max_string_chars(table)` characters (twice
the table's longest cell, and never under MIN_STRING_BOUND: a WHERE value is compared with the table's cells), a
number of at most 30 digits before its point (NUMBER_PATTERN).
"""

from __future__ import annotations

import json

from experiments.data.prompt import TABLE_NAME, quote_identifier
from experiments.data.records import AGG_OPS, COND_OPS, Table

AGGREGATIONS: tuple[str, ...] = tuple(agg for agg in AGG_OPS if agg)
OPERATORS: tuple[str, ...] = tuple(op for op in COND_OPS if op != "OP")  # "OP" is the release's unused operator
# quote_string's output, newline excepted (see the module docstring)
STRING_PATTERN = r"'([^'\n]|'')*'"
# format_number's output for a finite number: an integer (str(int)) of up to 30 digits, or repr(float) such as 3.5,
# -0.25, 1e-05, 1.2345678901234568e+16 (at most 17 significant digits, after at most 4 zeros). Non-finite values are
# not numbers SQL can hold and are left out.
NUMBER_PATTERN = r"-?(0|[1-9][0-9]{0,29})(\.[0-9]{1,22})?(e[+-][0-9]{1,3})?"
MAX_CONDITIONS = 4  # WikiSQL's questions have 0 to 4 conditions
MIN_STRING_BOUND = 64  # characters a string value may always have, however short the table's cells


def max_string_chars(table: Table) -> int:
    """The longest string value the grammar lets a query compare with: twice the table's longest cell as the
    prompt shows it, at least MIN_STRING_BOUND."""
    longest = max((len(str(cell)) for row in table.rows for cell in row), default=0)
    return max(MIN_STRING_BOUND, 2 * longest)


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
    more_conditions = ""
    for _ in range(MAX_CONDITIONS - 1):  # (" AND " condition (" AND " condition ...)?)?
        more_conditions = f'(" AND " condition {more_conditions})?'
    string_pattern = STRING_PATTERN.replace(")*'", f"){{0,{max_string_chars(table)}}}'")
    return f"""start: " "? "SELECT " select " FROM " {lark_literal(quote_identifier(table_name))} where? "\\n"?
select: column | AGG "(" column ")"
where: " WHERE " condition {more_conditions}
condition: column " " OP " " value
value: STRING | NUMBER
column: {alternatives}
AGG: {aggregations}
OP: {operators}
STRING: /{string_pattern}/
NUMBER: /{NUMBER_PATTERN}/
"""
