"""Name scoping of SQL being written: can this prefix of a query still become one whose every column reference names
a column of a table it reads? The check a context-free grammar cannot make (decoding/multi_table_grammar.py knows
which names exist, not which table an alias stands for), run beside it on each row's text (decoding/constraint.py).

`ScopeSchema(database)` holds the database's tables and columns (folded as SQLite compares identifiers);
`scope_violation(schema, text, complete)` returns None while `text` can still end well, else a short reason:

- A qualified column `Q.c` needs `Q` bound (a table alias or an unaliased table name from FROM/JOIN) in its own
  query or an enclosing one, and `c` a column of that table. A bare column `c` needs a table in scope that has it,
  exactly one in the innermost query that has any (SQLite: "ambiguous column name"), or a column alias of its query.
- When: references in ON, WHERE, GROUP BY, HAVING and ORDER BY are checked at once against the tables bound so far;
  references in the select list, written before FROM, when the FROM clause ends (a clause keyword, a set operation,
  the query's closing parenthesis, or the end of the text when `complete`). An alias is checked against the
  references already made to it the moment it is bound.
- The text's last word may still grow (`T2.na` can become `T2.name`): it is checked as a prefix, unless `complete`
  (the candidate token ends the query). A trailing alias is taken as written when it is one already referred to
  (`... JOIN account AS T2` after `SELECT T2.name`) or one already bound (an alias or table name bound twice in one
  FROM makes every reference to it ambiguous), so a model is stopped at the alias, not one word later; not when the
  select list refers to a longer alias it may still become (`T1` of `T11`). A clause
  word still being written where nothing else could stand (` GR` after a FROM source; ` W` after a join condition's
  operand, and ` O` there once the condition holds the grammar's MAX_ON_CONDITIONS predicates) ends the FROM clause
  at once, while a JOIN can still bring a missing table.
- Aggregates where SQLite refuses them ("misuse of aggregate", "not allowed in the GROUP BY clause"): COUNT, SUM,
  AVG, TOTAL or GROUP_CONCAT called in a WHERE, ON or GROUP BY of its own query (not of a subquery there) is refused
  at its '('; MIN or MAX there at its ')' when it took one argument (with two or more they are scalar functions).
  The same in ORDER BY of the outermost query when it does not aggregate (no GROUP BY or HAVING, no aggregate in
  its select list or in a subquery there; `SELECT name FROM t ORDER BY count(*)`), unless it is a set operation (a
  subquery's ORDER BY may be dropped by SQLite's optimiser, and then it runs). And an aggregate in a subquery's
  select list whose arguments name only the enclosing query's columns (SQLite makes it the enclosing query's
  aggregate): refused when the subquery's FROM ends, if the enclosing query's clause refuses aggregates (`WHERE age
  > (SELECT avg(age) FROM policy)` where policy has no age); not in an EXISTS subquery (SQLite never computes its
  select list), nor when a subquery stands in the aggregate's arguments. SQLite raises these two while generating
  code, so it still runs such a query when its optimiser drops the expression (`... OR 1`): refused anyway.
- One convention beyond what SQLite refuses: aliases named T1, T2, ... (as Spider's and BIRD's queries name them)
  that the select list used are bound before FROM goes far past them. Once a source has taken an alias numbered
  past the lowest one the select list used and nothing binds (one source may come between: the table a join goes
  through), the next source must be a table with the columns used of it (`SELECT T2.name FROM client AS T1 JOIN
  account AS T3 JOIN account` is refused at the second `account`), and that alias: another (`... AS T4`, `AS a`)
  is refused, and so is none (at the JOIN, ON or clause after it): a model that skipped the alias otherwise went on
  joining to the token cap. Not applied while an
  enclosing query's FROM is still to come (it may bind the alias), nor to other alias names (`T01`, `a`).
  Likewise a source the select list qualifies by its table's name takes no alias (`SELECT fitness_class.name FROM
  fitness_class AS T1` is refused at `A`): the name stays bound. And a bare select-list column that no source
  read so far has comes from the next source once one source past the first lacks it (`SELECT name FROM policy AS
  T1 JOIN claim AS T2 ... JOIN claim` is refused at the second `claim`).
- A subquery standing for a value (in an expression: after IN, a comparison, in a select list; not in FROM, not
  after EXISTS) returns one column: a second one is refused at its comma (SQLite: "sub-select returns 2 columns").
  Each later core of a set operation has as many select items as the first (SQLite: "SELECTs to the left and right
  of INTERSECT do not have the same number of result columns"): one more is refused at its comma, one fewer at
  FROM (at its `FR` after an operand already) or where a core without FROM ends; not where a `*` stands.
- As early as the text is certain to break a rule, so that the model is not led into a word only a refused token
  could follow (a dead end, after which the row is left to the grammar): an aggregate's name where aggregates are
  refused once it can be no other name (`ORDER BY cou` when no column starts so); a bare column still being
  written once every column it may become is ambiguous (`ON trainer_` where two tables have trainer_id); a bare
  select-list column at the name of a second table with it (`SELECT name FROM policyholder AS T1 JOIN ag`: no
  alias or later source makes it unambiguous); a word after a FROM source that no alias of the grammar's shape
  (ALIAS_PATTERN: a letter and two digits at most) can be, so a keyword (`JOIN trainer ON` ends the source there);
  and, where an operand is expected (after '(', a comparison, WHERE, AND, ...), a word that may become no keyword
  starting one (CASE, NOT, a function, ...) is read as a name (`max(b`, `= en` are not BETWEEN or END).
- A text that ends by repeating the span just before it, token for token (REPEAT_TOKENS or more): `... OR T1.id =
  T2.id OR T1.id = T2.id OR`, a subquery nested in a copy of itself. SQLite runs it, but no gold query of the
  sample repeats a span back to back, and a model that loops this way otherwise goes on to the token cap.
- Not checked (accepted): the columns of a subquery in FROM (any column of a derived table is accepted), a column
  alias reused later, double-quoted words in expressions (SQLite reads an unknown one as a string; one before a
  '.' qualifies a column and is checked as a name), types, an aggregate inside another.

The check reads the text with a small lexer and a stack of open queries and parentheses; it is linear in the text's
length (the generated SQL only, never the prompt). `ScopeReading` keeps that state over a text's settled start, so
that the many candidate tokens of one decoding step, and the next step's text, are read from there: a check then
costs the few tokens at the end, not the query.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace

from experiments.data.schema import Database
from experiments.decoding.multi_table_grammar import ALIAS_PATTERN, CAST_TYPES, FUNCTIONS, MAX_ON_CONDITIONS
from experiments.sql.sqlite_sandbox import fold_identifier

# Words that end a FROM clause (or a query's core) when they start a clause at the query's own level
CLAUSE_WORDS = frozenset({"where", "group", "having", "order", "limit", "union", "intersect", "except"})
SET_OPERATIONS = frozenset({"union", "intersect", "except"})
JOIN_WORDS = frozenset({"join", "inner", "left", "outer", "cross", "natural"})
INFIX_WORDS = frozenset({"and", "or", "not", "in", "is", "like", "glob", "between", "collate", "escape", *JOIN_WORDS})
CASE_WORDS = frozenset({"when", "then", "else", "end"})  # the words that may follow an operand inside a CASE
FROM_WORDS = frozenset({"as", "on", *JOIN_WORDS})  # the keywords that may follow a source in FROM, but clause words
# Every word the grammar writes that is not a name: never read as a column or an alias
KEYWORDS = frozenset({
    "select", "from", "as", "on", "and", "or", "not", "in", "like", "glob", "between", "is", "null", "case", "when",
    "then", "else", "end", "cast", "exists", "distinct", "all", "asc", "desc", "by", "offset", "true", "false",
    "escape", "collate", *CLAUSE_WORDS, *JOIN_WORDS,
    *(name.lower() for name in FUNCTIONS), *(name.lower() for name in CAST_TYPES)})
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?|\.[0-9]+(?:[eE][+-]?[0-9]*)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\|\||<>|<=|>=|!=|==|.)
""", re.VERBOSE | re.DOTALL)
WILDCARD: frozenset[str] | None = None  # a derived table's columns: not known, any is accepted
AGGREGATES = frozenset({"count", "sum", "avg", "total", "group_concat"})  # aggregates whatever their arguments
MIN_MAX = frozenset({"min", "max"})  # aggregates with one argument, scalar functions with more
ANY_AGGREGATE = AGGREGATES | MIN_MAX
NO_AGGREGATE_CLAUSES = frozenset({"where", "on", "group"})
NUMBERED_ALIAS = re.compile(r"t([1-9][0-9]*)")  # a folded alias of the T1, T2, ... numbering
ALIAS = re.compile(ALIAS_PATTERN)  # the grammar's table aliases: a longer word after a source is a keyword
# The keywords that may start an operand, where one is expected (after '(', ',', an operator, WHERE, AND, ...): a
# word being written there that may become no other keyword must become a name
OPERAND_KEYWORDS = frozenset({"case", "cast", "not", "exists", "null", "true", "false", "distinct", "all", "select",
                              *(name.lower() for name in FUNCTIONS)})
