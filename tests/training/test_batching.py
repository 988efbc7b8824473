"""What length grouping changes in a training step, measured on the bundled sample with the real tokenizer:
padding drops far below random batches, while each step still mixes lengths and query shapes (a global sort
by length would give steps of one length and one query shape)."""

from __future__ import annotations

import statistics

import pytest

from experiments.config import LossOn, ModelConfig, TrainingConfig
from experiments.data.official import load_split
from experiments.data.prepared import PreparedExample
from experiments.data.sources import sample_dir
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import encode_example
from experiments.stages.train import make_dataset
from experiments.training.batching import BatchDataset, plan_batches

STEP = 16  # examples per optimizer step in the notebook presets (4 x 4, 8 x 2), one fused micro-batch here


@pytest.fixture(scope="module")
def sample():
    tokenizer = load_tokenizer(ModelConfig())
    split = load_split(sample_dir(), "train")
    prepared = [PreparedExample.build(e, split.tables[e.table_id]) for e in split.examples]
    lengths = [len(encode_example(tokenizer, p.prompt, p.target, LossOn.all).input_ids) for p in prepared]
    conditions = [len(p.example.query.conds) for p in prepared]
    return lengths, conditions


def composition(batches: list[list[int]], lengths: list[int], conditions: list[int]) -> dict[str, float]:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    mean_conditions = [statistics.mean(conditions[i] for i in b) for b in batches]
    return {"padding": padded / real - 1,
            "median_spread": statistics.median(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                                               for b in batches),
            "conditions_range": max(mean_conditions) - min(mean_conditions)}


def test_grouping_inside_random_mega_batches_saves_padding_and_keeps_steps_mixed(sample):
    lengths, conditions = sample
    grouped = composition(plan_batches(lengths, STEP, group_by_length=True, seed=0), lengths, conditions)
    random_ = composition(plan_batches(lengths, STEP, group_by_length=False, seed=0), lengths, conditions)
    sorted_ = composition(plan_batches(lengths, STEP, group_by_length=True, group_batches=len(lengths), seed=0),
                          lengths, conditions)
    print(f"\npadding over real tokens: random {random_['padding']:.1%}, grouped {grouped['padding']:.1%}, "
          f"global sort {sorted_['padding']:.1%}; median length spread in a step: random "
          f"{random_['median_spread']}, grouped {grouped['median_spread']}, global sort {sorted_['median_spread']}; "
          f"range of the steps' mean WHERE conditions: random {random_['conditions_range']:.2f}, grouped "
          f"{grouped['conditions_range']:.2f}, global sort {sorted_['conditions_range']:.2f}")
    assert grouped["padding"] < 0.5 * random_["padding"]  # most of the padding is saved...
    assert grouped["median_spread"] >= 10 > 2 >= sorted_["median_spread"]  # ...but a step is not one length...
    assert grouped["conditions_range"] < sorted_["conditions_range"]  # ...nor one query shape


def test_batches_are_drawn_again_each_epoch_and_the_same_on_any_machine(sample):
    lengths, _ = sample
    first = plan_batches(lengths, STEP, seed=7, epoch=0)
    second = plan_batches(lengths, STEP, seed=7, epoch=1)
    assert first == plan_batches(lengths, STEP, seed=7, epoch=0)
    assert first != second
    for plan in (first, second):
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))  # each example once per epoch


def test_the_training_dataset_follows_the_epoch():
    from experiments.model.tokenization import TokenizedExample

    examples = [TokenizedExample(input_ids=[1] * (5 + i % 7), labels=[1] * (5 + i % 7)) for i in range(40)]
    dataset = make_dataset(examples, 4, TrainingConfig(seed=3))
    assert isinstance(dataset, BatchDataset) and len(dataset) == 10
    epoch0 = [[id(e) for e in dataset[i]] for i in range(len(dataset))]
    dataset.set_epoch(1)
    epoch1 = [[id(e) for e in dataset[i]] for i in range(len(dataset))]
    assert epoch0 != epoch1 and len(dataset) == 10
    dataset.set_epoch(0)
    assert [[id(e) for e in dataset[i]] for i in range(len(dataset))] == epoch0
