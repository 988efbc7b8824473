"""The SQL a Spider or BIRD question can have, for one database, as a grammar (llguidance's Lark dialect).

`database_grammar(database)` is the SQLite SELECT language their gold queries use: joins (`,`, `JOIN`, `INNER` /
`LEFT [OUTER]` / `CROSS JOIN`, `ON`), table aliases, subqueries in FROM, WHERE, HAVING and the select list, `EXISTS`,
GROUP BY, HAVING, ORDER BY ... ASC/DESC, LIMIT [OFFSET], UNION [ALL] / INTERSECT / EXCEPT, aggregates (with
DISTINCT, `count(*)`) and SQLite's scalar functions (FUNCTIONS, each with the numbers of arguments SQLite accepts),
CASE, CAST, arithmetic and `||`, comparisons, [NOT] LIKE / BETWEEN / IN (a list or a subquery), IS [NOT] NULL,
NOT, AND / OR, SELECT DISTINCT, column aliases (`AS name`), string and number literals. Keywords and function
names are case-insensitive.

Names. Every table name is one of the database's, every column name one of its columns, compared as SQLite does
(ASCII case-insensitively): bare where SQLite allows the name bare (an identifier that is not in RESERVED), and
always in double quotes, backquotes or brackets (`""` / ``` `` ``` for a quote inside). A column may be qualified,
`qualifier.column` or `qualifier.*`, by a table name or a table alias. Aliases follow one bounded rule, ALIAS: a
letter and at most two digits (T1 ... T99, t1, a, T), which covers Spider's and BIRD's T1, T2, ...; since no SQL
keyword is one letter, an alias can never be read as a keyword. The grammar does not check that an alias is
defined, that a qualified column belongs to its table, that a bare column belongs to a table in FROM, or types.
A column alias (`AS cnt`, after a select item) may be any short identifier but cannot be referred to again: a
later bare `cnt` must be a real column. A double-quoted word in an expression is also a string literal (SQLite
reads an unknown double-quoted identifier as a string), so only bare and qualified unknown names are refused.

One statement: an optional leading space (SentencePiece writes the SQL on its own as '▁SE' 'LECT'), the query, an
optional `;`, an optional newline (inference stops at one), then EOS. No other statement, no write, no PRAGMA or
ATTACH, no comment (a minus is never followed at once by a negative number: SQLite reads `a --1` as `a` and a
comment), no WITH, no window function. Spaces between words are 1 to MAX_SPACES spaces or tabs.

Bounded, so that a model caught in a loop must end its query (as the WikiSQL grammar is): every list has a
maximum length (MAX_* below), an ON condition at most MAX_ON_CONDITIONS predicates and a FROM at most one join per
table of the database (`join_limit`: the loops a small model fell into were ON ... OR ... chains and repeated joins,
which gold queries never have), string literals at most `max_string_chars` characters, numbers at most 30 digits, and
nesting at most MAX_DEPTH deep, where every parenthesis opens a level: a subquery, a function call, CAST, a
parenthesised expression, an IN list, and CASE. Each level is its own copy of the expression and query rules, so
the grammar is finite.
"""

from __future__ import annotations

import re

from experiments.data.schema import Database

MAX_DEPTH = 6  # nested parentheses of any kind (see the module docstring); 0 is the top level
MAX_SELECT_ITEMS = 12
MAX_CONDITIONS = 8  # predicates in one AND chain, and AND chains in one OR chain
MAX_ON_CONDITIONS = 4  # predicates, AND and OR together, in one ON (Spider dev's gold have at most 2)
MAX_JOINS = 7  # tables after the first in one FROM, and at most as many as the database has tables
MAX_SET_OPERATIONS = 3  # UNION / INTERSECT / EXCEPT in one query
MAX_GROUP_ITEMS = 6
MAX_ORDER_ITEMS = 6
MAX_ARITHMETIC = 6  # binary operators (+ - * / % ||) in one expression
MAX_FUNCTION_ARGS = 6
MAX_IN_VALUES = 16
MAX_WHENS = 6  # WHEN ... THEN ... in one CASE
MAX_STRING_CHARS = 128
MAX_SPACES = 4