OPERAND_AFTER = frozenset({"(", ",", "=", "==", "<", ">", "<=", ">=", "!=", "<>", "+", "-", "/", "%", "||", "where",
                           "having", "on", "and", "or", "when", "then", "else", "by", "select", "distinct"})


@dataclass(frozen=True)
class _Token:
    kind: str  # word, quoted, string, number, punct
    text: str
    open: bool  # the text's last token, which may still grow


@dataclass
class _Ref:
    qualifier: str | None  # folded; None for a bare column
    column: str | None  # folded; None for `Q.*`
    open: bool  # a prefix of the name (the text's last word)


@dataclass
class _Query:
    """One SELECT core being read: what its FROM has bound and what waits for its FROM to end."""

    parent: _Query | None
    clause: str = "select"  # select | from | on | where | group | having | order | limit
    bindings: dict[str, frozenset[str] | None] = field(default_factory=dict)  # alias or table -> its columns
    unnamed_derived: bool = False  # a subquery in FROM without an alias: its columns are reachable bare
    column_aliases: set[str] = field(default_factory=set)
    waiting: list[_Ref] = field(default_factory=list)  # select-list references, checked when FROM ends
    from_done: bool = False
    source: str = ""  # in FROM: "" (expecting a source), "table" (after a table), "alias" (after AS)
    pending: tuple[str, frozenset[str] | None] | None = None  # the last source, not yet bound (alias may follow)
    # an aggregate may stand in its ORDER BY: it groups, aggregates in its select list or HAVING (or in a subquery
    # there), or is a core of a set operation (whose ORDER BY is not checked)
    aggregates: bool = False
    exists: bool = False  # the subquery of an EXISTS: SQLite never computes its select list
    # aggregates called in its select list (before FROM ended) and the column references of their arguments
    aggregate_calls: list[tuple[str, list[_Ref]]] = field(default_factory=list)
    # the join condition being read: its predicates (the grammar allows MAX_ON_CONDITIONS, joined by AND or OR),
    # the parentheses open where it began, and a BETWEEN awaiting its AND and CASEs open in it at that depth
    on_predicates: int = 0
    on_depth: int = 0
    on_between: bool = False
    on_cases: int = 0
    # the select list's items at the query's own parenthesis depth (commas there + 1), whether one is a `*` (its
    # columns are not counted), and for a later core of a set operation the first core's count (None: not known)
    depth: int = 0
    items: int = 1
    star: bool = False
    set_items: int | None = None


@dataclass
class _Paren:
    """An open parenthesis: whether it opened a subquery, the query it was opened in, and, for MIN( or MAX( where
    an aggregate is not allowed, its name and whether a second argument has been seen; for an aggregate called in a
    subquery's select list, its name and the references made in its arguments."""

    subquery: bool
    outer: _Query | None
    one_column: bool = False  # a subquery standing for a value (not in FROM, not EXISTS): one result column
    min_max: str = ""
    more_arguments: bool = False
    aggregate: str = ""
    refs: list[_Ref] = field(default_factory=list)


