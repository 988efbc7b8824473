"""The fast training path (length-grouped, padded to the batch's longest, accumulation fused into one
micro-batch) computes the same loss and gradients as the notebooks' path (every example padded to max_length,
small micro-batches with gradient accumulation)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mistral_config
from peft import LoraConfig, get_peft_model
from transformers import MistralForCausalLM

from experiments.config import DataConfig, LossOn, ModelConfig, TrainingConfig
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import IGNORE_INDEX, TokenizedExample
from experiments.stages.train import micro_batching, plan_micro_batches, token_batching
from experiments.training.batching import collate_padded, keep_only_labelled_logits, plan_batches, plan_token_batches

MAX_LENGTH = 256


def encoded_examples(loss_on: LossOn) -> list[TokenizedExample]:
    from experiments.model.tokenization import encode_example

    tokenizer = load_tokenizer(ModelConfig())
    split = load_source(DataConfig())["train"]
    prepared = [PreparedExample.build(e, split.tables[e.table_id]) for e in split.examples[:8]]
    return [encode_example(tokenizer, p.prompt, p.target, loss_on) for p in prepared]


@pytest.fixture(scope="module")
def examples() -> list[TokenizedExample]:
    return encoded_examples(LossOn.all)


def tiny_lora_model(train_tied_embeddings: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    config = tiny_mistral_config(tie_word_embeddings=train_tied_embeddings)
    model = MistralForCausalLM(config)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                      modules_to_save=["embed_tokens"] if train_tied_embeddings else None,
                      ensure_weight_tying=train_tied_embeddings)
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():  # non-zero B so LoRA gradients are not trivially equal
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model.double()


def pad_to(examples: list[TokenizedExample], length: int) -> dict[str, torch.Tensor]:
    batch = collate_padded(examples, pad_id=2)
    extra = length - batch["input_ids"].shape[1]
    return {"input_ids": torch.nn.functional.pad(batch["input_ids"], (0, extra), value=2),
            "attention_mask": torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=0),
            "labels": torch.nn.functional.pad(batch["labels"], (0, extra), value=IGNORE_INDEX)}


def loss_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def lora_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_dynamic_padding_equals_padded_accumulation(examples):
    model = tiny_lora_model()
    # notebooks: micro-batches of 2 padded to max_length, 4 accumulation steps, loss over all tokens of the step
    micro = [pad_to(examples[i:i + 2], MAX_LENGTH) for i in range(0, 8, 2)]
    total_tokens = sum(loss_tokens(b) for b in micro)
    padded_loss = 0.0
    for batch in micro:
        out = model(**batch, num_items_in_batch=total_tokens)
        out.loss.backward()
        padded_loss += out.loss.item()
    padded_grads = lora_grads(model)
    model.zero_grad()

    # ours: one length-grouped micro-batch, padded to its own longest
    order = plan_batches([len(e.input_ids) for e in examples], batch_size=8, group_by_length=True)[0]
    fused = collate_padded([examples[i] for i in order], pad_id=2)
    assert fused["input_ids"].shape[1] < MAX_LENGTH  # far less padding
    out = model(**fused)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(padded_loss, rel=1e-6)  # the loss upcasts logits to float32
    for name, grad in lora_grads(model).items():
        torch.testing.assert_close(grad, padded_grads[name], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("batch", "accumulation", "cap", "fuse", "expected"), [
    (4, 4, 16384, True, (16, 1)),      # baseline at 256: one micro-batch per step
    (8, 2, 16384, True, (16, 1)),      # extended at 512: 16 x 512 = 8192 tokens fit
    (8, 2, 4096, True, (8, 2)),        # a low cap splits the step, keeping 16 examples per step
    (4, 3, 2048, True, (4, 3)),        # 12 x 512 / 2048 -> 3 splits of 4
    (4, 4, 16384, False, (4, 4)),      # not fused: the configured arrangement
])
def test_micro_batching_keeps_examples_per_step(batch, accumulation, cap, fuse, expected):
    t = TrainingConfig(per_device_batch_size=batch, gradient_accumulation_steps=accumulation,
                       max_tokens_per_batch=cap, fuse_accumulation=fuse)
    per_batch, steps = micro_batching(t, max_length=512)
    assert (per_batch, steps) == expected
    assert per_batch * steps == batch * accumulation


@pytest.mark.parametrize("group", [True, False])
def test_token_budget_batches_fit_the_budget_and_cover_every_example_once(group):
    lengths = [17, 250, 40, 41, 90, 12, 200, 33, 64, 64, 120, 5]
    batches = plan_token_batches(lengths, 256, group_by_length=group, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 256
    assert batches == plan_token_batches(lengths, 256, group_by_length=group, seed=3)  # the same on any machine
    if group:  # length-grouped: greedy filling leaves no batch that could have taken the next example
        for batch, following in zip(batches, batches[1:], strict=False):
            nxt = following[0]
            assert (len(batch) + 1) * max(lengths[nxt], *(lengths[i] for i in batch)) > 256


def test_token_budget_steps_hold_more_examples_and_split_over_ranks(examples):
    t = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=4, tokens_per_step=16 * MAX_LENGTH)
    dataset, per_batch, accumulation = plan_micro_batches(examples * 8, t, MAX_LENGTH)
    assert accumulation == 1 and per_batch > 16  # the notebook's padded budget holds more real examples
    assert sum(len(item) for item in dataset) == len(examples) * 8
    assert token_batching(t, MAX_LENGTH, world_size=2) == (16 * MAX_LENGTH, 1)  # each rank: the whole budget
    t.keep_global_batch = True
    assert token_batching(t, MAX_LENGTH, world_size=2) == (8 * MAX_LENGTH, 1)  # the budget split over the ranks
    t.max_tokens_per_batch = 1024
    assert token_batching(t, MAX_LENGTH) == (1024, 4)
    t.tokens_per_step = 100
    with pytest.raises(ValueError, match="training.tokens_per_step=100"):
        token_batching(t, MAX_LENGTH)


@pytest.mark.slow
def test_compiled_blocks_compute_the_eager_loss_and_gradients(examples):
    """training.compile: same loss and LoRA gradients as eager, over batches of different lengths (dynamic shapes,
    gradient checkpointing on), and the adapter's parameter names (what save_pretrained writes) unchanged."""
    from experiments.model.loading import compile_blocks

    torch._dynamo.reset()
    batches = [collate_padded(examples[i:i + 3], pad_id=2) for i in (0, 3)]
    assert batches[0]["input_ids"].shape[1] != batches[1]["input_ids"].shape[1]
    results = []
    for compiled in (False, True):
        model = tiny_lora_model().float()
        model.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        if compiled:
            assert compile_blocks(model) == 2
        run = []
        for batch in batches:
            out = model(**batch)
            out.loss.backward()
            run.append((out.loss.item(), lora_grads(model)))
            model.zero_grad()
        results.append((run, sorted(n for n, _ in model.named_parameters())))
    (eager, eager_names), (compiled_run, compiled_names) = results
    assert compiled_names == eager_names
    for (eager_loss, eager_grads), (loss, grads) in zip(eager, compiled_run, strict=True):
        assert loss == pytest.approx(eager_loss, rel=1e-5)
        assert grads.keys() == eager_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, eager_grads[name], rtol=1e-3, atol=1e-6)