# Words SQLite 3.40 refuses as a bare table or column name in a query (found by trying each of its 147 keywords):
# a name among these is offered only quoted.
RESERVED: frozenset[str] = frozenset({
    "ADD", "ALL", "ALTER", "AND", "AS", "AUTOINCREMENT", "BETWEEN", "CASE", "CAST", "CHECK", "COLLATE", "COMMIT",
    "CONSTRAINT", "CREATE", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "DEFAULT", "DEFERRABLE", "DELETE",
    "DISTINCT", "DROP", "ELSE", "ESCAPE", "EXCEPT", "EXISTS", "FOREIGN", "FROM", "GROUP", "HAVING", "IN", "INDEX",
    "INSERT", "INTERSECT", "INTO", "IS", "ISNULL", "JOIN", "LIMIT", "NOT", "NOTHING", "NOTNULL", "NULL", "ON", "OR",
    "ORDER", "PRIMARY", "RAISE", "REFERENCES", "RETURNING", "SELECT", "SET", "TABLE", "THEN", "TO", "TRANSACTION",
    "UNION", "UNIQUE", "UPDATE", "USING", "VALUES", "WHEN", "WHERE"})
# SQLite's aggregates and core scalar and date functions, by how many arguments each takes as SQLite 3.40 accepts
# them (min, max; tried for each): a small model otherwise writes `abs(a, b)` or `length(x, y)`, which SQLite
# refuses ("wrong number of arguments"). Only count takes `*`; DISTINCT stands before a single argument.
FUNCTION_ARITIES: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 1): ("count",),
    (1, 1): ("sum", "avg", "total", "abs", "hex", "length", "lower", "sign", "typeof", "unicode", "upper"),
    (1, 2): ("group_concat", "ltrim", "rtrim", "trim", "round"),
    (1, MAX_FUNCTION_ARGS): ("min", "max"),  # one argument: the aggregate; more: the scalar function
    (2, 2): ("ifnull", "instr", "nullif"),
    (2, 3): ("substr", "substring"),
    (2, MAX_FUNCTION_ARGS): ("coalesce",),
    (3, 3): ("iif", "replace"),
    (0, MAX_FUNCTION_ARGS): ("char", "date", "datetime", "julianday", "printf", "strftime", "time"),
}
FUNCTIONS: tuple[str, ...] = tuple(name for names in FUNCTION_ARITIES.values() for name in names)
CAST_TYPES: tuple[str, ...] = ("REAL", "INTEGER", "INT", "TEXT", "NUMERIC", "FLOAT", "DOUBLE", "DECIMAL", "BLOB",
                               "DATE", "DATETIME", "VARCHAR", "BIGINT")
BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ALIAS_PATTERN = r"[A-Za-z][0-9]{0,2}"
COLUMN_ALIAS_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,29}"
UNSIGNED_PATTERN = r"([0-9]{1,30}(\.[0-9]{0,22})?|\.[0-9]{1,22})([eE][+-]?[0-9]{1,3})?"
NUMBER_PATTERN = "-?" + UNSIGNED_PATTERN
INTEGER_PATTERN = r"[0-9]{1,9}"


def _regex_char(char: str) -> str:
    """One character as an llguidance regex matches it the way SQLite compares identifiers: ASCII letters in
    either case, anything else exactly (escaped by code point, so no character is special)."""
    if char.isascii() and char.isalpha():
        return f"[{char.upper()}{char.lower()}]"
    if char.isascii() and (char.isdigit() or char == "_"):
        return char
    return f"\\x{{{ord(char):X}}}"


def _spelled(text: str) -> str:
    return "".join(_regex_char(char) for char in text)


def name_spellings(name: str) -> list[str]:
    """Regexes of every way SQL may write the identifier `name`: bare (when SQLite allows it), double-quoted,
    backquoted and in brackets, all ASCII case-insensitive."""
    spellings = []
    if BARE_NAME.fullmatch(name) and name.upper() not in RESERVED:
        spellings.append(_spelled(name))
    spellings.append(_spelled('"' + name.replace('"', '""') + '"'))
    spellings.append(_spelled("`" + name.replace("`", "``") + "`"))
    if "]" not in name:
        spellings.append(_spelled(f"[{name}]"))
    return spellings


def names_pattern(names: list[str]) -> str:
    """One regex for any of `names` in any spelling."""
    return "(" + "|".join(dict.fromkeys(s for name in names for s in name_spellings(name))) + ")"