class ScopeViolation(Exception):
    """The text cannot become a query whose names are all in scope."""


class ScopeSchema:
    """A database's tables and their columns, folded as SQLite compares identifiers."""

    def __init__(self, database: Database) -> None:
        self.tables: dict[str, frozenset[str]] = {
            fold_identifier(table.name): frozenset(fold_identifier(c.name) for c in table.columns)
            for table in database.tables}
        self.names: frozenset[str] = frozenset(self.tables).union(*self.tables.values())

    def names_start(self, prefix: str) -> bool:
        """Whether some table or column name starts with `prefix` (folded)."""
        return any(name.startswith(prefix) for name in self.names)


def scope_violation(schema: ScopeSchema, text: str, complete: bool = False) -> str | None:
    """None if `text` (the start of a query; with `complete`, a whole one) can still have every name in scope,
    else why not (see the module docstring)."""
    try:
        _Reader(schema, _tokens(text, complete)[0], complete).read()
    except ScopeViolation as violation:
        return str(violation)
    return None


LOOKAHEAD = 2  # tokens past its own that reading one looks at (`T1 . name`, `( SELECT`)


class ScopeReading:
    """`text` read up to its settled tokens, so that `violation(longer)` for a text that continues it reads only the
    rest: a decoding step checks many candidate tokens on one row, and a row's text grows by a token a step.

    Settled: every token but the last (which may still grow, `T2.na` into `T2.name`) lexes the same in any longer
    text, and reading a token looks at most LOOKAHEAD tokens further, so the reader's state after the tokens before
    the last LOOKAHEAD + 1 is the state a full read of any continuation reaches there. `violation` gives exactly
    what `scope_violation` gives (tested on every prefix and continuation of the sample's gold queries)."""

    def __init__(self, schema: ScopeSchema, text: str) -> None:
        tokens, starts = _tokens(text, False)
        self._settle(schema, text, _Reader(schema, tokens, complete=False), tokens, starts, 0)

    def _settle(self, schema: ScopeSchema, text: str, reader: _Reader, tokens: list[_Token], starts: list[int],
                first: int) -> None:
        """Read `tokens` (of `text`) from index `first`, where `reader` stands, up to the settled ones; `starts`
        gives where each token from `first` on starts in `text`."""
        self.schema, self.text = schema, text
        reader.tokens = tokens
        self.found: str | None = None  # a violation already in the settled tokens: every continuation has it
        index = first
        try:
            while index < len(tokens) - 1 - LOOKAHEAD:
                index = reader._step(index)
        except ScopeViolation as violation:
            self.found = str(violation)
        self._reader, self._index = reader, index
        self._tokens = tokens[:index]
        self._start = starts[index - first] if index < len(tokens) else len(text)

    def violation(self, text: str, complete: bool = False) -> str | None:
        """`scope_violation(schema, text, complete)`, reading only what follows the settled tokens when `text`
        continues this reading's text."""
        if not text.startswith(self.text):
            return scope_violation(self.schema, text, complete)
        if self.found is not None:
            return self.found
        tail, _ = _tokens(text, complete, self._start)
        reader = self._reader.copy(self._tokens + tail, complete)
        try:
            reader.read(self._index)
        except ScopeViolation as violation:
            return str(violation)
        return None

    def extended(self, text: str) -> ScopeReading:
        """The reading of `text`, a continuation of this one's text (else read afresh), from the settled state."""
        if not text.startswith(self.text) or self.found is not None:
            return ScopeReading(self.schema, text)
        tail, starts = _tokens(text, False, self._start)
        reading = ScopeReading.__new__(ScopeReading)
        reading._settle(self.schema, text, self._reader.copy([], False), self._tokens + tail, starts,
                        len(self._tokens))
        return reading


_OPAQUE = _Ref(None, None, True)  # stands for what a subquery in an aggregate's arguments refers to
_CLAUSE_NAMES = {"on": "ON", "where": "WHERE", "group": "GROUP BY",
                 "order": "ORDER BY of a query that does not aggregate"}


def _clause_label(clause: str) -> str:
    return _CLAUSE_NAMES.get(clause, clause.upper())


def _enclosing_only(query: _Query, parent: _Query, ref: _Ref) -> bool:
    """Whether `ref`, in `query`'s select list, can only name a column of `parent` (never a prefix still growing,
    nor anything a derived table of `query` might hold)."""
    if ref.open or query.unnamed_derived or any(columns is WILDCARD for columns in query.bindings.values()):
        return False
    if ref.qualifier is not None:
        return ref.qualifier not in query.bindings and ref.qualifier in parent.bindings
    if ref.column is None or ref.column in query.column_aliases or any(
            columns is not None and ref.column in columns for columns in query.bindings.values()):
        return False
    return any(columns is not None and ref.column in columns for columns in parent.bindings.values())


def _refuses_aggregates(query: _Query) -> bool:
    """Whether SQLite refuses an aggregate of `query` in the clause being read ("misuse of aggregate")."""
    return query.clause in NO_AGGREGATE_CLAUSES or (query.clause == "order" and not query.aggregates and
                                                    query.parent is None)


def _tokens(text: str, complete: bool, start: int = 0) -> tuple[list[_Token], list[int]]:
    """The tokens of `text` from character `start` (a token boundary), without spaces, and where each starts; the
    last is open (may still grow) unless `complete` or the text ends in a space."""
    found = [(m.lastgroup or "punct", m.group(), m.start()) for m in _TOKEN.finditer(text, start)]
    tokens = [_Token(kind, value, False) for kind, value, _ in found if kind != "space"]
    starts = [at for kind, _, at in found if kind != "space"]
    if tokens and not complete and not text[-1:].isspace():
        last = tokens[-1]
        tokens[-1] = _Token(last.kind, last.text, True)
    return tokens, starts


def _name(token: _Token) -> str:
    """The identifier a word or quoted token spells, folded (an unclosed quote: what it holds so far)."""
    text = token.text
    if token.kind == "quoted":
        close = {'"': '"', "`": "`", "[": "]"}[text[0]]
        body = text[1:-1] if len(text) > 1 and text.endswith(close) else text[1:]
        if close != "]":
            body = body.replace(close * 2, close)
        return fold_identifier(body)
    return fold_identifier(text)


