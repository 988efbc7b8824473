"""Grammar-constrained decoding on multi-table data (Spider, BIRD): batched generation under each prompt's own
database grammar (left padding, beams, sampling, execution guidance on top) writes SQL that names only that
database's tables and columns; compiled grammars are shared by database; a tokenizer the grammar cannot steer is
refused before any generation."""

from __future__ import annotations

import dataclasses
import sqlite3

import llguidance.hf
import pytest
import sqlglot
import torch
from conftest import tiny_mistral_config
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from test_decoding_grammar import FinishWithin, generated_sql
from test_tokenizer_families import load_family
from transformers import MistralForCausalLM

from experiments.config import ModelConfig, load_config
from experiments.data.schema import Database
from experiments.data.schema_prompt import build_schema_prompt
from experiments.data.sources import spider_sample_dir
from experiments.data.spider import load_spider
from experiments.decoding.constraint import END_WINDOW, ConstraintStats, ConstraintUnusable, SchemaConstraint
from experiments.decoding.generate import Decoding, generate_sql, left_padded, newline_token_ids
from experiments.decoding.guided import EXECUTES, NONE_EXECUTES
from experiments.decoding.schema_grammar import CHECK_DATABASE
from experiments.decoding.token_bytes import token_bytes
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import encode_prompt, encode_target


class Finish(FinishWithin):
    """FinishWithin for the multi-table grammar: after `free` tokens, a growing bonus to EOS, to both quotes (a random
    model opens double-quoted strings too) and to ')' (it opens function calls and subqueries)."""

    def __init__(self, tokenizer, free: int, prompt_length: int) -> None:
        super().__init__(tokenizer, free, prompt_length)
        closers = (b"'", b" '", b'"', b' "', b")", b" )")
        self.quotes = [i for i, spelled in enumerate(token_bytes(tokenizer)) if spelled in closers]


class Finishing:
    """The tiny model, with Finish before the processors generate_sql gives it (a stand-in for a trained model's
    wish to stop)."""

    def __init__(self, model, tokenizer, free: int) -> None:
        self.model, self.tokenizer, self.free = model, tokenizer, free

    def generate(self, input_ids, logits_processor=(), **options):
        finish = Finish(self.tokenizer, self.free, input_ids.shape[1])
        return self.model.generate(input_ids=input_ids, logits_processor=[finish, *logits_processor], **options)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())  # the tiny model's: Mistral's 32k SentencePiece tokenizer


@pytest.fixture(scope="module")
def constraint(tokenizer) -> SchemaConstraint:
    return SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id, *newline_token_ids(tokenizer)],
                            threads=1, multi_table=True)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MistralForCausalLM(tiny_mistral_config()).eval()


@pytest.fixture(scope="module")
def questions() -> list[tuple[str, Database]]:
    """Four test questions of the bundled sample on four databases, prompted as spider_smoke prompts them."""
    test = load_spider(spider_sample_dir())["test"]
    picked: dict[str, tuple[str, Database]] = {}
    for example in test.examples:
        database = test.databases[example.db_id]
        picked.setdefault(example.db_id, (build_schema_prompt(example.question, database, {}, 100_000).text, database))
    return list(picked.values())[:4]


def check_own_database(sql: str, database: Database, constraint: SchemaConstraint, scoped: bool = False) -> None:
    """Accepted by the grammar; SQLite parses it against the database file and finds no unknown table; every table
    it reads is one of the database's and every column name one of its columns (a double-quoted unknown word is a
    string to SQLite: allowed). What the grammar leaves unchecked (a function's arity, types; without `scoped`,
    undefined aliases and a column of a table not in FROM) may still make SQLite refuse to run it."""
    assert constraint.accepts(database, sql), sql
    conn = sqlite3.connect(f"{database.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    unwritables = ("syntax error", "unrecognized token", "incomplete input", "no such table") + (
        ("no such column", "ambiguous column") if scoped else ())
    try:
        conn.execute(f"EXPLAIN {sql}")
    except sqlite3.Error as error:
        for unwritable in unwritables:
            assert unwritable not in str(error), f"{error}: {sql!r}"
    finally:
        conn.close()
    tree = sqlglot.parse_one(sql, dialect="sqlite", error_level=ErrorLevel.IGNORE)  # arity is not the grammar's
    tables = {t.name.casefold() for t in database.tables}
    columns = {c.name.casefold() for t in database.tables for c in t.columns}
    assert {t.name.casefold() for t in tree.find_all(exp.Table)} <= tables, sql
    for column in tree.find_all(exp.Column):
        name = column.name
        double_quoted = '"' + name.replace('"', '""') + '"'
        assert name.casefold() in columns or double_quoted in sql, f"{name!r} in {sql!r}"