def _repeat(item: str, separator: str, most: int) -> str:
    """`item`, then up to `most - 1` more, each after `separator`."""
    return f"{item} ({separator} {item}){{0,{most - 1}}}" if most > 1 else item


def join_limit(database: Database) -> int:
    """How many sources may follow a FROM's first: one per table of the database (a self-join binds one table
    twice), at most MAX_JOINS. Spider dev's gold queries never bind more; a model repeating a join must stop."""
    return min(MAX_JOINS, len(database.tables))


def _arguments(item: str, separator: str, arity: tuple[int, int]) -> str:
    """A call's arguments, `arity` = (fewest, most): `*` for count's (0, 1), DISTINCT before a single one."""
    fewest, most = arity
    listed = f"{item} ({separator} {item}){{{max(fewest - 1, 0)},{most - 1}}}" if most > 1 else item
    alternatives = [f"({listed})?" if fewest == 0 else listed]
    if fewest <= 1:
        alternatives.append(f'"DISTINCT"i WS {item}')
    if arity == (0, 1):
        alternatives.append('"*"')
    return "(" + " | ".join(alternatives) + ")"


def _level_rules(level: int, max_joins: int) -> list[str]:
    """The query and expression rules at nesting `level`: what opens a parenthesis uses level + 1, and the
    deepest level has none."""
    n, deeper = level, level + 1
    inner = level < MAX_DEPTH
    arith = "WS? ARITH WS?"  # but minus, below
    comma, word_or, word_and = 'WS? "," WS?', 'WS "OR"i WS', 'WS "AND"i WS'
    word_and_or = 'WS ("AND"i | "OR"i) WS'
    rules = [
        f"query{n}: core{n} (WS setop WS core{n}){{0,{MAX_SET_OPERATIONS}}} order{n}? limit?",
        f'core{n}: "SELECT"i WS ("DISTINCT"i WS | "ALL"i WS)? {_repeat(f"item{n}", comma, MAX_SELECT_ITEMS)} '
        f'from{n}? (WS "WHERE"i WS bool{n})? '
        f'(WS "GROUP"i WS "BY"i WS {_repeat(f"expr{n}", comma, MAX_GROUP_ITEMS)} (WS "HAVING"i WS bool{n})?)?',
        f'item{n}: "*" | QUALIFIER "." "*" | bool{n} (WS "AS"i WS COLUMN_ALIAS)?',
        f'from{n}: WS "FROM"i WS source{n} join{n}{{0,{max_joins}}}',
        f'join{n}: {comma} source{n} | WS join WS source{n} (WS "ON"i WS on{n})?',
        f'on{n}: {_repeat(f"pred{n}", word_and_or, MAX_ON_CONDITIONS)}',
        f"source{n}: TABLE (WS (\"AS\"i WS)? ALIAS)?"
        + (f' | "(" WS? query{deeper} WS? ")" (WS? ("AS"i WS)? ALIAS)?' if inner else ""),
        f'order{n}: WS "ORDER"i WS "BY"i WS {_repeat(f"ordered{n}", comma, MAX_ORDER_ITEMS)}',
        f'ordered{n}: expr{n} (WS ("ASC"i | "DESC"i))?',
        f'bool{n}: {_repeat(f"conj{n}", word_or, MAX_CONDITIONS)}',
        f'conj{n}: {_repeat(f"pred{n}", word_and, MAX_CONDITIONS)}',
        f'pred{n}: ("NOT"i WS)? test{n}' + (f' | ("NOT"i WS)? "EXISTS"i WS? "(" WS? query{deeper} WS? ")"'
                                             if inner else ""),
        f"test{n}: expr{n} | expr{n} WS? CMP WS? expr{n}"
        f' | expr{n} WS ("NOT"i WS)? "BETWEEN"i WS expr{n} WS "AND"i WS expr{n}'
        f' | expr{n} WS ("NOT"i WS)? ("LIKE"i | "GLOB"i) WS expr{n}'
        f' | expr{n} WS "IS"i WS ("NOT"i WS)? expr{n}'
        + (f' | expr{n} WS ("NOT"i WS)? "IN"i WS? "(" WS? (query{deeper} | '
           f'{_repeat(f"expr{deeper}", comma, MAX_IN_VALUES)}) WS? ")"' if inner else ""),
        # an operator followed at once by a negative number would be SQLite's comment: `a --1` reads as `a`
        f'expr{n}: term{n} (({arith} | WS? "-" WS) term{n} | WS? "-" unsigned{n}){{0,{MAX_ARITHMETIC}}}',
        f"unsigned{n}: column | unsigned_literal" + (f" | call{n}" if inner else ""),
        f"term{n}: column | literal" + (f" | call{n}" if inner else ""),
    ]
    if inner:
        rules.append(f"call{n}: " + (
            " | ".join(f'FUNCTION{group} WS? "(" WS? {_arguments(f"bool{deeper}", comma, arity)} WS? ")"'
                       for group, arity in enumerate(FUNCTION_ARITIES))
            + f' | "(" WS? bool{deeper} WS? ")" | "(" WS? query{deeper} WS? ")"'
            f' | "CAST"i WS? "(" WS? expr{deeper} WS "AS"i WS CAST_TYPE WS? ")"'
            f' | "CASE"i WS (expr{deeper} WS)? ("WHEN"i WS bool{deeper} WS "THEN"i WS expr{deeper} WS)'
            f'{{1,{MAX_WHENS}}} ("ELSE"i WS expr{deeper} WS)? "END"i'))
    return rules