def _closed(token: _Token) -> bool:
    """Whether a token's name is complete: not the last, still-growing token (a closed quote is complete)."""
    if token.kind == "quoted":
        close = {'"': '"', "`": "`", "[": "]"}[token.text[0]]
        return len(token.text) > 1 and token.text.endswith(close)
    return not token.open


def _is_keyword_prefix(word: str, operand: bool = False) -> bool:
    """Whether a word being written may become a keyword (where an operand is expected: one that starts one)."""
    return any(keyword.startswith(word) for keyword in (OPERAND_KEYWORDS if operand else KEYWORDS))


def _expects_operand(previous: _Token | None) -> bool:
    """Whether the token before a word leaves an operand to come (`max(b`, `= en`, `WHERE x`), not an infix or a
    clause keyword (`x O` may become OR or ORDER)."""
    if previous is None or previous.open or previous.kind not in ("punct", "word"):
        return False
    return previous.text.lower() in OPERAND_AFTER


class _Reader:
    """Reads the tokens once, keeping the query being read and a stack of the parentheses open around it (each with
    the query it was opened in, and whether it opened a subquery)."""

    def __init__(self, schema: ScopeSchema, tokens: list[_Token], complete: bool) -> None:
        self.schema = schema
        self.tokens = tokens
        self.complete = complete
        self.stack: list[_Paren] = []
        self.query: _Query | None = None

    def copy(self, tokens: list[_Token], complete: bool) -> _Reader:
        """A reader over `tokens` in this one's state (its open queries and parentheses copied, so that reading on
        changes neither)."""
        copies: dict[int, _Query] = {}

        def copied(query: _Query | None) -> _Query | None:
            if query is None:
                return None
            if id(query) not in copies:
                twin = copy.copy(query)
                twin.parent = copied(query.parent)
                twin.bindings, twin.column_aliases = dict(query.bindings), set(query.column_aliases)
                twin.waiting, twin.aggregate_calls = list(query.waiting), list(query.aggregate_calls)
                copies[id(query)] = twin
            return copies[id(query)]

        reader = _Reader(self.schema, tokens, complete)
        reader.query = copied(self.query)
        reader.stack = [replace(paren, outer=copied(paren.outer), refs=list(paren.refs)) for paren in self.stack]
        return reader

    def read(self, start: int = 0) -> None:
        i = start
        while i < len(self.tokens):
            i = self._step(i)
        _check_repeat(self.tokens)
        if self.complete:
            while self.stack:
                self._close()
            if self.query is not None:
                self._finish_from(self.query)

    def _peek(self, i: int) -> _Token | None:
        return self.tokens[i] if 0 <= i < len(self.tokens) else None

    def _step(self, i: int) -> int:
        token = self.tokens[i]
        word = token.text.lower() if token.kind == "word" else ""
        if token.text == "(":
            after = self._peek(i + 1)
            subquery = after is not None and after.kind == "word" and after.text.lower() == "select" \
                and not after.open
            if subquery:  # in an aggregate's arguments: the aggregate is no longer judged (see _finish_from)
                for paren in self.stack:
                    if paren.aggregate and paren.outer is self.query:
                        paren.refs.append(_OPAQUE)
            before = self._peek(i - 1)
            exists = subquery and before is not None and before.kind == "word" and before.text.lower() == "exists"
            one_column = subquery and not exists and self.query is not None and self.query.clause != "from"
            self.stack.append(_Paren(subquery, self.query, one_column, self._min_max_call(i),
                                     aggregate=self._subquery_aggregate(i)))
            if subquery:
                self.query = _Query(parent=self.query, exists=exists, depth=len(self.stack))
                return i + 2
            return i + 1
        if token.text == ")":
            self._close()
            return i + 1
        if token.text == "," and self.stack and (self.stack[-1].min_max or self.stack[-1].aggregate) and \
                self.stack[-1].outer is self.query:
            self.stack[-1].more_arguments = True
        if token.text == "," and self.stack and self.stack[-1].one_column and self.query is not None and \
                self.query.clause == "select" and not self.query.from_done:
            raise ScopeViolation("a subquery standing for a value returns one column")
        if token.text == "," and self.query is not None and self.query.clause == "select" and \
                not self.query.from_done and len(self.stack) == self.query.depth:
            self.query.items += 1
            _check_set_items(self.query, ending=False)
        if token.text == "*" and self.query is not None and self.query.clause == "select" and \
                len(self.stack) == self.query.depth and _starts_item(self._peek(i - 1)):
            self.query.star = True
        if word == "select" and not token.open:
            if self.query is None:
                self.query = _Query(parent=None)
            return i + 1  # else: the SELECT of a core a set operation opened
        query = self.query
        if query is None:
            return i + 1
        if token.text == ";":
            self._finish_from(query)
            return i + 1
        if token.open and self._begins_clause(query, word, self._peek(i - 1)):
            self._finish_from(query)  # the text's last word can only become a clause word: FROM ends here
            return i + 1
        if word in CLAUSE_WORDS and self._starts_clause(query, token):
            self._finish_from(query)
            if word in SET_OPERATIONS:
                first = query.set_items if query.set_items is not None or query.star else query.items
                self.query = _Query(parent=query.parent, aggregates=True, depth=query.depth,
                                    set_items=None if query.star else first)
                query.aggregates = True
            else:
                query.clause = word
                query.aggregates |= word in ("group", "having")
            return i + 1
        if query.clause == "select" and len(self.stack) == query.depth and (word == "from" and not token.open or (
                token.open and len(word) > 1 and "from".startswith(word) and _ends_operand_before(self._peek(i - 1)))):
            _check_set_items(query, ending=True)  # FROM, or a word that can only become it (after an operand)
        if word == "from" and not token.open and query.clause == "select":
            query.clause, query.source = "from", ""
            return i + 1
        if query.clause in ("from", "on") and self._in_from(query, token, word):
            return i + 1
        return self._expression(query, token, word, i)

    def _starts_clause(self, query: _Query, token: _Token) -> bool:
        """A clause word starts a clause once written; as the text's last word only where it cannot be the start of
        a name instead: after a FROM source (only an alias of ALIAS's shape or a keyword may follow), or where no
        table or column name of the database starts with it."""
        if not token.open:
            return True
        after_source = query.clause == "from" and query.source in ("table", "bound")
        return after_source or not self.schema.names_start(token.text.lower())

    def _begins_clause(self, query: _Query, word: str, previous: _Token | None) -> bool:
        """Whether a word still being written (`GR`, `OR`, `EXC`) can only become a clause word, so that its FROM
        is checked before the model is committed to the clause: after a FROM source (where only an alias, one
        letter and digits, or a keyword may follow) no other keyword of FROM starts with it; in a join condition,
        after a complete operand, no infix keyword (AND, OR, IN, ...) or further join does."""
        if query.from_done or word in CLAUSE_WORDS or not any(clause.startswith(word) for clause in CLAUSE_WORDS):
            return False
        if query.clause == "from" and query.source in ("table", "bound"):  # after a source: no name can follow
            return len(word) > 1 and not any(other.startswith(word) for other in FROM_WORDS)  # `T` is an alias
        if query.clause == "on" and previous is not None and _ends_operand(previous):
            if len(self.stack) != query.on_depth:
                return False  # in a parenthesis of the condition no clause starts
            followers = INFIX_WORDS - {"outer"}  # (OUTER only follows LEFT)
            if query.on_cases:
                followers |= CASE_WORDS  # ` W` may be WHEN
            elif query.on_predicates >= MAX_ON_CONDITIONS:
                followers -= {"and", "or"}  # the grammar's most predicates: ` O` can only be ORDER
            return not any(other.startswith(word) for other in followers)
        return False

    def _min_max_call(self, i: int) -> str:
        """The name of MIN or MAX when the '(' at `i` calls it where an aggregate is not allowed, else ''."""
        name = self._peek(i - 1)
        if name is None or name.kind != "word" or name.text.lower() not in MIN_MAX:
            return ""
        return name.text.lower() if self.query is not None and _refuses_aggregates(self.query) else ""

    def _close(self) -> None:
        """')': end the subquery it closes (its FROM first) or a plain parenthesis."""
        if not self.stack:
            return
        paren = self.stack.pop()
        if paren.min_max and not paren.more_arguments:
            raise ScopeViolation(f"aggregate {paren.min_max}() in {self._clause_name()}")
        if paren.aggregate and paren.outer is not None and not (paren.aggregate in MIN_MAX and paren.more_arguments):
            paren.outer.aggregate_calls.append((paren.aggregate, paren.refs))
        subquery, outer = paren.subquery, paren.outer
        if not subquery:
            return
        if self.query is not None:
            self._finish_from(self.query)
        self.query = outer
        if outer is not None and outer.clause == "from" and outer.source == "":
            outer.pending, outer.source = ("", WILDCARD), "table"  # a derived table: its alias, if any, follows

    def _in_from(self, query: _Query, token: _Token, word: str) -> bool:
        """Reads a token of the FROM clause's sources (tables, aliases, joins); False for one of an ON expression."""
        if (word in JOIN_WORDS and not token.open) or (token.text == "," and not self._in_call(query)):
            self._bind_pending(query)
            query.clause, query.source = "from", ""
            return True
        if word == "on" and not token.open:
            self._bind_pending(query)
            query.clause, query.source = "on", "bound"
            query.on_predicates, query.on_depth, query.on_between, query.on_cases = 1, len(self.stack), False, 0
            return True
        if query.clause == "on":
            if word and not token.open and len(self.stack) == query.on_depth:
                self._count_on_predicates(query, word)
            return False
        if query.source == "table" and token.open and token.kind == "word" and not ALIAS.fullmatch(word) and \
                not "as".startswith(word):
            self._bind_pending(query)  # no alias is this long: a keyword (ON, JOIN, WHERE, ...) ends the source
            return True
        if query.source == "":
            if token.kind in ("word", "quoted"):
                name = _name(token)
                tables = self._tables_it_may_become(name, _closed(token))
                self._check_numbered_source(query, tables)
                _check_bare_source(query, tables, self.schema)
                self._check_source_ambiguity(query, name, tables)
                if _closed(token):
                    query.pending, query.source = (name, self.schema.tables.get(name, frozenset())), "table"
            return True  # a table name (or one still being written)
        if query.source == "table" and word and token.open and _may_become_only_as(word):
            _check_name_kept(query)  # refused at `A`: no token after it could pass
        if query.source == "table" and word == "as" and not token.open:
            _check_name_kept(query)
            query.source = "alias"
            return True
        if query.source in ("table", "alias") and token.kind in ("word", "quoted") and word not in KEYWORDS:
            if query.source == "table" and token.open and any(k.startswith(word) for k in FROM_WORDS | CLAUSE_WORDS):
                return True  # `A` may still become AS
            if query.source == "table":
                _check_name_kept(query)  # an alias without AS
            alias = _name(token)
            _check_alias_number(query, alias, _closed(token))
            if _closed(token) or _taken_as_written(query, alias):
                if query.pending is not None:
                    name, columns = query.pending
                    query.pending = None
                    self._bind(query, alias, columns)
                query.source = "bound"
            return True
        return True

    @staticmethod
    def _count_on_predicates(query: _Query, word: str) -> None:
        """Counts the join condition's predicates at its own depth: an AND or OR starts one, but BETWEEN's AND and
        the words of a CASE do not."""
        if word == "case":
            query.on_cases += 1
        elif word == "end" and query.on_cases:
            query.on_cases -= 1
        elif query.on_cases:
            return
        elif word == "between":
            query.on_between = True
        elif word == "and" and query.on_between:
            query.on_between = False
        elif word in ("and", "or"):
            query.on_predicates += 1

    def _in_call(self, query: _Query) -> bool:
        """Whether a plain parenthesis of the query is open: a comma there parts arguments (`max(a, b)` in ON)."""
        return bool(self.stack) and not self.stack[-1].subquery and self.stack[-1].outer is query

    def _tables_it_may_become(self, name: str, closed: bool) -> list[str]:
        """The tables a source's name being written may still become (the name itself once closed); none while
        it may still be a join word (`LEFT O` may become LEFT OUTER JOIN)."""
        if closed:
            return [name]
        if any(word.startswith(name) for word in JOIN_WORDS):
            return []
        return [table for table in self.schema.tables if table.startswith(name)]

    def _check_numbered_source(self, query: _Query, tables: list[str]) -> None:
        """A source that owes the select list its numbered alias (`_owed_numbered_alias`) must be a table with the
        columns used of it: after `SELECT T2.name FROM client AS T1 JOIN account AS T3`, `JOIN account` is refused
        at `account` (as soon as none of the `tables` the word may still become has them)."""
        owed = _owed_numbered_alias(query)
        if owed is None:
            return
        alias, needed = owed
        if tables and not any(needed <= self.schema.tables.get(table, frozenset()) for table in tables):
            raise ScopeViolation(f"the next source owes the select list {alias!r}, which wants "
                                 f"{', '.join(sorted(needed))}")

    def _check_source_ambiguity(self, query: _Query, name: str, tables: list[str]) -> None:
        """A bare select-list column that a bound table has becomes ambiguous when a second table with it is bound,
        whatever alias that table takes: refused at the table's name `name`, once all the `tables` it may still
        become have one (`SELECT name FROM fitness_class JOIN trainer`), not at the alias, where every continuation
        binds it."""
        bound = [columns for columns in query.bindings.values() if columns is not None]
        clashing = {ref.column for ref in query.waiting
                    if ref.qualifier is None and ref.column and not ref.open and ref.column not in query.column_aliases
                    and any(ref.column in columns for columns in bound)}
        if not clashing:
            return
        if tables and all(clashing & self.schema.tables.get(table, frozenset()) for table in tables):
            raise ScopeViolation(f"column {', '.join(sorted(clashing))!r} would be ambiguous: every table "
                                 f"{name!r} may become has it too")

    def _bind_pending(self, query: _Query) -> None:
        if query.pending is None:
            return
        name, columns = query.pending
        query.pending = None
        owed = _owed_numbered_alias(query)
        if owed is not None and name != owed[0]:  # the source that owes the alias took none
            raise ScopeViolation(f"{name or 'a subquery'} takes no alias, leaving {owed[0]!r}, which the select list "
                                 "uses, unbound")
        if name:
            self._bind(query, name, columns)
        else:
            query.unnamed_derived = True

    def _bind(self, query: _Query, key: str, columns: frozenset[str] | None) -> None:
        if key in query.bindings:
            raise ScopeViolation(f"{key!r} is bound twice in one FROM")
        query.bindings[key] = columns
        for ref in query.waiting:
            if ref.qualifier == key:
                _check_column(key, columns, ref)
            elif ref.qualifier is None and ref.column and not ref.open and columns is not None and \
                    ref.column in columns:
                _resolves_bare(query, ref.column)  # a second table with the column: no later source changes that

    def _expression(self, query: _Query, token: _Token, word: str, i: int) -> int:
        """Reads a token of an expression: a column reference (bare or qualified), a column alias, anything else."""
        if token.kind not in ("word", "quoted"):
            return i + 1
        previous, after = self._peek(i - 1), self._peek(i + 1)
        dotted = after is not None and after.text == "."
        if token.text.startswith('"') and not dotted:
            return i + 1  # a double-quoted word in an expression may be a string, unless it qualifies a column
        if after is not None and after.text == "(":
            if word in AGGREGATES and _refuses_aggregates(query):
                raise ScopeViolation(f"aggregate {word}() in {self._clause_name()}")
            scope: _Query | None = query
            while word in ANY_AGGREGATE and scope is not None and \
                    scope.clause in ("select", "having"):  # a subquery in a select list makes it aggregate too
                scope.aggregates = True
                scope = scope.parent
            return i + 1  # a function
        aggregate = self._only_aggregate(query, token, word) if word and after is None else ""
        if aggregate and _refuses_aggregates(query):
            raise ScopeViolation(f"aggregate {aggregate}() in {self._clause_name()}")  # its '(' would be refused
        if word in KEYWORDS and not dotted:
            return i + 1  # a keyword
        if previous is not None and previous.kind == "word" and previous.text.lower() == "as":
            query.column_aliases.add(_name(token))
            return i + 1
        if dotted:
            column = self._peek(i + 2)
            qualifier = _name(token)
            if column is None:
                self._reference(query, _Ref(qualifier, "", True))
            elif column.text == "*":
                self._reference(query, _Ref(qualifier, None, False))
                if query.clause == "select" and len(self.stack) == query.depth:
                    query.star = True
            elif column.kind in ("word", "quoted"):
                self._reference(query, _Ref(qualifier, _name(column), not _closed(column)))
            return i + 3
        if token.open and token.kind == "word" and _is_keyword_prefix(word, _expects_operand(previous)):
            return i + 1  # may still become a keyword or a function
        if after is None and not self.complete and _lookup(query, _name(token)) is not _MISSING:
            return i + 1  # a qualifier whose '.' is still to come (`"order"` of `"order".x`)
        self._reference(query, _Ref(None, _name(token), not _closed(token)))
        return i + 1

    def _only_aggregate(self, query: _Query, token: _Token, word: str) -> str:
        """The aggregate (COUNT, SUM, AVG, TOTAL, GROUP_CONCAT) that the text's last word can only become, never a
        table, column or column alias (still being written: every keyword it may become is that one), else '':
        refusing it there spares the model a name that only a refused '(' could follow."""
        if token.open:
            keywords = [keyword for keyword in KEYWORDS if keyword.startswith(word)]
            if len(keywords) != 1 or keywords[0] not in AGGREGATES or self.schema.names_start(word) or any(
                    alias.startswith(word) for alias in query.column_aliases):
                return ""
            return keywords[0]
        only = word in AGGREGATES and word not in self.schema.names and word not in query.column_aliases
        return word if only else ""

    def _clause_name(self) -> str:
        clause = self.query.clause if self.query is not None else ""
        return _clause_label(clause)

    def _subquery_aggregate(self, i: int) -> str:
        """The aggregate's name when the '(' at `i` calls one in a subquery's select list before its FROM, else ''."""
        name, query = self._peek(i - 1), self.query
        if name is None or name.kind != "word" or name.open or query is None or query.parent is None:
            return ""
        word = name.text.lower()
        if word in ANY_AGGREGATE and query.clause == "select" and not query.from_done:
            return word
        return ""

    def _reference(self, query: _Query, ref: _Ref) -> None:
        """Checks a reference now, or (in a select list before its FROM ends) keeps it for then."""
        if query.clause == "select" and not query.from_done:
            query.waiting.append(ref)
            for paren in self.stack:
                if paren.aggregate and paren.outer is query:
                    paren.refs.append(ref)
            if ref.qualifier is not None:
                bound = _lookup(query, ref.qualifier)
                if bound is not _MISSING:
                    _check_column(ref.qualifier, bound, ref)
            return
        self._resolve(query, ref)

    def _resolve(self, query: _Query, ref: _Ref) -> None:
        if ref.qualifier is None:
            _resolve_bare(query, ref)
            return
        bound = _lookup(query, ref.qualifier)
        if bound is _MISSING:
            if _unfinished(query.parent):
                return  # an enclosing query's FROM may still bind it
            raise ScopeViolation(f"{ref.qualifier!r} is not a table or alias in scope")
        _check_column(ref.qualifier, bound, ref)

    def _finish_from(self, query: _Query) -> None:
        """The FROM clause has ended: bind its last source and check the select list's references."""
        if query.from_done:
            return
        self._bind_pending(query)
        if query.clause == "select":
            _check_set_items(query, ending=True)  # a core without FROM
        query.from_done = True
        waiting, query.waiting = query.waiting, []
        for ref in waiting:
            self._resolve(query, ref)
        calls, query.aggregate_calls = query.aggregate_calls, []
        parent = query.parent
        if parent is None or query.exists or not _refuses_aggregates(parent):
            return
        for name, refs in calls:
            if refs and all(_enclosing_only(query, parent, ref) for ref in refs):
                raise ScopeViolation(f"aggregate {name}() over the enclosing query's columns in its "
                                     f"{_clause_label(parent.clause)}")