def is_prefix(constraint: SchemaConstraint, database: Database, text: str) -> bool:
    """Whether `text` is the start of a query of the database's grammar (a row cut by max_new_tokens)."""
    matcher = constraint.matcher(database)
    return matcher.consume_tokens(constraint.tokenizer_info.tokenize_str(text))


@pytest.mark.parametrize("decoding", [
    {"do_sample": False},
    {"do_sample": False, "num_beams": 2, "num_return_sequences": 2},
    {"do_sample": True, "num_return_sequences": 2, "top_k": 20},
], ids=["greedy", "beam_search", "sampling"])
def test_batched_constrained_generation_writes_each_rows_own_databases_sql(tiny_model, tokenizer, constraint,
                                                                          questions, decoding):
    prompts, databases = [p for p, _ in questions], [d for _, d in questions]
    input_ids, attention = left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    assert len(set(attention.sum(1).tolist())) > 1  # left padding is exercised
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    finish = Finish(tokenizer, free=10, prompt_length=input_ids.shape[1])
    rejected_before, masked_before = constraint.stats.rejected_tokens, constraint.stats.masked_tokens
    dead_ends_before, checks_before = constraint.stats.scope_dead_ends, constraint.stats.scope_checks
    torch.manual_seed(0)
    with torch.inference_mode():
        sequences = tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=48,
                                        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                        logits_processor=[finish, *constraint.logits_processor(databases)],
                                        **decoding)
    per_prompt = decoding.get("num_return_sequences", 1)
    assert sequences.shape[0] == len(databases) * per_prompt
    completed = 0
    for row in range(sequences.shape[0]):
        tokens = sequences[row, input_ids.shape[1]:].tolist()
        sql, stopped, after = generated_sql(tokenizer, tokens, set(stop_ids))
        database = databases[row // per_prompt]
        if stopped:
            assert set(after) <= {tokenizer.pad_token_id}  # a finished row is only padded
            # beam search and sampling may keep a token scoping left unchecked; greedy rows never do
            check_own_database(sql, database, constraint, scoped=constraint.stats.scope_dead_ends == dead_ends_before)
            completed += 1
        else:
            assert len(tokens) == 48 and is_prefix(constraint, database, sql), sql  # ran to max_new_tokens
    assert completed >= sequences.shape[0] // 2  # the check above is about queries, not only prefixes
    if "num_beams" not in decoding:
        assert constraint.stats.rejected_tokens == rejected_before
    assert constraint.stats.masked_tokens > masked_before
    assert constraint.stats.scope_checks > checks_before
    if decoding == {"do_sample": False}:
        assert constraint.stats.scope_dead_ends == dead_ends_before


def test_grammar_plus_execution_guidance_through_generate_sql(tiny_model, tokenizer, questions):
    """The infer stage's path: constrain=grammar and execution_guided=2 at once, on each question's database."""
    cfg = load_config(["experiment=spider_smoke", "inference.constrain=grammar", "inference.execution_guided=2"])
    decoding = Decoding.for_run(cfg.inference, tokenizer, spider_sample_dir() / "unused.sqlite", multi_table=True)
    prompts, databases = [p for p, _ in questions], [d for _, d in questions]
    try:
        generated, tokens = generate_sql(Finishing(tiny_model, tokenizer, free=10), tokenizer, prompts, cfg,
                                         torch.device("cpu"), 48, progress=False, schemas=databases,
                                         decoding=decoding)
    finally:
        decoding.close()
    assert tokens > 0
    for g, database in zip(generated, databases, strict=True):
        assert g.guided_reason in (EXECUTES, NONE_EXECUTES)
        if decoding.constraint.accepts(database, g.sql):
            check_own_database(g.sql, database, decoding.constraint)
        else:
            assert is_prefix(decoding.constraint, database, g.sql), g.sql
    assert sum(decoding.constraint.accepts(d, g.sql) for g, d in zip(generated, databases, strict=True)) >= 2
    summary = decoding.summary()
    assert summary["grammars_compiled"] == len(set(d.id for d in databases)) == 4
    assert summary["grammar_compile_seconds"] > 0 and summary["grammar_masked_tokens"] > 0
    assert summary["guidance_seconds"] > 0


def test_grammars_are_compiled_once_per_database_and_apart_by_tables(tokenizer, questions):
    constraint = SchemaConstraint(tokenizer, threads=1, multi_table=True)
    database = questions[0][1]
    copy = dataclasses.replace(database, foreign_keys=(), path=database.path.with_name("elsewhere.sqlite"))
    constraint.prepare([database, copy, database])  # each prompt carries its own copy: the same names, one grammar
    assert constraint.stats.grammars == 1 and constraint.stats.compile_seconds > 0
    first = database.tables[0]
    renamed = dataclasses.replace(database, tables=(dataclasses.replace(first, name="renamed_table"),
                                                    *database.tables[1:]))
    constraint.prepare([renamed])  # the same id, other tables (another release's database): its own grammar
    assert constraint.stats.grammars == 2
    column = first.columns[0].name
    assert constraint.accepts(renamed, f"SELECT {column} FROM renamed_table")
    assert not constraint.accepts(database, f"SELECT {column} FROM renamed_table")


def test_a_database_without_tables_is_refused_by_name(constraint):
    with pytest.raises(ValueError, match="database 'empty'"):
        constraint.matcher(Database(id="empty", tables=(), foreign_keys=(), path=CHECK_DATABASE.path))


def test_a_tokenizer_the_grammar_misreads_fails_at_once_on_multi_table_data(tmp_path, monkeypatch):
    """As for WikiSQL (test_tokenizer_families.py): llguidance's own reader misreads the mixed decoder, and the
    multi-table self-check (a join with a quoted name, a quote in a string, a number, an aggregate) says so before any
    generation, naming the tokenizer and the way out."""
    tokenizer = load_family("mixed_decoder", tmp_path)
    monkeypatch.setattr("experiments.decoding.constraint.llguidance_tokenizer",
                        lambda tok, eos, tokens=None: llguidance.hf.from_tokenizer(tok, eos_token=eos))
    with pytest.raises(ConstraintUnusable) as caught:
        SchemaConstraint(tokenizer, multi_table=True)
    message = str(caught.value)
    for part in ("inference.constrain=none", "EOS '<|im_end|>'", "database grammar", "Player Stats", "refuses"):
        assert part in message


def test_greedy_overlap_writes_and_masks_exactly_what_the_step_by_step_processor_does(tiny_model, tokenizer,
                                                                                      questions):
    """With greedy=True the next masks are filled while the model runs; the tokens, the rows masked and the scope
    check's verdicts are those of the processor that fills them after each step."""
    prompts, databases = [p for p, _ in questions], [d for _, d in questions]
    input_ids, attention = left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    runs = {}
    for greedy in (False, True):
        constraint = SchemaConstraint(tokenizer, stop_token_ids=stop_ids, multi_table=True)
        finish = Finish(tokenizer, free=10, prompt_length=input_ids.shape[1])
        with torch.inference_mode():
            sequences = tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=40,
                                            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                            do_sample=False, logits_processor=[
                                                finish, *constraint.logits_processor(databases, greedy=greedy,
                                                                                     max_new_tokens=40)])
        stats = constraint.stats
        runs[greedy] = (sequences, stats.masked_tokens, stats.scope_checks, stats.scope_rejected_tokens,
                        stats.rejected_tokens, stats.steps, stats.forced_ends)
        assert (stats.overlapped_steps > 0) is greedy
    assert torch.equal(runs[True][0], runs[False][0])
    assert runs[True][1:] == runs[False][1:]
    assert runs[True][2] > 0  # the scope check ran