def database_grammar(database: Database, max_string_chars: int = MAX_STRING_CHARS) -> str:
    """The Lark grammar (llguidance) of the SQL a question on `database` may be answered with: see the module
    docstring for what it accepts and what it leaves unchecked."""
    tables = [table.name for table in database.tables]
    columns = list(dict.fromkeys(column.name for table in database.tables for column in table.columns))
    if not tables or not columns:
        raise ValueError(f"database {database.id!r} has no tables or no columns: no SQL can be generated for it")
    rules = ['start: " "? query0 (WS? ";")? "\\n"?']
    for level in range(MAX_DEPTH + 1):
        rules.extend(_level_rules(level, join_limit(database)))
    string, space = f"{{0,{max_string_chars}}}", f"[ \\t]{{1,{MAX_SPACES}}}"
    rules += [
        'column: COLUMN | QUALIFIER "." COLUMN',
        # multi-word keywords are rules, not one lexeme: the lexer is greedy, so a lexeme 'UNION( ALL)?' would read
        # the space of 'UNION SELECT' and then fail on 'S'
        'setop: "UNION"i (WS "ALL"i)? | "INTERSECT"i | "EXCEPT"i',
        'join: (("INNER"i | "CROSS"i | "LEFT"i (WS "OUTER"i)?) WS)? "JOIN"i',
        'literal: NUMBER | STRING | "NULL"i | "TRUE"i | "FALSE"i',
        'unsigned_literal: UNSIGNED | STRING | "NULL"i | "TRUE"i | "FALSE"i',
        'limit: WS "LIMIT"i WS INTEGER (WS? "," WS? INTEGER | WS "OFFSET"i WS INTEGER)?',
        *(f"FUNCTION{group}: /({'|'.join(_spelled(f) for f in names)})/"
          for group, names in enumerate(FUNCTION_ARITIES.values())),
        f"CAST_TYPE: /({'|'.join(_spelled(t) for t in CAST_TYPES)})/",
        f"TABLE: /{names_pattern(tables)}/",
        f"COLUMN: /{names_pattern(columns)}/",
        f"QUALIFIER: /{names_pattern(tables)}|{ALIAS_PATTERN}/",
        f"ALIAS: /{ALIAS_PATTERN}/",
        f'COLUMN_ALIAS: /{COLUMN_ALIAS_PATTERN}|"[^"\\n]{{1,30}}"/',
        r"CMP: /=|==|!=|<>|<|<=|>|>=/",
        r"ARITH: /[+*\/%]|\|\|/",
        f"NUMBER: /{NUMBER_PATTERN}/",
        f"UNSIGNED: /{UNSIGNED_PATTERN}/",
        f"INTEGER: /{INTEGER_PATTERN}/",
        f"STRING: /'([^'\\n]|''){string}'|\"([^\"\\n]|\"\"){string}\"/",
        f"WS: /{space}/",
    ]
    return "\n".join(rules) + "\n"
