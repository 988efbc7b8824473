"""sqlglot's parser on untrusted SQL, within bounds: every parse of a prediction (scoring, logical forms, the
analysis, execution-guided decoding) goes through `parse_sql`, and every tokenizing through `tokenize_sql`.

sqlglot parses in pure Python, in the evaluator's own process, not in the sandboxed SQL worker: unbounded, one
1 MB `SELECT 1+1+...` took the analysis step 17 s and 1 GB, and deep nesting runs out of Python's stack. A
generated WikiSQL query is ~100 characters, ~30 tokens and nested a few levels, so these bounds only refuse
garbage, and they are checked before the expensive step they protect: the length before tokenizing, the tokens
and parentheses before parsing, the tree's depth before anything recurses into it.
"""

from __future__ import annotations

import logging

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, TokenType

MAX_SQL_CHARS = 20_000  # characters; tokenizing this many takes ~0.06 s, parsing ~0.05 s
MAX_SQL_TOKENS = 5_000
MAX_PAREN_DEPTH = 20  # sqlglot's recursive-descent parser runs out of Python's stack at ~45
MAX_TREE_DEPTH = 100  # what reads the tree (logical forms, sqlglot's SQL generator) recurses into it

_SEMICOLON = getattr(exp, "Semicolon", ())  # a trailing `; -- comment`, in recent sqlglot


class _QuietFallback(logging.Filter):
    """Drop sqlglot's warning for statements it can only parse as a raw command (the evaluator refuses those);
    otherwise every hostile prediction would print a warning mid-progress-bar."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_QuietFallback())


class SQLTooLarge(ValueError):
    """SQL past one of the bounds above, refused without parsing it (or without reading its tree)."""


def tokenize_sql(sql: str) -> list[Token]:
    """sqlglot's tokens of `sql` (SQLite dialect), or SQLTooLarge when it is too long or has too many tokens;
    sqlglot's TokenError (an unterminated string, ...) is raised as it comes."""
    if len(sql) > MAX_SQL_CHARS:
        raise SQLTooLarge(f"SQL is {len(sql):,} characters long (limit {MAX_SQL_CHARS:,})")
    tokens = Dialect.get_or_raise("sqlite").tokenize(sql)
    if len(tokens) > MAX_SQL_TOKENS:
        raise SQLTooLarge(f"SQL has {len(tokens):,} tokens (limit {MAX_SQL_TOKENS:,})")
    return tokens


def parse_sql(sql: str) -> list[exp.Expression]:
    """The statements of `sql` (SQLite dialect; bare semicolons dropped), or SQLTooLarge when it is too long, has
    too many tokens or is nested too deeply. sqlglot's own errors (ParseError, TokenError) are raised as they come."""
    tokens = tokenize_sql(sql)
    dialect = Dialect.get_or_raise("sqlite")
    depth = deepest = 0
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
    if deepest > MAX_PAREN_DEPTH:
        raise SQLTooLarge(f"SQL nests parentheses {deepest} deep (limit {MAX_PAREN_DEPTH})")
    try:
        parsed = dialect.parser().parse(tokens, sql)
    except RecursionError:  # deep nesting without parentheses (NOT NOT NOT ...)
        raise SQLTooLarge(f"SQL is nested too deeply to parse (parentheses at most {MAX_PAREN_DEPTH} deep)") from None
    statements = [s for s in parsed if s is not None and not isinstance(s, _SEMICOLON)]
    for statement in statements:
        if tree_depth(statement) > MAX_TREE_DEPTH:
            raise SQLTooLarge(f"SQL is nested more than {MAX_TREE_DEPTH} levels deep (a chain of that many "
                              "operators, or subqueries)")
    return statements


def tree_depth(tree: exp.Expression) -> int:
    """The number of levels in `tree`, counted without recursion (the tree may be deeper than Python's stack)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_expressions())
    return deepest