class Scripted:
    """A model that writes each row's script token by token (a large bonus to its next token) and, at its end, goes
    on at random: a trained model that does not stop."""

    def __init__(self, scripts: list[list[int]], prompt_length: int) -> None:
        self.scripts, self.prompt_length = scripts, prompt_length

    def __call__(self, input_ids, scores):
        at = input_ids.shape[1] - self.prompt_length
        scores = scores.clone()
        for row, script in enumerate(self.scripts):
            if at < len(script):
                scores[row, script[at]] += 1000.0
        return scores


def scripted_runs(model, tokenizer, prompts: list[str], databases: list[Database], scripts: list[list[int]], cap: int,
                  greedy: bool) -> dict[bool, tuple[list[tuple[str, bool]], ConstraintStats]]:
    """Each row's (SQL, stopped) and the constraint's stats when `model` writes the scripts under the grammar and
    scope check, up to `cap` new tokens: not told the cap (False), and told it (True)."""
    input_ids, attention = left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    runs = {}
    for told in (False, True):
        constrained = SchemaConstraint(tokenizer, stop_token_ids=stop_ids, multi_table=True)
        processors = [Scripted(scripts, input_ids.shape[1]),
                      *constrained.logits_processor(databases, greedy=greedy, max_new_tokens=cap if told else None)]
        with torch.inference_mode():
            sequences = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=cap,
                                       eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                       do_sample=False, logits_processor=processors)
        rows = [generated_sql(tokenizer, row.tolist(), set(stop_ids))[:2] for row in sequences[:, input_ids.shape[1]:]]
        runs[told] = (rows, constrained.stats)
    return runs