def _owed_numbered_alias(query: _Query) -> tuple[str, frozenset[str]] | None:
    """The numbered alias (`t1`, `t2`, ... as Spider's and BIRD's queries name them) the query's next source must
    take, with the columns its select list used of it: the lowest one the select list used and nothing binds yet,
    once FROM has already bound an alias numbered past it (one source may come between, a table the join goes
    through; a second would let a model join on and on without ever binding it). None otherwise, and while an
    enclosing query's FROM is still to come (it may bind the alias)."""
    if query.unnamed_derived or _unfinished(query.parent):
        return None
    used = sorted({int(numbered.group(1)) for ref in query.waiting if ref.qualifier is not None
                   and (numbered := NUMBERED_ALIAS.fullmatch(ref.qualifier)) is not None
                   and _lookup(query, ref.qualifier) is _MISSING})
    if not used:
        return None
    owed = used[0]
    if not any((numbered := NUMBERED_ALIAS.fullmatch(key)) is not None and int(numbered.group(1)) > owed
               for key in query.bindings):
        return None
    alias = f"t{owed}"
    return alias, frozenset(ref.column for ref in query.waiting if ref.qualifier == alias and ref.column is not None)


BARE_SOURCES_BETWEEN = 1  # sources a join may go through before it reads a bare select-list column's table


