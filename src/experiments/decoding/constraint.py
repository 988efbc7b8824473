"""Masking a batched `model.generate` so that every row writes SQL its own schema's grammar accepts (llguidance).

A prompt's schema is its WikiSQL table or, on multi-table data (Spider, BIRD), its database; decoding/schema_grammar.py
says which grammar each gets and what it is cached by. `SchemaConstraint` is made once per run: it builds
llguidance's tokenizer info (0.3 s for Mistral's 32k vocabulary) and compiles one grammar per table header or
database, cached. `SchemaConstraint.logits_processor(schemas)` makes the `transformers.LogitsProcessor` for one
`generate` call, given the schema of each prompt in batch-row order:

    stop_ids = [tokenizer.eos_token_id] + newline_token_ids(tokenizer)        # experiments.decoding.generate
    constraint = SchemaConstraint(tokenizer, stop_token_ids=stop_ids)
    sequences = model.generate(input_ids=..., attention_mask=..., eos_token_id=stop_ids, pad_token_id=pad_id,
                               logits_processor=constraint.logits_processor(schemas), max_new_tokens=...)
    constraint.stats.compile_seconds, constraint.stats.seconds_per_token

How rows are followed. With `num_beams=k` or `num_return_sequences=k` the batch has len(schemas) * k rows and
row r belongs to prompt r // k (transformers' layout). Beam search reorders rows between steps, so the processor
does not assume row r continues row r: it finds each row's parent by its generated tokens (a row whose history
is unchanged continues itself, the common case, checked for all rows at once), and copies a matcher when two
beams continue the same parent. A row that has produced a stop token (EOS or a newline) is finished: transformers
pads it, so its matcher is dropped and it is allowed only EOS (never an all -inf row, which would give NaN
probabilities). A row whose token the grammar rejects (possible only when another processor left no allowed
token finite, e.g. `min_new_tokens` forbidding the EOS the grammar requires, or a dead beam carrying -inf) is
treated the same way and counted in `stats.rejected_tokens`. So do not combine the processor with
`min_new_tokens`: transformers applies it before custom processors, and a row whose query is complete would have
no allowed token left. Sampling warpers (temperature, top-k, top-p) run after custom processors, on the masked
scores, so sampling needs nothing special.

Left padding needs nothing: every row's generated tokens start at the same position, the prompt length.
Rows that reach `max_new_tokens` before the grammar is complete hold a valid prefix, not a query; the caller
sees this as it always did (no stop token) and `SchemaConstraint.accepts` tells the two apart. Told the call's
`max_new_tokens`, the processor makes that rarer: in its last END_WINDOW tokens, a row whose query may end where it
stands (the grammar accepting it, and the scope check too) is allowed only EOS, so a model looping through
conditions ends with a whole query, not a cut one (`stats.forced_ends`; a greedy or sampled row then ends there,
while beam search may drop such a beam for a better one). A row in the window that cannot end yet is steered to an
end (decoding/closing_tokens.py): where the grammar allows a token that closes something (a `)`, CASE's END, a
string literal's closing quote) and the scope check lets it pass, the row is offered only those
(`stats.closing_steers`); where none is, the tokens that lengthen the query without bringing it nearer an end (a
`(`, AND, OR, an operator, a comma, more spaces, a number's next digit) are taken away while anything else is
allowed. So a model writing the digits of one number inside `max(`, nesting a subquery in a copy of itself or
chaining conditions closes what it opened and ends with a query rather than at the cap. The cap is the longest
training SQL plus a margin when training data exists (generate.new_tokens_cap), so only the longest queries the
model ever learned can meet the window.

Greedy decoding overlaps the grammar with the model (`greedy=True`, one row per prompt, no sampling). The
token generate will pick is the argmax of the scores the processor returns (custom processors run last, and greedy
search has no warper), so at the end of a step the processor advances every row by that token and fills the next
step's masks on a background thread while transformers appends the token and runs the next forward pass; the next
call only checks that each live row got the predicted token. Where one did not (nothing in this project's decoding
does that), the rows are rolled back and advanced as usual, so the masks are the same either way. `mask_seconds`
counts only the time a call holds generation up.

Name scoping (multi-table data, `check_scope`). A grammar knows which names exist, not which table an alias stands
for; decoding/sql_scope.py reads a row's text and says whether it can still become a query whose every column is in
scope. After the grammar's mask, each live row's best tokens are tried in score order (each appended to the row's
text; a stop token ends the query) until `need` of them pass: 1 for greedy rows, 2 x rows per prompt with beams or
several sequences (beam search keeps the best 2 x beams of a prompt); the ones that fail are masked. Tokens further
down stay unchecked (sampling may draw one). A row none of whose SCOPE_MAX_CHECKS best allowed tokens passes (its
text already holds a name out of scope, e.g. a token left unchecked) is left to the grammar alone from then on and
counted in `stats.scope_dead_ends`, so scoping never leaves a row without a token. Each row keeps a `ScopeReading`
of its text, carried on from step to step (and from a beam's parent), so a check reads only the text's last tokens.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import llguidance
import llguidance.torch
import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from experiments.data.prompt import TABLE_NAME
from experiments.decoding.closing_tokens import ClosingTokens, bitmask_of, ids_of
from experiments.decoding.schema_grammar import (
    Schema,
    SchemaKind,
    check_case,
    describe_schema,
    grammar_for,
    grammar_key,
    schema_kind,
)
from experiments.decoding.sql_scope import ScopeReading, ScopeSchema, scope_violation
from experiments.decoding.token_bytes import SPECIAL_MARKER, describe, llguidance_tokenizer, token_bytes
from experiments.model.tokenization import encode_target

SCOPE_LOOKAHEAD = 7  # tokens tried beyond the `need` best in one top-k on the device
SCOPE_MAX_CHECKS = 256  # a row's allowed tokens tried before scoping leaves it to the grammar
END_WINDOW = 24  # the last tokens before max_new_tokens: a query that may end is ended, one that may not is steered


class ConstraintUnusable(RuntimeError):
    """The grammar cannot steer this tokenizer's generation (see SchemaConstraint.check): decoding under it would
    write nothing valid."""


@dataclass
class ConstraintStats:
    """What constrained decoding cost, summed over the generate calls of one `SchemaConstraint`."""

    tokenizer_seconds: float = 0.0  # building llguidance's tokenizer info, once
    grammars: int = 0  # grammars compiled (distinct table headers and databases)
    compile_seconds: float = 0.0
    steps: int = 0  # processor calls (generation steps)
    masked_tokens: int = 0  # rows masked, summed over steps: generated tokens that were constrained
    mask_seconds: float = 0.0  # inside the processor: advancing matchers, computing and applying masks
    rejected_tokens: int = 0  # tokens the grammar refused (see the module docstring); 0 in plain decoding
    scope_checks: int = 0  # candidate tokens whose text the scope check read
    scope_rejected_tokens: int = 0  # candidates masked for naming a column out of scope
    scope_dead_ends: int = 0  # rows left to the grammar alone (see the module docstring)
    scope_seconds: float = 0.0  # of mask_seconds: the scope check
    overlapped_steps: int = 0  # greedy steps whose masks were filled while the model ran (see the module docstring)
    forced_ends: int = 0  # rows allowed only EOS near max_new_tokens (a beam may be dropped instead of ending)
    closing_steers: int = 0  # rows allowed only closing tokens near max_new_tokens, summed over steps

    @property
    def seconds_per_token(self) -> float | None:
        return self.mask_seconds / self.masked_tokens if self.masked_tokens else None

    def to_json(self) -> dict:
        return {**asdict(self), "seconds_per_token": self.seconds_per_token}


class SchemaConstraint:
    """Per-schema grammars for one tokenizer: tokenizer info built once, one compiled grammar per table header or
    database (schema_grammar.grammar_key).

    `stop_token_ids` are the ids that end a row in `generate` (EOS and the newline tokens); EOS is always one.
    `threads` is llguidance's mask-computing thread pool (None: its default, 80% of the cores up to 32).
    `multi_table`: the run decodes questions on databases (Spider, BIRD), not WikiSQL tables; the self-check runs
    for that kind here, and for the other kind the first time a schema of it is met.
    `check_scope`: on databases, also mask tokens that would name a column out of scope (see the module docstring).
    Made only after `check` passes: a constraint that cannot work says so here, not in a report of empty SQL.
    """

    def __init__(self, tokenizer, *, stop_token_ids: Sequence[int] = (), table_name: str = TABLE_NAME,
                 threads: int | None = None, multi_table: bool = False, check_scope: bool = True) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("constrained decoding needs a tokenizer with an EOS token: the grammar ends on it")
        started = time.perf_counter()
        self.tokenizer = tokenizer
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.token_bytes = token_bytes(tokenizer)
        self.tokenizer_info = llguidance_tokenizer(tokenizer, self.eos_token_id, self.token_bytes)
        self.closing = ClosingTokens.of(self.token_bytes, self.tokenizer_info.vocab_size)
        self.stats = ConstraintStats(tokenizer_seconds=time.perf_counter() - started)
        self.stop_token_ids = frozenset(int(i) for i in stop_token_ids) | {self.eos_token_id}
        self.table_name = table_name
        self.executor = llguidance.LLExecutor(num_threads=threads)
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar-masks")  # greedy overlap
        self._compiled: dict[tuple, llguidance.LLMatcher] = {}
        self.check_scope = check_scope
        self.multi_table = multi_table
        self._scopes: dict[tuple, ScopeSchema] = {}
        self._checked: set[SchemaKind] = set()
        self.check(tokenizer, SchemaKind.database if multi_table else SchemaKind.table)

    def check(self, tokenizer, kind: SchemaKind = SchemaKind.table) -> None:
        """A query the grammar of `kind` must accept (schema_grammar.check_case), tokenised as training tokenises
        it (prompt + target in one call, then EOS), must be writable token by token and ended by EOS; else
        ConstraintUnusable, naming the tokenizer and the way out."""
        case = check_case(kind, self.table_name)
        sql = case.sql
        ids = encode_target(tokenizer, case.prompt, sql)
        matcher = llguidance.LLMatcher(self.tokenizer_info, self.grammar(case.schema), log_level=0)  # not in stats
        for position, token in enumerate(ids):
            if not matcher.consume_token(token):
                written = tokenizer.convert_ids_to_tokens(ids[:position + 1])
                raise ConstraintUnusable(
                    f"inference.constrain=grammar cannot work with tokenizer {describe(tokenizer)}: the {kind.value} "
                    f"grammar refuses token {position} ({written[-1]!r}, id {token}) of a query it must accept, "
                    f"{sql!r} tokenised as training tokenises it ({written}). Decode without the grammar: "
                    "inference.constrain=none")
        if not (matcher.is_accepting() and matcher.consume_token(self.eos_token_id) and matcher.is_stopped()):
            raise ConstraintUnusable(
                f"inference.constrain=grammar cannot work with tokenizer {describe(tokenizer)}: after the whole "
                f"query {sql!r} the {kind.value} grammar does not end on EOS (id {self.eos_token_id}), so no row "
                "would stop. Decode without the grammar: inference.constrain=none")
        scope = self.scope(case.schema)
        if scope is not None:
            self._check_scope_reading(scope, tokenizer, ids, sql)
        self._checked.add(kind)

    def _check_scope_reading(self, scope: ScopeSchema, tokenizer, ids: list[int], sql: str) -> None:
        """The scope check must pass every prefix of the self-check query as the tokens spell it (the text it reads
        is the tokens' bytes after the prompt)."""
        text = b""
        for position, token in enumerate(ids):
            text += self.token_bytes[token]
            reason = scope_violation(scope, _row_text(text), complete=position == len(ids) - 1)
            if reason is not None:
                raise ConstraintUnusable(
                    f"inference.check_scope cannot work with tokenizer {describe(tokenizer)}: the scope check "
                    f"refuses {_row_text(text)!r} of the query {sql!r} ({reason}). Decode without it: "
                    "inference.check_scope=false")

    def scope(self, schema: Schema) -> ScopeSchema | None:
        """The names the scope check reads `schema`'s SQL against: databases only, when `check_scope` is on."""
        if not self.check_scope or schema_kind(schema) is not SchemaKind.database:
            return None
        key = grammar_key(schema)
        if key not in self._scopes:
            self._scopes[key] = ScopeSchema(schema)
        return self._scopes[key]

    def grammar(self, schema: Schema) -> str:
        return grammar_for(schema, self.table_name)

    def matcher(self, schema: Schema) -> llguidance.LLMatcher:
        """A fresh matcher for `schema`'s grammar, compiled on first use and copied after (microseconds)."""
        key = grammar_key(schema)
        compiled = self._compiled.get(key)
        if compiled is None:
            kind = schema_kind(schema)
            if kind not in self._checked:
                self.check(self.tokenizer, kind)
            started = time.perf_counter()
            compiled = llguidance.LLMatcher(self.tokenizer_info, self.grammar(schema), log_level=0)
            self.stats.compile_seconds += time.perf_counter() - started
            if compiled.is_error():
                raise ValueError(f"{describe_schema(schema)}: its SQL grammar does not compile: "
                                 f"{compiled.get_error()}")
            self.stats.grammars += 1
            self._compiled[key] = compiled
        return compiled.deep_copy()

    def prepare(self, schemas: Sequence[Schema]) -> None:
        """Compile the grammars of `schemas` now (e.g. before timing generation)."""
        for schema in schemas:
            self.matcher(schema)

    def accepts(self, schema: Schema, text: str) -> bool:
        """Whether `text` is a complete query of `schema`'s grammar (as generated: a leading space and a final
        newline are allowed, nothing else around it)."""
        matcher = self.matcher(schema)
        return matcher.consume_tokens(self.tokenizer_info.tokenize_str(text)) and matcher.is_accepting()

    def logits_processor(self, schemas: Sequence[Schema], *, greedy: bool = False,
                         max_new_tokens: int | None = None) -> LogitsProcessorList:
        """A processor for one `generate` call whose prompts ask about `schemas` (one table or database per
        prompt, in batch-row order). Make a new one for every call: it follows that call's rows. `greedy`: the call
        is greedy search with one row per prompt (do_sample=False, no beams), so the grammar's next masks are filled
        while the model runs (see the module docstring). `max_new_tokens`: the call's, so that a query still open
        near it is ended where it can end (see the module docstring)."""
        if not schemas:
            raise ValueError("logits_processor: no schemas (one table or database per prompt of the batch)")
        return LogitsProcessorList([SchemaLogitsProcessor(self, [self.matcher(s) for s in schemas],
                                                          [self.scope(s) for s in schemas], greedy=greedy,
                                                          max_new_tokens=max_new_tokens)])


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks each row's logits with its prompt's grammar; see the module docstring for how rows are followed."""

    def __init__(self, constraint: SchemaConstraint, prompt_matchers: list[llguidance.LLMatcher],
                 prompt_scopes: list[ScopeSchema | None] | None = None, *, greedy: bool = False,
                 max_new_tokens: int | None = None) -> None:
        self.constraint = constraint
        self.greedy = greedy
        self.end_from = None if max_new_tokens is None else max_new_tokens - END_WINDOW  # first step that may end
        self.pending: _Prediction | None = None  # greedy: rows advanced by the predicted tokens, masks being filled
        self.prompt_matchers = prompt_matchers
        self.prompt_scopes = prompt_scopes or [None] * len(prompt_matchers)
        self.texts: list[bytes] = []  # each row's generated bytes (scope check only)
        self.scoped: list[bool] = []  # rows the scope check still follows
        self.readings: list[ScopeReading | None] = []  # each scoped row's text as the scope check last read it
        self.rows_per_prompt = 0
        self.prompt_length: int | None = None
        self.matchers: list[llguidance.LLMatcher | None] = []  # None: the row is finished (or dead)
        self.history = torch.empty(0, 0, dtype=torch.long)  # generated tokens of each row so far
        self.bitmask: torch.Tensor | None = None
        self.spare_bitmask: torch.Tensor | None = None  # greedy: the next step's masks are filled here
        self.stop_ids = torch.tensor(sorted(constraint.stop_token_ids), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = time.perf_counter()
        filled = None
        if self.prompt_length is None:
            self._start(input_ids)
        else:
            generated = input_ids[:, self.prompt_length:].cpu()
            if self.pending is not None:
                filled = self._take_prediction(generated)
            if filled is None:
                self._advance(generated)
        live, forced, steered = filled or self._fill_masks(self.matchers, self.bitmask, self.history.shape[1])
        scores = self._apply(scores)
        if any(self.scoped):
            scores = self._check_scope(scores)
        if self.greedy:
            self._predict(scores)
        stats = self.constraint.stats
        stats.mask_seconds += time.perf_counter() - started
        stats.steps += 1
        stats.masked_tokens += live
        stats.forced_ends += len(forced)
        stats.closing_steers += steered
        return scores

    def _start(self, input_ids: torch.Tensor) -> None:
        rows, prompts = input_ids.shape[0], len(self.prompt_matchers)
        if self.greedy and rows != prompts:
            raise ValueError(f"a greedy processor serves one row per prompt, but generate has {rows} rows for "
                             f"{prompts} prompts (beams or several sequences): make it with greedy=False")
        if rows % prompts:
            raise ValueError(f"generate has {rows} rows but the processor was given {prompts} schemas: give one "
                             "table per prompt, or one database on multi-table data (rows = prompts x num_beams or "
                             "num_return_sequences)")
        self.rows_per_prompt = rows // prompts
        self.prompt_length = input_ids.shape[1]
        self.matchers = [self.prompt_matchers[r // self.rows_per_prompt].deep_copy() for r in range(rows)]
        self.history = torch.empty(rows, 0, dtype=torch.long)
        vocab = self.constraint.tokenizer_info.vocab_size
        self.bitmask = llguidance.torch.allocate_token_bitmask(rows, vocab)
        if self.greedy:
            self.spare_bitmask = llguidance.torch.allocate_token_bitmask(rows, vocab)
        self.texts = [b""] * rows
        self.scoped = [self.prompt_scopes[r // self.rows_per_prompt] is not None for r in range(rows)]
        self.readings = [None] * rows

    def _advance(self, generated: torch.Tensor) -> None:
        """Follow each row to its parent row of the last step, then feed it its newest token."""
        if generated.shape != (self.history.shape[0], self.history.shape[1] + 1):
            raise RuntimeError("SchemaLogitsProcessor serves one generate call, one token per step; make a new "
                               "one with SchemaConstraint.logits_processor() for every call")
        parents = self._parents(generated[:, :-1])
        matchers: list[llguidance.LLMatcher | None] = []
        handed_out: set[int] = set()
        for parent in parents:  # copy before any matcher advances: siblings must see the parent's state
            matcher = self.matchers[parent]
            if matcher is not None and parent in handed_out:
                matcher = matcher.deep_copy()
            handed_out.add(parent)
            matchers.append(matcher)
        newest = generated[:, -1]
        finished = torch.isin(newest, self.stop_ids).tolist()
        if any(self.scoped):
            spelled = self.constraint.token_bytes
            self.texts = [self.texts[parent] + spelled[token] for parent, token in zip(parents, newest.tolist(),
                                                                                        strict=True)]
            self.scoped = [self.scoped[parent] for parent in parents]
            self.readings = [self.readings[parent] for parent in parents]
        for row, (matcher, token, stop) in enumerate(zip(matchers, newest.tolist(), finished, strict=True)):
            if matcher is not None:
                matchers[row] = self._advance_row(matcher, token, stop)
        self.matchers = matchers
        self.history = generated

    def _advance_row(self, matcher: llguidance.LLMatcher, token: int, stop: bool) -> llguidance.LLMatcher | None:
        """The row's matcher after `token`: None once a stop token ends the row, or when the grammar refuses the
        token (counted). A refused token leaves no error state, so a greedy prediction can roll the row back."""
        if stop:
            return None
        if matcher.try_consume_tokens([token]) == 1:
            return matcher
        self.constraint.stats.rejected_tokens += 1
        return None

    def _parents(self, prefix: torch.Tensor) -> list[int]:
        """Row index of the last step that each row continues (itself, unless beam search reordered rows)."""
        rows = prefix.shape[0]
        parents = list(range(rows))
        if prefix.shape[1] == 0:
            return parents
        moved = (~(prefix == self.history).all(dim=1)).nonzero().flatten().tolist()
        for row in moved:
            first = row // self.rows_per_prompt * self.rows_per_prompt
            group = self.history[first:first + self.rows_per_prompt]
            same = (group == prefix[row]).all(dim=1).nonzero().flatten().tolist()
            if not same:
                raise RuntimeError(f"row {row}: its tokens continue no row of its prompt from the last step")
            parents[row] = first + same[0]
        return parents

    def _fill_masks(self, matchers: list[llguidance.LLMatcher | None], bitmask: torch.Tensor | None,
                    step: int) -> tuple[int, list[int], int]:
        """Bitmask rows for generated token `step`: the grammar's next tokens for live rows, EOS alone for finished
        ones and, near max_new_tokens, for rows whose query may end here (the scope check agreeing), closing tokens
        for the others where one is allowed (see the module docstring). Returns how many rows are live, those given
        EOS alone, and how many were given closing tokens alone."""
        assert bitmask is not None
        live = [(matcher, row) for row, matcher in enumerate(matchers) if matcher is not None]
        if live:
            llguidance.torch.fill_next_token_bitmask_par(self.constraint.executor, live, bitmask)
        ending, steered = [], 0
        if self.end_from is not None and step >= self.end_from:
            ending = [row for matcher, row in live if matcher.is_accepting() and self._may_end(row)]
            ended = set(ending)
            steered = self._steer_to_close([row for _, row in live if row not in ended], bitmask)
        eos = self.constraint.eos_token_id
        for row in [*(row for row, matcher in enumerate(matchers) if matcher is None), *ending]:
            bitmask[row].zero_()
            bitmask[row, eos // 32] = _bit(eos % 32)
        return len(live), ending, steered

    def _steer_to_close(self, rows: list[int], bitmask: torch.Tensor) -> int:
        """Narrow each of `rows`' allowed tokens (its bitmask row, changed in place) to the closing tokens among them
        that the scope check lets pass, if any; else only take away the tokens that would lengthen the query
        (closing_tokens.py), if anything else stays allowed. Returns how many rows were given closing tokens alone.
        The rows are read at once from their generated tokens: a step costs a few tensor operations, not a
        Python loop over the vocabulary per row."""
        if not rows:
            return 0
        closing = self.constraint.closing
        index = torch.tensor(rows)
        inside, after_digit = closing.read(self.history[index])
        words = bitmask[index]
        closers = words & closing.closers(inside)
        steered, rest = 0, []
        for position, (row, has_closers) in enumerate(zip(rows, closers.any(dim=1).tolist(), strict=True)):
            ids = ids_of(closers[position]) if has_closers else []
            if ids and self.scoped[row]:
                reading = self._last_reading(row)
                ids = [token for token in ids if self._in_scope(reading, self.texts[row], token)]
            if ids:
                bitmask[row] = bitmask_of(ids, words.shape[1])
                steered += 1
            else:
                rest.append(position)
        if rest:
            others = words[rest] & ~closing.lengthening_after(after_digit[rest])
            keep = others.any(dim=1)
            bitmask[index[rest][keep]] = others[keep]
        return steered

    def _may_end(self, row: int) -> bool:
        """Whether the scope check lets the row's query end where it stands (always, for a row it does not follow):
        a query that names a table it has not bound yet must go on, not be ended out of scope."""
        if not self.scoped[row]:
            return True
        return self._last_reading(row).violation(_row_text(self.texts[row]), complete=True) is None

    def _last_reading(self, row: int) -> ScopeReading:
        """The row's last reading, or a fresh one of its text (not stored: this may run on the background thread,
        and a reading checks any text, continuing its own or not)."""
        return self.readings[row] or ScopeReading(self.prompt_scopes[row // self.rows_per_prompt],
                                                  _row_text(self.texts[row]))

    def _fill_masks_in_mode(self, inference_mode: bool, matchers: list[llguidance.LLMatcher | None],
                            bitmask: torch.Tensor | None, step: int) -> tuple[int, list[int], int]:
        """_fill_masks on the background thread, in generate's inference mode (thread-local in torch): the bitmask
        was made in it."""
        with torch.inference_mode(inference_mode):
            return self._fill_masks(matchers, bitmask, step)

    def _predict(self, scores: torch.Tensor) -> None:
        """Greedy: advance every live row by its best token now and fill the next step's masks in the background
        (see the module docstring); the next call checks the prediction in `_take_prediction`."""
        tokens = scores.argmax(dim=1).cpu()
        before = _Prediction(tokens, list(self.matchers), list(self.texts), self.history)
        matchers: list[llguidance.LLMatcher | None] = list(self.matchers)
        stops = torch.isin(tokens, self.stop_ids).tolist()
        spelled = self.constraint.token_bytes
        for row, (token, stop) in enumerate(zip(tokens.tolist(), stops, strict=True)):
            matcher = matchers[row]
            if matcher is None:
                continue
            if self.scoped[row]:
                self.texts[row] = self.texts[row] + spelled[token]
            matchers[row] = self._advance_row(matcher, token, stop)
            if matchers[row] is not None:
                before.consumed.append(row)
            elif not stop:
                before.rejected += 1
        self.matchers = matchers
        self.history = torch.cat([self.history, tokens[:, None]], dim=1)
        before.masks = self.constraint.background.submit(self._fill_masks_in_mode, torch.is_inference_mode_enabled(),
                                                         matchers, self.spare_bitmask, self.history.shape[1])
        self.pending = before

    def _take_prediction(self, generated: torch.Tensor) -> tuple[int, list[int], int] | None:
        """What `_fill_masks` returned for the masks filled in the background if every live row got its predicted
        token; else None, with the rows rolled back to before the prediction (to be advanced as usual)."""
        pending, self.pending = self.pending, None
        assert pending is not None and pending.masks is not None
        filled = pending.masks.result()  # wait for the fill (and its error, if any) before touching the rows
        newest = generated[:, -1]
        rows = [row for row, matcher in enumerate(pending.matchers) if matcher is not None]
        if generated.shape == self.history.shape and bool((newest[rows] == pending.tokens[rows]).all()):
            self.bitmask, self.spare_bitmask = self.spare_bitmask, self.bitmask
            self.history = generated  # finished rows hold generate's padding, not the predicted token
            self.constraint.stats.overlapped_steps += 1
            return filled
        for row in pending.consumed:
            pending.matchers[row].rollback(1)
        self.constraint.stats.rejected_tokens -= pending.rejected
        self.matchers, self.texts, self.history = pending.matchers, pending.texts, pending.history
        return None

    def _check_scope(self, scores: torch.Tensor) -> torch.Tensor:
        """Masks, in each live scoped row, the best allowed tokens whose text would name a column out of scope,
        until `need` pass (see the module docstring)."""
        started = time.perf_counter()
        stats = self.constraint.stats
        rows = [row for row, matcher in enumerate(self.matchers) if matcher is not None and self.scoped[row]]
        if not rows:
            return scores
        need = 1 if self.rows_per_prompt == 1 else 2 * self.rows_per_prompt
        top = min(scores.shape[1], need + SCOPE_LOOKAHEAD)
        values, indices = scores[rows].topk(top, dim=1)
        ranked = zip(indices.tolist(), values.tolist(), strict=True)  # one copy to the host for all rows
        masked_rows: list[int] = []
        masked_ids: list[int] = []
        for row, (row_ids, row_values) in zip(rows, ranked, strict=True):
            scope = self.prompt_scopes[row // self.rows_per_prompt]
            candidates = [t for t, v in zip(row_ids, row_values, strict=True) if v != float("-inf")]
            reading = self._reading(row, scope)
            passed, refused = self._try(reading, self.texts[row], candidates, need)
            if passed < need and len(candidates) == top:  # more may be allowed below the top-k
                more = _ranked_allowed(scores[row], SCOPE_MAX_CHECKS)[top:]
                passed_more, refused_more = self._try(reading, self.texts[row], more, need - passed)
                passed, refused = passed + passed_more, refused + refused_more
            if passed == 0:
                self.scoped[row] = False
                stats.scope_dead_ends += 1
                continue
            masked_rows.extend([row] * len(refused))
            masked_ids.extend(refused)
        if masked_ids:
            scores[torch.tensor(masked_rows, device=scores.device),
                   torch.tensor(masked_ids, device=scores.device)] = float("-inf")
            stats.scope_rejected_tokens += len(masked_ids)
        stats.scope_seconds += time.perf_counter() - started
        return scores

    def _reading(self, row: int, scope: ScopeSchema) -> ScopeReading:
        """The row's text read up to its settled tokens, carried on from the row's (or its parent's) last reading."""
        text = _row_text(self.texts[row])
        reading = self.readings[row]
        if reading is None:
            reading = ScopeReading(scope, text)
        elif reading.text != text:
            reading = reading.extended(text)
        self.readings[row] = reading
        return reading

    def _try(self, reading: ScopeReading, text: bytes, candidates: list[int], need: int) -> tuple[int, list[int]]:
        """How many of `candidates`, tried in order until `need` pass, keep `text` in scope, and those refused."""
        passed, refused = 0, []
        for token in candidates:
            self.constraint.stats.scope_checks += 1
            if self._in_scope(reading, text, token):
                passed += 1
                if passed == need:
                    break
            else:
                refused.append(token)
        return passed, refused

    def _in_scope(self, reading: ScopeReading, text: bytes, token: int) -> bool:
        spelled = self.constraint.token_bytes[token]
        if token in self.constraint.stop_token_ids:  # the query ends: EOS writes nothing, a newline token may
            written = b"" if spelled.startswith(SPECIAL_MARKER) else spelled.split(b"\n")[0]
            return reading.violation(_row_text(text + written), complete=True) is None
        if spelled.startswith(SPECIAL_MARKER):
            return True  # the grammar decides about special tokens
        return reading.violation(_row_text(text + spelled)) is None

    def _apply(self, scores: torch.Tensor) -> torch.Tensor:
        """scores with every token the bitmask forbids set to -inf."""
        assert self.bitmask is not None
        allowed = allowed_tokens(self.bitmask, scores.shape[1], scores.device)
        return torch.where(allowed, scores, float("-inf"))


@dataclass
class _Prediction:
    """A greedy step's prediction: the tokens, the rows' state before them (to roll back to; the scope check does
    not change which rows it follows between a prediction and its check), the rows whose matcher consumed its token,
    and the background fill of the next masks."""

    tokens: torch.Tensor
    matchers: list[llguidance.LLMatcher | None]
    texts: list[bytes]
    history: torch.Tensor
    consumed: list[int] = field(default_factory=list)
    rejected: int = 0  # rows whose predicted token the grammar refused (counted in the stats)
    masks: Future | None = None


def _row_text(spelled: bytes) -> str:
    """A row's generated bytes as the scope check reads them: a character cut at the end is left out."""
    return spelled.decode("utf-8", errors="ignore")


def _ranked_allowed(scores: torch.Tensor, most: int) -> list[int]:
    """Up to `most` token ids of one row's finite scores, best first."""
    values, indices = scores.topk(min(most, scores.shape[0]))
    return [t for t, v in zip(indices.tolist(), values.tolist(), strict=True) if v != float("-inf")]


def allowed_tokens(bitmask: torch.Tensor, vocab: int, device: torch.device) -> torch.Tensor:
    """(rows, vocab) booleans on `device` from an int32 bitmask (bit j of word w: token 32w + j). Token ids past
    the bitmask (e.g. a padded lm_head) are not allowed. The bits are unpacked where the scores are: by numpy's
    unpackbits on the CPU (about half the time of torch shifts there), by shifts on a GPU."""
    if device.type == "cpu" and sys.byteorder == "little":  # little-endian bytes: least significant bit first
        bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
        allowed = torch.from_numpy(bits.view(np.bool_))
    else:
        shifts = torch.arange(32, device=device, dtype=torch.int32)
        allowed = ((bitmask.to(device).unsqueeze(-1) >> shifts) & 1).bool().flatten(1)
    if allowed.shape[1] >= vocab:
        return allowed[:, :vocab]
    return torch.nn.functional.pad(allowed, (0, vocab - allowed.shape[1]), value=False)


def _bit(index: int) -> int:
    """Bit `index` of an int32 bitmask word, as the signed value torch stores."""
    return (1 << index) - (1 << 32) if index == 31 else 1 << index
