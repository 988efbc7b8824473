"""Schema-constrained decoding: the per-table grammar accepts every gold query and nothing else it should not,
and batched generation under it (left padding, one table per row, beams) writes SQL of each row's own table."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from sqlglot import exp
from transformers import LogitsProcessor

from experiments.config import ModelConfig, QuantizationConfig, load_config
from experiments.data.official import load_split
from experiments.data.prompt import build_prompt, format_number, quote_identifier, quote_string, render_sql
from experiments.data.records import SOURCE_SPLITS, Table
from experiments.data.sources import sample_dir
from experiments.decoding.constraint import SchemaConstraint, allowed_tokens
from experiments.decoding.generate import clean_generation, left_padded, newline_token_ids
from experiments.decoding.grammar import (
    MAX_CONDITIONS,
    MIN_STRING_BOUND,
    NUMBER_PATTERN,
    STRING_PATTERN,
    max_string_chars,
    sql_grammar,
)
from experiments.decoding.token_bytes import token_bytes
from experiments.model.loading import load_base_model, load_tokenizer
from experiments.model.tokenization import encode_prompt, encode_target
from experiments.sql.safe_sql import parse_single_query

# Header names that break naive quoting: quotes of both kinds, parentheses, slashes, dots, backslashes,
# Unicode, a tab, a name that is a prefix of another once quoted, one that looks like SQL.
AWKWARD = {
    "id": "2-awkward-1",
    "header": ['Say "hi"', "O'Neal (ft)", "School/Club Team", "No.", "No. in series", "Höhe (m²)", "a\\b",
               "日本語", "tab\there", '"', 'x" FROM "t"; DROP TABLE t; --', "Δ %"],
    "types": ["text", "real", "text", "real", "real", "real", "text", "text", "text", "text", "text", "real"],
    "rows": [["a", 1, "b", 2, 3, 4.5, "c", "d", "e", "f", "g", -1.5]],
}
AWKWARD_SQL = [  # (sel, agg, conds): every aggregation and operator, awkward values
    (0, 0, [[1, 0, "O'Neal"], [3, 1, -3]]),
    (1, 1, [[5, 2, 3.5], [10, 0, 'say "x"']]),
    (2, 2, [[11, 1, 1e20], [4, 2, 1e-7], [6, 0, "back\\slash"]]),
    (3, 3, [[1, 0, "1,234.5"], [7, 0, "ünïcödé ☃"]]),
    (4, 4, [[3, 2, "-0.25"], [9, 0, "'"], [8, 0, ""]]),
    (10, 5, [[11, 0, 12345678901234567], [0, 1, "x"], [2, 2, "y"], [3, 0, 0]]),
]


def write_awkward_release(root: Path) -> Path:
    """An official-layout release (train/dev/test) of one table with awkward header names."""
    root.mkdir(parents=True, exist_ok=True)
    for split in SOURCE_SPLITS:
        (root / f"{split}.tables.jsonl").write_text(json.dumps(AWKWARD) + "\n", encoding="utf-8")
        lines = [json.dumps({"phase": 1, "table_id": AWKWARD["id"], "question": f"question {n}?",
                             "sql": {"sel": sel, "agg": agg, "conds": conds}})
                 for n, (sel, agg, conds) in enumerate(AWKWARD_SQL)]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())  # Mistral's 32k SentencePiece tokenizer, byte fallback


@pytest.fixture(scope="module")
def constraint(tokenizer) -> SchemaConstraint:
    return SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id, *newline_token_ids(tokenizer)],
                            threads=1)


def gold_queries(directory: Path) -> list[tuple[Table, str, str]]:
    """(table, prompt, gold SQL) of every example of every split."""
    triples = []
    for split in SOURCE_SPLITS:
        data = load_split(directory, split)
        for example in data.examples:
            table = data.tables[example.table_id]
            triples.append((table, build_prompt(example.question, table), render_sql(example.query, table)))
    return triples


def accepts_tokens(constraint: SchemaConstraint, table: Table, ids: list[int]) -> bool:
    """Whether the grammar lets the model write exactly these tokens, the last one ending the row."""
    matcher = constraint.matcher(table)
    return matcher.consume_tokens(ids) and matcher.is_stopped()


def test_grammar_accepts_every_gold_query_of_the_sample(constraint, tokenizer):
    triples = gold_queries(sample_dir())
    assert len(triples) == 4800  # every split of the bundled sample
    eos, newline = tokenizer.eos_token_id, newline_token_ids(tokenizer)[0]
    rejected = []
    for table, prompt, sql in triples:
        trained = encode_target(tokenizer, prompt, sql)  # token by token as training taught: 'SELECT', ...
        alone = tokenizer(sql, add_special_tokens=False).input_ids  # SQL tokenised on its own: '▁SE', 'LECT', ...
        if not (constraint.accepts(table, sql) and accepts_tokens(constraint, table, trained + [eos])
                and accepts_tokens(constraint, table, trained + [newline, eos])
                and accepts_tokens(constraint, table, alone + [eos])):
            rejected.append(sql)
    assert rejected == []


def test_grammar_accepts_every_gold_query_of_an_awkward_official_release(constraint, tokenizer, tmp_path):
    triples = gold_queries(write_awkward_release(tmp_path / "release"))
    assert len(triples) == 3 * len(AWKWARD_SQL)
    sqls = {sql for _, _, sql in triples}
    assert any("1e+20" in sql for sql in sqls) and any("1e-07" in sql for sql in sqls)  # repr() exponents
    assert any("> -3" in sql for sql in sqls) and any("'O''Neal'" in sql for sql in sqls)
    for table, prompt, sql in triples:
        assert constraint.accepts(table, sql), sql
        assert accepts_tokens(constraint, table, encode_target(tokenizer, prompt, sql) + [tokenizer.eos_token_id])


def test_numbers_and_strings_as_rendered_match_the_grammars_patterns():
    rng = random.Random(0)
    values = [0.0, -0.0, 1.0, -7.0, 3.5, -0.25, 1e-5, 1e16, 1e300, -1.5e22, 5e-324, 2.0**53, 0.1 + 0.2]
    values += [rng.uniform(-1e6, 1e6) for _ in range(500)] + [10 ** rng.uniform(-30, 30) for _ in range(500)]
    values += [float(rng.randint(-10**18, 10**18)) for _ in range(200)]
    for value in values:
        assert re.fullmatch(NUMBER_PATTERN, format_number(value)), (value, format_number(value))
    for text in ["", "'", "it's", "''", "a\\b", "ünï ☃", 'say "x"', "\t"]:
        assert re.fullmatch(STRING_PATTERN, quote_string(text)), text
    assert not math.isfinite(float("inf"))  # non-finite values render as bare words: not numbers (see grammar.py)


def test_grammar_quotes_names_exactly_as_the_prompt_does():
    table = Table.from_json(AWKWARD)
    grammar = sql_grammar(table)
    for name in table.header:
        assert json.dumps(quote_identifier(name), ensure_ascii=False) in grammar
    assert json.dumps(quote_identifier("t")) in grammar
    assert '"\\"t\\"" where?' in sql_grammar(table)
    assert '"\\"other\\"" where?' in sql_grammar(table, table_name="other")


@pytest.mark.parametrize("sql", [
    'SELECT "Made up" FROM "t"',  # not a column of this table
    'SELECT "No" FROM "t"',  # a prefix of a real name is not a name
    'SELECT "No." FROM "t" WHERE "Player" = 1',  # a column of another table
    'SELECT MAX("No.", "No. in series") FROM "t"',  # an aggregation around two columns
    'SELECT MAX("No.") , "a\\b" FROM "t"',
    'SELECT COUNT(*) FROM "t"',
    'SELECT "No." FROM "t";',  # no semicolon, no second statement
    'SELECT "No." FROM "t"; DROP TABLE "t"',
    'SELECT "No." FROM "t"\nSELECT "No." FROM "t"',
    'SELECT "No." FROM "u"',  # the prompt's table name only
    'select "No." from "t"',
    'SELECT  "No." FROM "t"',  # spacing as rendered
    'SELECT "No." FROM "t" WHERE "No." = 007',
    'SELECT "No." FROM "t" WHERE "No." = \'unterminated',
    'SELECT "No." FROM "t" WHERE "No." != 3',
    'SELECT "No." FROM "t" WHERE "No." = 3 OR "No." = 4',
    'SELECT "No." FROM "t" WHERE "No." = inf',
    'SELECT "No." FROM "t" WHERE "No." = 3 AND',
    'SELECT "x" FROM "t"; DROP TABLE t; --" FROM "t"',  # only the whole quoted name is a column
])
def test_grammar_rejects_what_is_not_a_query_of_this_table(constraint, sql):
    table = Table.from_json(AWKWARD)
    assert not constraint.accepts(table, sql)


def test_grammar_accepts_the_awkward_names_themselves(constraint):
    table = Table.from_json(AWKWARD)
    for name in table.header:
        assert constraint.accepts(table, f"SELECT {quote_identifier(name)} FROM \"t\"")
        assert constraint.accepts(table, f"SELECT SUM({quote_identifier(name)}) FROM \"t\" WHERE "
                                         f"{quote_identifier(name)} < -1.5e-07 AND {quote_identifier(name)} = ''''")
    assert constraint.accepts(table, ' SELECT "No." FROM "t"\n')  # the leading space of "▁SE", the newline stop
    assert not constraint.accepts(table, 'SELECT "No." FROM "t"\n\n')


def test_grammar_makes_a_looping_model_end_its_query(constraint):
    """A value or a list of conditions cannot run on until the token budget (an unfinished, invalid query): at most
    four conditions, string values up to twice the table's longest cell (at least 64 characters)."""
    table = Table.from_json(AWKWARD)
    bound = max_string_chars(table)
    assert bound == MIN_STRING_BOUND  # AWKWARD's cells are short
    condition = '"No." = 3'
    assert constraint.accepts(table, 'SELECT "No." FROM "t" WHERE ' + " AND ".join([condition] * MAX_CONDITIONS))
    assert not constraint.accepts(table, 'SELECT "No." FROM "t" WHERE ' + " AND ".join([condition] * 5))
    def where_text_is(value: str) -> str:
        return f'SELECT "No." FROM "t" WHERE "a\\b" = {quote_string(value)}'

    assert constraint.accepts(table, where_text_is("x" * bound))
    assert not constraint.accepts(table, where_text_is("x" * (bound + 1)))
    assert constraint.accepts(table, where_text_is("'" * bound))  # a quote counts once, written twice
    long_cell = Table.from_json({**AWKWARD, "id": "2-long-1", "rows": [["y" * 100] + AWKWARD["rows"][0][1:]]})
    assert max_string_chars(long_cell) == 200
    assert constraint.accepts(long_cell, where_text_is("x" * 200))
    assert not constraint.accepts(table, 'SELECT "No." FROM "t" WHERE "No." = 1' + "0" * 30)