def _check_bare_source(query: _Query, tables: list[str], schema: ScopeSchema) -> None:
    """A bare select-list column no source read so far has (`SELECT name FROM policy AS T1 JOIN claim AS T2 ...`)
    must come from the next source once BARE_SOURCES_BETWEEN sources past the first lack it, as the numbered aliases
    must: refused at the next source's name once no table it may still become has one of those columns. Not while
    a derived table (whose columns are not known) or an enclosing query's FROM still to come may supply it, nor for
    a column an enclosing query reads."""
    if len(query.bindings) < 1 + BARE_SOURCES_BETWEEN or not tables or query.unnamed_derived or \
            _unfinished(query.parent) or any(columns is WILDCARD for columns in query.bindings.values()):
        return
    scopes = []  # this query's and the enclosing ones' bound columns: a bare column any of them has is supplied
    scope: _Query | None = query
    while scope is not None:
        scopes.extend(columns for columns in scope.bindings.values() if columns is not None)
        scope = scope.parent
    missing = {ref.column for ref in query.waiting if ref.qualifier is None and ref.column and not ref.open
               and ref.column not in query.column_aliases and not any(ref.column in columns for columns in scopes)}
    if missing and not any(missing & schema.tables.get(table, frozenset()) for table in tables):
        raise ScopeViolation(f"the next source must have {', '.join(sorted(missing))!r}, which the select list "
                             "uses and no source has")