def test_compile_is_refused_by_name_for_a_model_without_blocks():
    from experiments.model.loading import compile_blocks

    with pytest.raises(ValueError, match="training.compile"):
        compile_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_right_padded_batches_train_the_same_without_the_padding_mask(examples):
    """The train stage drops the attention mask of its right-padded batches (flash attention instead of a masked
    kernel): the loss and LoRA gradients must be those computed with the mask."""
    from experiments.model.loading import attend_causally_without_padding_mask

    batch = collate_padded(examples, pad_id=2)
    assert (batch["attention_mask"] == 0).any()  # real padding in the batch
    results, masks_seen = [], []
    for drop in (False, True):
        model = tiny_lora_model()
        if drop:
            attend_causally_without_padding_mask(model)
        model.base_model.model.register_forward_pre_hook(
            lambda module, args, kwargs: masks_seen.append(kwargs.get("attention_mask")), with_kwargs=True)
        out = model(**batch)
        out.loss.backward()
        results.append((out.loss.item(), lora_grads(model)))
    (masked_loss, masked_grads), (loss, grads) = results
    assert masks_seen[0] is not None and masks_seen[1] is None  # the mask really was dropped
    assert loss == pytest.approx(masked_loss, rel=1e-9)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, masked_grads[name], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(("loss_on", "train_tied_embeddings"),
                         [(LossOn.completion, False), (LossOn.completion, True), (LossOn.all, True)])
def test_logits_only_where_labelled_give_the_same_loss_and_gradients(loss_on, train_tied_embeddings):
    """The train collator's keep_only_labelled_logits projects onto the vocabulary only where a label is predicted:
    the loss and the gradients (LoRA, and the trained tied embeddings whose lm_head gradient it skips most of) are
    those of the full logits, and the loss normalisation counts the same tokens."""
    batch = collate_padded(encoded_examples(loss_on), pad_id=2)
    fast = keep_only_labelled_logits(batch)
    assert int((fast["shift_labels"] != IGNORE_INDEX).sum()) == loss_tokens(batch)
    results = []
    for inputs in (batch, fast):
        model = tiny_lora_model(train_tied_embeddings)
        out = model(**inputs)
        out.loss.backward()
        results.append((out.loss.item(), lora_grads(model), out.logits.shape[1]))
    (full_loss, full_grads, full_positions), (loss, grads, positions) = results
    assert positions == len(fast["logits_to_keep"]) <= full_positions
    if loss_on == LossOn.completion:
        assert positions < 0.9 * full_positions  # the prompt's positions are skipped
    assert any("embed_tokens" in name for name in grads) == train_tied_embeddings
    assert loss == pytest.approx(full_loss, rel=1e-6)  # the loss upcasts logits to float32
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-6, atol=1e-9)


def test_training_attention_leaves_out_cudnn_and_restores_the_backends():
    """On a GPU the train stage and decoding run SDPA without cuDNN attention (its per-call CPU cost made compiled
    `extended` steps 1.7x slower on an H200); the flags come back as they were, and on the CPU nothing changes."""
    from experiments.model.loading import attention_without_cudnn

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_without_cudnn(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()  # any mask, dtype or head size still has a kernel
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_without_cudnn(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
