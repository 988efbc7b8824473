"""Labels on Mistral's real tokenizer: BOS like the Hub's, EOS kept in the labels, pads and prompt masked."""

from __future__ import annotations

import pytest
import torch

from experiments.config import LossOn, ModelConfig
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import IGNORE_INDEX, encode_example, encode_prompt
from experiments.training.batching import collate_padded, plan_batches

PROMPT = '### Schema\nCREATE TABLE "t" ("Player" TEXT, "No." REAL)\n### Question\nWho wears 21?\n### SQL\n'
TARGET = 'SELECT "Player" FROM "t" WHERE "No." = 21'


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())  # mistral-common's tokenizer.model.v1


def test_tokenizer_behaves_like_the_hubs_mistral(tokenizer):
    assert len(tokenizer) == 32000
    ids = tokenizer("SELECT").input_ids
    assert ids[0] == tokenizer.bos_token_id == 1 and ids[-1] != tokenizer.eos_token_id
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2


@pytest.mark.parametrize("loss_on", [LossOn.all, LossOn.completion])
def test_eos_is_kept_in_labels_and_prompt_masked_as_configured(tokenizer, loss_on):
    example = encode_example(tokenizer, PROMPT, TARGET, loss_on)
    prompt_len = len(encode_prompt(tokenizer, PROMPT))
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert example.labels[-1] == tokenizer.eos_token_id  # the model learns to stop
    assert example.labels[prompt_len:] == example.input_ids[prompt_len:]
    if loss_on == LossOn.completion:
        assert example.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    else:
        assert example.labels == example.input_ids
    assert tokenizer.decode(example.input_ids[prompt_len:-1]) == TARGET


def test_padding_is_masked_by_position_not_by_pad_id(tokenizer):
    short = encode_example(tokenizer, PROMPT, 'SELECT "Player" FROM "t"', LossOn.completion)
    long = encode_example(tokenizer, PROMPT, TARGET, LossOn.completion)
    batch = collate_padded([short, long], pad_id=tokenizer.pad_token_id)
    n = len(short.input_ids)
    assert batch["input_ids"].shape == (2, len(long.input_ids))  # padded to the batch's longest only
    assert torch.all(batch["labels"][0, n:] == IGNORE_INDEX) and torch.all(batch["attention_mask"][0, n:] == 0)
    assert batch["labels"][0, n - 1] == tokenizer.eos_token_id == tokenizer.pad_token_id  # EOS survives


def test_batches_group_by_length():
    lengths = [10, 200, 12, 190, 11, 205, 9, 198]
    batches = plan_batches(lengths, batch_size=4, group_by_length=True, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[9, 10, 11, 12], [190, 198, 200, 205]]
    ungrouped = plan_batches(lengths, batch_size=4, group_by_length=False, seed=0)
    assert sorted(i for b in ungrouped for i in b) == list(range(8))


def test_target_tokens_continue_the_prompt_as_the_pretrained_tokenizer_would(tokenizer):
    """Training must teach the continuation that generation will produce: the tokens of prompt + target, split at
    the prompt, not the target tokenised on its own (which SentencePiece starts with '▁SE', 'LECT')."""
    example = encode_example(tokenizer, PROMPT, TARGET, LossOn.completion)
    prompt_len = len(encode_prompt(tokenizer, PROMPT))
    assert example.input_ids == tokenizer(PROMPT + TARGET).input_ids + [tokenizer.eos_token_id]
    assert tokenizer.convert_ids_to_tokens(example.input_ids[prompt_len]) == "SELECT"
    alone = tokenizer(TARGET, add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(alone[:2]) == ["▁SE", "LECT"]  # what the old encoding trained on


def test_every_sample_example_starts_its_target_with_the_select_token(tokenizer):
    from experiments.data.official import load_split
    from experiments.data.prepared import PreparedExample
    from experiments.data.sources import sample_dir

    split = load_split(sample_dir(), "train")
    for example in split.examples[:200]:
        prepared = PreparedExample.build(example, split.tables[example.table_id])
        encoded = encode_example(tokenizer, prepared.prompt, prepared.target, LossOn.completion)
        first = encoded.labels.index(next(label for label in encoded.labels if label != IGNORE_INDEX))
        assert tokenizer.convert_ids_to_tokens(encoded.input_ids[first]) == "SELECT", example.id


def test_a_prompt_that_does_not_end_at_a_token_boundary_is_refused(tokenizer):
    with pytest.raises(ValueError, match="not a prefix"):
        encode_example(tokenizer, PROMPT.rstrip("\n") + " wor", "ld", LossOn.completion)  # "▁wor" + "ld" = "▁world"