def test_bitmask_unpacking_matches_the_bits(monkeypatch):
    bitmask = torch.randint(-2**31, 2**31 - 1, (3, 3), dtype=torch.int32)  # 96 tokens
    expected = torch.tensor([[(int(bitmask[r, t // 32]) >> (t % 32)) & 1 == 1 for t in range(96)] + [False] * 4
                             for r in range(3)])
    assert expected.any() and not expected.all()
    assert torch.equal(allowed_tokens(bitmask, 100, torch.device("cpu")), expected)  # numpy; a padded lm_head
    assert torch.equal(allowed_tokens(bitmask, 90, torch.device("cpu")), expected[:, :90])
    monkeypatch.setattr("experiments.decoding.constraint.sys.byteorder", "big")  # the torch path (GPUs)
    assert torch.equal(allowed_tokens(bitmask, 100, torch.device("cpu")), expected)


class FinishWithin(LogitsProcessor):
    """A test stand-in for a trained model's wish to stop: after `free` tokens, a growing bonus to EOS and to
    closing quotes. Random weights alone never close a string value; the grammar still decides what is valid
    (this runs before it, as any processor would)."""

    def __init__(self, tokenizer, free: int, prompt_length: int) -> None:
        self.quotes = [i for i, spelled in enumerate(token_bytes(tokenizer)) if spelled in (b"'", b" '")]
        self.eos = tokenizer.eos_token_id
        self.free, self.prompt_length = free, prompt_length

    def __call__(self, input_ids, scores):
        late = input_ids.shape[1] - self.prompt_length - self.free
        if late <= 0:
            return scores
        scores = scores.clone()
        scores[:, self.quotes] += 3.0 * late
        scores[:, self.eos] += 5.0 * late
        return scores


@pytest.fixture(scope="module")
def tiny_model():
    return load_base_model(load_config(["experiment=smoke"]).model, QuantizationConfig(), torch.device("cpu")).eval()


def left_padded_batch(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)


def batch_of_questions(tables_dir: Path, split: str, count: int) -> list[tuple[str, Table]]:
    """`count` questions about different tables, with prompts of different lengths (so rows are padded)."""
    data = load_split(tables_dir, split)
    picked, seen = [], set()
    for example in data.examples:
        if example.table_id not in seen:
            seen.add(example.table_id)
            picked.append((build_prompt(example.question, data.tables[example.table_id]),
                           data.tables[example.table_id]))
    return picked[:count]


def generated_sql(tokenizer, tokens: list[int], stop_ids: set[int]) -> tuple[str, bool, list[int]]:
    """(SQL as infer.py cleans it, whether a stop token ended it, the tokens after the stop)."""
    stop = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
    text = tokenizer.decode(tokens[:stop], skip_special_tokens=True)
    return clean_generation(text), stop is not None, [] if stop is None else tokens[stop + 1:]


def check_own_table(sql: str, table: Table, constraint: SchemaConstraint) -> None:
    """Accepted by the library's matcher and by the evaluator's parser, naming only `table`'s columns."""
    assert constraint.accepts(table, sql), sql
    tree = parse_single_query(sql)  # the evaluator's parser: one read-only SELECT
    assert {t.name for t in tree.find_all(exp.Table)} == {"t"}
    columns = [c.name for c in tree.find_all(exp.Column)]
    assert columns and set(columns) <= set(table.header), sql


@pytest.mark.parametrize("decoding", [
    {"do_sample": False},
    {"do_sample": False, "num_beams": 3, "num_return_sequences": 3},
    {"do_sample": True, "num_return_sequences": 2, "top_k": 20},
], ids=["greedy", "beam_search", "sampling"])
def test_batched_constrained_generation_writes_each_rows_own_tables_sql(tiny_model, tokenizer, constraint,
                                                                       tmp_path, decoding):
    questions = batch_of_questions(sample_dir(), "test", 4)
    questions.append(batch_of_questions(write_awkward_release(tmp_path / "release"), "test", 1)[0])
    prompts, tables = [p for p, _ in questions], [t for _, t in questions]
    input_ids, attention = left_padded_batch(tokenizer, prompts)
    assert len(set(attention.sum(1).tolist())) > 1  # left padding is exercised
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    finish = FinishWithin(tokenizer, free=12, prompt_length=input_ids.shape[1])
    rejected_before = constraint.stats.rejected_tokens
    torch.manual_seed(0)
    sequences = tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=40,
                                    eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                    logits_processor=[finish, *constraint.logits_processor(tables)], **decoding)
    per_prompt = decoding.get("num_return_sequences", 1)
    assert sequences.shape[0] == len(tables) * per_prompt
    outputs = []
    for row in range(sequences.shape[0]):
        sql, stopped, after = generated_sql(tokenizer, sequences[row, input_ids.shape[1]:].tolist(), set(stop_ids))
        table = tables[row // per_prompt]
        assert stopped, f"row {row} ran to max_new_tokens: {sql!r}"
        assert set(after) <= {tokenizer.pad_token_id}  # a finished row is only padded
        check_own_table(sql, table, constraint)
        outputs.append(sql)
    assert any(" WHERE " in sql for sql in outputs)  # conditions were generated, not only bare selects
    if "num_beams" not in decoding:
        assert constraint.stats.rejected_tokens == rejected_before
    assert constraint.stats.masked_tokens > 0 and constraint.stats.mask_seconds > 0


def test_unconstrained_tiny_model_writes_no_sql(tiny_model, tokenizer):
    """The test above means something: without the grammar the same model writes no query at all."""
    questions = batch_of_questions(sample_dir(), "test", 2)
    input_ids, attention = left_padded_batch(tokenizer, [p for p, _ in questions])
    sequences = tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=12,
                                    do_sample=False, pad_token_id=tokenizer.pad_token_id)
    for row in range(sequences.shape[0]):
        text = tokenizer.decode(sequences[row, input_ids.shape[1]:], skip_special_tokens=True)
        assert not text.strip().startswith("SELECT")


def test_processor_checks_rows_against_tables(tiny_model, tokenizer, constraint):
    questions = batch_of_questions(sample_dir(), "test", 3)
    input_ids, attention = left_padded_batch(tokenizer, [p for p, _ in questions])
    with pytest.raises(ValueError, match="one table per prompt"):
        tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=2, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id,
                            logits_processor=constraint.logits_processor([t for _, t in questions[:2]]))