@pytest.mark.parametrize("greedy", [False, True], ids=["step_by_step", "greedy_overlap"])
@pytest.mark.parametrize("window_starts", [0, 1], ids=["where_a_query_may_end", "just_after"])
def test_a_query_still_open_near_the_token_cap_is_ended_where_it_can_end(tiny_model, tokenizer, constraint, questions,
                                                                          greedy, window_starts):
    """A model still writing at max_new_tokens leaves a cut query; told the cap, the processor ends each row at the
    first point of the last END_WINDOW tokens where its query may end: a whole query the grammar accepts, the
    model's own up to there. A row that ends on its own before the window is unchanged. The window starts where a
    query may end, or one token after (so a window one token off either way ends elsewhere)."""
    prompts, databases = [p for p, _ in questions], [d for _, d in questions]
    conditions = " AND ".join(f"{n} = {n}" for n in range(1, 9))
    sqls = [f"SELECT count(*) FROM {d.tables[0].name} WHERE {conditions}" for d in databases]
    sqls[0] = f"SELECT count(*) FROM {databases[0].tables[0].name}"  # ends on its own, well before the cap
    scripts = [encode_target(tokenizer, p, sql) for p, sql in zip(prompts, sqls, strict=True)]
    scripts[0] = [*scripts[0], tokenizer.eos_token_id]
    ends = [j for j in range(1, len(scripts[1])) if constraint.accepts(databases[1], tokenizer.decode(scripts[1][:j]))]
    cap = next(j for j in ends if j >= 20 and j + 1 not in ends) + window_starts + END_WINDOW
    assert len(scripts[0]) < cap - END_WINDOW and all(len(script) > cap for script in scripts[1:])
    runs = {told: (rows, stats.forced_ends)
            for told, (rows, stats) in scripted_runs(tiny_model, tokenizer, prompts, databases, scripts, cap,
                                                     greedy).items()}
    assert runs[False] == ([(sqls[0], True)] + [(mock, False) for mock, _ in runs[False][0][1:]], 0)
    rows, ended = runs[True]
    assert rows[0] == (sqls[0], True) and ended == len(databases) - 1
    for database, script, (sql, stopped) in zip(databases[1:], scripts[1:], rows[1:], strict=True):
        first_end = next(j for j in range(cap - END_WINDOW, cap)  # EOS as token j: the first place it may stand
                         if constraint.accepts(database, tokenizer.decode(script[:j])))
        assert stopped and sql == tokenizer.decode(script[:first_end]).strip() and " AND " in sql, sql


def test_a_greedy_processor_refuses_beams(tiny_model, tokenizer, constraint, questions):
    prompts, databases = [p for p, _ in questions[:2]], [d for _, d in questions[:2]]
    input_ids, attention = left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="greedy=False"):
        tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=2, num_beams=2,
                            pad_token_id=tokenizer.pad_token_id,
                            logits_processor=constraint.logits_processor(databases, greedy=True))


@pytest.mark.parametrize("greedy", [False, True], ids=["step_by_step", "greedy_rolled_back"])
@pytest.mark.parametrize("check_scope", [True, False], ids=["scoped", "grammar_only"])
def test_the_models_best_token_is_masked_when_it_names_a_column_out_of_scope(tokenizer, check_scope, greedy):
    """A model that prefers `T2.theme` (a column of concert, but T2 is stadium) over `T2.capacity` writes capacity
    under the scope check; the grammar alone lets theme through (it is a column of the database)."""
    from test_multi_table_grammar import CONCERTS

    constraint = SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id], threads=1, multi_table=True,
                                  check_scope=check_scope)
    prompt = build_schema_prompt("Which stadiums?", CONCERTS, {}, 100_000).text
    written = "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id WHERE T2."
    ids = encode_target(tokenizer, prompt, written)
    wrong, right = (encode_target(tokenizer, prompt, written + column)[len(ids)] for column in ("theme", "capacity"))
    assert encode_target(tokenizer, prompt, written + "theme")[:len(ids)] == ids
    processor = constraint.logits_processor([CONCERTS], greedy=greedy)[0]  # greedy: never the predicted token
    prompt_ids = encode_prompt(tokenizer, prompt)
    vocab = constraint.tokenizer_info.vocab_size
    for step in range(len(ids)):  # teacher-forced: the processor follows the row token by token
        processor(torch.tensor([prompt_ids + ids[:step]]), torch.zeros(1, vocab))
    rejected = constraint.stats.scope_rejected_tokens
    scores = torch.zeros(1, vocab)
    scores[0, wrong], scores[0, right] = 10.0, 5.0
    out = processor(torch.tensor([prompt_ids + ids]), scores)
    assert out[0, right] == 5.0
    assert bool(out[0, wrong] == float("-inf")) is check_scope
    assert constraint.stats.scope_rejected_tokens - rejected == (1 if check_scope else 0)
    assert constraint.stats.overlapped_steps < (len(ids) if greedy else 1)  # greedy: predictions were rolled back