def _starts_item(previous: _Token | None) -> bool:
    """Whether a `*` after `previous` is a select item (`SELECT *`, `, *`, `T1.*`), not a multiplication."""
    return previous is not None and (previous.text in (",", ".") or previous.text.lower() in ("select", "distinct",
                                                                                              "all"))


def _ends_operand_before(previous: _Token | None) -> bool:
    return previous is not None and _ends_operand(previous)


def _check_set_items(query: _Query, ending: bool) -> None:
    """A later core of a set operation has as many select items as the first (SQLite: "SELECTs to the left and
    right of UNION do not have the same number of result columns"): more refused at the comma, fewer where the
    select list ends (`ending`: at FROM, or at the word that can only become it). Not where a `*` stands."""
    if query.set_items is None or query.star:
        return
    if query.items > query.set_items or (ending and query.items < query.set_items):
        raise ScopeViolation(f"the set operation's first SELECT has {query.set_items} result columns, this one "
                             f"{query.items}{'' if ending else ' or more'}")


def _may_become_only_as(word: str) -> bool:
    """Whether a word being written after a FROM source may become AS and no other keyword there (`A`, `AS`)."""
    return "as".startswith(word) and not any(k.startswith(word) for k in (FROM_WORDS | CLAUSE_WORDS) - {"as"})


def _check_name_kept(query: _Query) -> None:
    """A source the select list qualifies by its table's name takes no alias (`SELECT fitness_class.name FROM
    fitness_class AS T1` hides the name): refused at the alias, unless the name is bound already or an enclosing
    query's FROM is still to come. SQLite would accept a later source binding the name again; models that aliased it
    instead joined on to the token cap looking for it."""
    if query.pending is None or _unfinished(query.parent):
        return
    name = query.pending[0]
    if name and name not in query.bindings and any(ref.qualifier == name for ref in query.waiting):
        raise ScopeViolation(f"the select list names {name!r}: an alias would hide it")


def _taken_as_written(query: _Query, alias: str) -> bool:
    """Whether a trailing alias still being written is checked as it stands: one already bound or referred to, unless
    the select list refers to a longer one it may still become (`T1` of `T11`)."""
    waiting = {ref.qualifier for ref in query.waiting if ref.qualifier is not None}
    if any(name != alias and name.startswith(alias) for name in waiting):
        return False
    return alias in query.bindings or alias in waiting


def _check_alias_number(query: _Query, alias: str, closed: bool) -> None:
    """An alias other than the one the query owes its source (`_owed_numbered_alias`) is refused, as soon as what
    is written can no longer become it: after `SELECT T2.name FROM client AS T1 JOIN account AS T3`,
    `JOIN client AS T4` (or `AS c`) would leave T2 unbound."""
    owed = _owed_numbered_alias(query)
    if owed is None or alias == owed[0] or (not closed and owed[0].startswith(alias)):
        return
    raise ScopeViolation(f"alias {alias!r} leaves {owed[0]!r}, which the select list uses, unbound")


def _lookup(query: _Query | None, key: str):
    """The columns `key` is bound to in `query` or the nearest enclosing query binding it; _MISSING if none."""
    while query is not None:
        if key in query.bindings:
            return query.bindings[key]
        query = query.parent
    return _MISSING


def _unfinished(query: _Query | None) -> bool:
    """Whether `query` or one enclosing it has a FROM still open (it may bind more names)."""
    while query is not None:
        if not query.from_done:
            return True
        query = query.parent
    return False


def _ends_operand(token: _Token) -> bool:
    """Whether an expression's operand may end with `token` (a name, a number, a string, a closing parenthesis)."""
    if token.kind in ("quoted", "number", "string") or token.text == ")" or token.text == "*":
        return True
    return token.kind == "word" and (token.text.lower() not in KEYWORDS or token.text.lower() in ("null", "true",
                                                                                                 "false", "end"))


def _check_column(qualifier: str, columns: frozenset[str] | None, ref: _Ref) -> None:
    if columns is None or ref.column is None:
        return
    if ref.open:
        if not any(c.startswith(ref.column) for c in columns):
            raise ScopeViolation(f"{qualifier!r} has no column starting {ref.column!r}")
    elif ref.column not in columns:
        raise ScopeViolation(f"{qualifier!r} has no column {ref.column!r}")


def _resolve_bare(query: _Query, ref: _Ref) -> None:
    """A bare column: a column alias of its query, or a column of exactly one table of the innermost query in
    scope having one (an enclosing query's FROM still open, or a derived table, may supply any). A word still being
    written may also become a qualifier (`T1` of `T1.name`)."""
    column = ref.column or ""
    scope: _Query | None = query
    decided: set[str] = set()  # completions an inner query already resolves (or finds ambiguous)
    while scope is not None:
        if not ref.open and _resolves_bare(scope, column):
            return
        if scope.unnamed_derived or any(columns is WILDCARD for columns in scope.bindings.values()):
            return
        if ref.open:
            if any(name.startswith(column) for name in (*scope.column_aliases, *scope.bindings)):
                return
            tables = [columns for columns in scope.bindings.values() if columns is not None]
            completions = {c for columns in tables for c in columns if c.startswith(column)} - decided
            if any(sum(c in columns for columns in tables) == 1 for c in completions):
                return
            decided |= completions
        if scope is not query and not scope.from_done:
            return
        scope = scope.parent
    if ref.open:
        if decided:
            raise ScopeViolation(f"every column starting {column!r} is ambiguous: {', '.join(sorted(decided))}")
        raise ScopeViolation(f"no table in scope has a column starting {column!r}")
    raise ScopeViolation(f"no table in scope has a column {column!r}")


def _resolves_bare(query: _Query, column: str) -> bool:
    """Whether the query resolves the bare column: a column alias of it, or a column of one table it reads; refused
    where two tables have it, whatever else the FROM reads."""
    if column in query.column_aliases:
        return True
    having = sorted(key for key, columns in query.bindings.items() if columns is not None and column in columns)
    if len(having) > 1:
        raise ScopeViolation(f"column {column!r} is ambiguous: in {', '.join(having)}")
    return bool(having)


REPEAT_TOKENS = 4  # the shortest span whose immediate repeat is refused


def _check_repeat(tokens: list[_Token]) -> None:
    """Refuses a text that ends by repeating, token for token, the span just before it (at least REPEAT_TOKENS
    tokens; the last token as written so far): `... ON T1.id = T2.id OR T1.id = T2.id`, or a subquery nested in a
    copy of itself. SQLite runs such a query, but no gold query of the sample repeats even one token so, and a
    model that starts to loop this way otherwise repeats itself to the token cap."""
    count = len(tokens)
    if count < 2 * REPEAT_TOKENS:
        return
    texts = [token.text.lower() for token in tokens]
    last = texts[-1]
    for start in range(count - 1 - REPEAT_TOKENS, count // 2 - 2, -1):
        if texts[start] != last:
            continue
        span = count - 1 - start
        if texts[count - span:] == texts[count - 2 * span:count - span]:
            raise ScopeViolation(f"the last {span} tokens repeat the {span} before them")


_MISSING = object()