@pytest.mark.parametrize("greedy", [False, True], ids=["step_by_step", "greedy_overlap"])
def test_near_the_cap_a_query_that_would_end_out_of_scope_goes_on(tokenizer, greedy):
    """`SELECT T2.name FROM singer AS T1` is a query the grammar may end, but T2 is not bound yet: in the window
    before max_new_tokens it is not made to end (a JOIN can still bind T2), while the same query with T1 is."""
    from test_multi_table_grammar import CONCERTS

    prompt = build_schema_prompt("Which singers?", CONCERTS, {}, 100_000).text
    prompt_ids = encode_prompt(tokenizer, prompt)
    for written, ends in (("SELECT T2.name FROM singer AS T1", False), ("SELECT T1.name FROM singer AS T1", True)):
        constraint = SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id], threads=1, multi_table=True)
        ids = encode_target(tokenizer, prompt, written)
        processor = constraint.logits_processor([CONCERTS], greedy=greedy, max_new_tokens=len(ids) + END_WINDOW)[0]
        vocab = constraint.tokenizer_info.vocab_size
        for step in range(len(ids) + 1):  # the model writes `written`, then prefers EOS a little
            scores = torch.zeros(1, vocab)
            scores[0, ids[step] if step < len(ids) else tokenizer.eos_token_id] = 5.0
            out = processor(torch.tensor([prompt_ids + ids[:step]]), scores)
        allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
        assert (allowed == [tokenizer.eos_token_id]) is ends, written
        assert (tokenizer.eos_token_id in allowed) is ends  # the scope check masks the end of the out-of-scope query
        assert constraint.stats.forced_ends == (1 if ends else 0)


LOOPS = {  # a model that never stops: the digits of one number, subqueries nested in near-copies, a string
    "number": "SELECT {c} FROM {t} ORDER BY abs(1" + "0" * 400,
    "subqueries": "".join(f"SELECT {{c}} FROM {{t}} WHERE {{c}} > {n} AND {{c}} IN (" for n in range(40)),
    "string": "SELECT {c} FROM {t} WHERE {c} = 'a" + " b" * 200,
}


@pytest.mark.parametrize("greedy", [False, True], ids=["step_by_step", "greedy_overlap"])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_looping_query_is_steered_to_close_what_it_opened_and_end_before_the_cap(tiny_model, tokenizer, constraint,
                                                                                   questions, greedy, loop):
    """A model looping inside a bracket or a string is cut at max_new_tokens with it open (SQLite: incomplete
    input); told the cap, the processor offers such a row only closing tokens in the last END_WINDOW tokens, so it
    closes what it opened and ends: a query its database runs, the model's own up to the window."""
    prompts, databases = [p for p, _ in questions], [d for _, d in questions]
    sqls = [LOOPS[loop].format(t=d.tables[0].name, c=d.tables[0].columns[0].name) for d in databases]
    scripts = [encode_target(tokenizer, p, sql) for p, sql in zip(prompts, sqls, strict=True)]
    cap = 60
    runs = scripted_runs(tiny_model, tokenizer, prompts, databases, scripts, cap, greedy)
    cut, stats = runs[False]
    assert all(not stopped for _, stopped in cut) and stats.closing_steers == 0, cut
    rows, stats = runs[True]
    assert stats.closing_steers >= len(databases) and stats.scope_dead_ends == 0
    for database, script, (sql, stopped) in zip(databases, scripts, rows, strict=True):
        assert stopped, sql
        assert sql.startswith(tokenizer.decode(script[:cap - END_WINDOW]).strip()), sql
        check_own_database(sql, database, constraint, scoped=True)
