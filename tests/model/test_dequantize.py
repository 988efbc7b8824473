"""The fast plan's GPU paths, checked on CPU with a tiny NF4 model (bitsandbytes runs 4-bit layers on the CPU):
NF4 dequantised once trains bit-identically to dequantising per call, its adapter loads onto the 4-bit model, and an
out-of-memory step re-planned (split, checkpointing on, per-call) computes the same step."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mistral_config
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralForCausalLM

from experiments.config import LoraConfig, MemoryPlan, QuantizationConfig, QuantMode
from experiments.model.dequantize import DequantizedLinear, count_dequantized
from experiments.model.loading import add_lora
from experiments.model.memory_plan import TrainPlan
from experiments.training.replan import split_rows

pytest.importorskip("bitsandbytes")

LORA = LoraConfig(r=4, alpha=8, dropout=0.1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_mistral_config(vocab_size=1000)
    path = tmp_path_factory.mktemp("tiny_mistral")
    MistralForCausalLM(config).save_pretrained(path)
    return path


def load_nf4(path, compute_dtype: torch.dtype):
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=compute_dtype)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=compute_dtype,
                                                device_map={"": "cpu"})


def nf4_lora(path, compute_dtype: str, dequantize: bool, checkpointing: bool = False, lora: LoraConfig = LORA):
    """The train stage's model: NF4 base, k-bit preparation, (dequantised once,) LoRA with non-zero B."""
    quant = QuantizationConfig(mode=QuantMode.nf4, compute_dtype=compute_dtype)
    base = load_nf4(path, getattr(torch, compute_dtype))
    torch.manual_seed(1)  # the same LoRA initialisation on every path
    model = add_lora(base, lora, quant, checkpointing, dequantize)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    return model.train()


def batch(rows: int = 4, length: int = 11) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 1000, (rows, length), generator=generator)
    labels = ids.clone()
    labels[:, :3] = -100  # the prompt
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def loss_and_grads(model, inputs, autocast_dtype: torch.dtype | None = None):
    torch.manual_seed(7)  # the same LoRA dropout masks on both paths
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = model(**inputs)
    out.loss.backward()
    return out.loss.detach(), out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                                    if p.grad is not None}


@pytest.fixture
def peft_sees_cpu_autocast(monkeypatch):
    """PEFT asks `torch.is_autocast_enabled()` (the CUDA autocast) whether to cast a LoRA layer's input; make it see
    CPU autocast, so the test runs the casts a GPU run takes."""
    original = torch.is_autocast_enabled
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a, **k: original(*a, **k) if (a or k) else
                        original("cpu"))


@pytest.mark.parametrize(("compute_dtype", "autocast", "checkpointing"), [
    ("float32", False, False),
    ("bfloat16", True, True),  # as on a GPU: half-precision compute under autocast, LoRA dropout on
    ("float16", False, False),
])
def test_dequantized_once_trains_bit_identically(tiny_dir, compute_dtype, autocast, checkpointing, request):
    if autocast:
        request.getfixturevalue("peft_sees_cpu_autocast")
    results = []
    for dequantize in (False, True):
        model = nf4_lora(tiny_dir, compute_dtype, dequantize, checkpointing)
        layers = [m for m in model.modules() if isinstance(m, DequantizedLinear)]
        assert len(layers) == (14 if dequantize else 0)  # 7 projections x 2 blocks, all plain Linear to PEFT
        results.append(loss_and_grads(model, batch(), getattr(torch, compute_dtype) if autocast else None))
    (loss, logits, grads), (dq_loss, dq_logits, dq_grads) = results
    assert torch.equal(dq_loss, loss)
    assert torch.equal(dq_logits, logits)
    assert dq_grads.keys() == grads.keys() and len(grads) == 2 * 14
    for name, grad in grads.items():
        assert torch.equal(dq_grads[name], grad), name


def test_dequantized_inference_logits_equal_the_4bit_ones(tiny_dir):
    """No gradients (the infer stage's forward): the same logits. bitsandbytes repacks 4-bit weights for a bf16 CPU
    kernel on the first no-grad CPU forward (CPUs with AVX512-BF16); that CPU-only path is switched off here."""
    import bitsandbytes as bnb

    from experiments.model.dequantize import dequantize_4bit_layers

    outputs = []
    for dequantize in (False, True):
        model = load_nf4(tiny_dir, torch.float32).eval()
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
        if dequantize:
            assert dequantize_4bit_layers(model, keep_quantized=False) == 14
        with torch.no_grad():
            outputs.append(model(**{k: v for k, v in batch().items() if k != "labels"}).logits)
    assert torch.equal(outputs[0], outputs[1])


def test_an_adapter_trained_dequantised_loads_onto_the_4bit_model(tiny_dir, tmp_path):
    from peft import PeftModel

    trained = nf4_lora(tiny_dir, "float32", dequantize=True)
    loss, _, _ = loss_and_grads(trained, batch())
    trained.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(load_nf4(tiny_dir, torch.float32), tmp_path, is_trainable=True).train()
    theirs = {k: v for k, v in trained.state_dict().items() if "lora_" in k}
    ours = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    loaded_loss, _, _ = loss_and_grads(loaded, batch())
    assert torch.equal(loaded_loss, loss)


# ----------------------------------------------------------------------------------------- out-of-memory re-plan


def replanning_trainer(model, plan: TrainPlan, tmp_path):
    from transformers import Trainer, TrainingArguments

    from experiments.training.replan import ReplanOnOutOfMemory

    class ReplanningTrainer(ReplanOnOutOfMemory, Trainer):
        pass

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=1)
    return ReplanningTrainer(model=model, args=args, memory_plan=plan,
                             advice="lower data_size.max_length, training.per_device_batch_size; raise "
                                    "training.gradient_accumulation_steps")


def fast_plan() -> TrainPlan:
    return TrainPlan(dequantize_once=True, gradient_checkpointing=False, compile=False, mode=MemoryPlan.fast)


def step(trainer, inputs) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step on the train stage's collated batch (logits only where a label is predicted)."""
    from experiments.training.batching import keep_only_labelled_logits

    inputs = keep_only_labelled_logits(inputs)
    num_items = int((inputs["shift_labels"] != -100).sum())  # the step's loss tokens, as the Trainer counts them
    loss = trainer.training_step(trainer.model, inputs, num_items_in_batch=num_items)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return float(loss), grads


def raise_out_of_memory_when(model, condition) -> None:
    def hook(module, args, kwargs):
        if condition(kwargs["input_ids"].shape[0]):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    model.get_base_model().model.register_forward_pre_hook(hook, with_kwargs=True)


NO_DROPOUT = LoraConfig(r=4, alpha=8, dropout=0.0)  # split pieces draw their own dropout masks


def reference_step(tiny_dir, tmp_path) -> tuple[float, dict[str, torch.Tensor]]:
    """The unsplit step on the 4-bit model, per call, no checkpointing: what every re-planned step must compute."""
    model = nf4_lora(tiny_dir, "float32", dequantize=False, lora=NO_DROPOUT)
    return step(replanning_trainer(model, fast_plan(), tmp_path / "reference"), batch())


def assert_same_step(result, reference) -> None:
    (loss, grads), (ref_loss, ref_grads) = result, reference
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7)


def test_out_of_memory_walks_down_the_plans_and_computes_the_same_step(tiny_dir, tmp_path):
    """Out of memory unless the micro-batch is at most 2 rows, checkpointed and dequantised per call: the step is
    retried in halves, with checkpointing, per call, then per call in halves, and computes the unsplit step."""
    model = nf4_lora(tiny_dir, "float32", dequantize=True, lora=NO_DROPOUT)
    base = model.get_base_model()
    raise_out_of_memory_when(model, lambda rows: rows > 2 or not base.is_gradient_checkpointing
                             or count_dequantized(model)[0] > 0)
    trainer = replanning_trainer(model, fast_plan(), tmp_path / "replanned")
    result = step(trainer, batch())
    assert [r["to"] for r in trainer.replans] == [
        "NF4 dequantised once, no gradient checkpointing, eager, micro-batches in 2 pieces",
        "NF4 dequantised once, gradient checkpointing, eager",
        "NF4 dequantised per call, gradient checkpointing, eager",
        "NF4 dequantised per call, gradient checkpointing, eager, micro-batches in 2 pieces"]
    assert count_dequantized(model) == (0, 14)  # the dense copies are gone
    assert_same_step(result, reference_step(tiny_dir, tmp_path))


def test_a_step_that_fails_halfway_is_undone_before_the_retry(tiny_dir, tmp_path):
    """The second half runs out of memory after the first half's backward pass added its gradients: those are put
    back before the retry, so the step's gradients count the first half once."""
    model = nf4_lora(tiny_dir, "float32", dequantize=True, lora=NO_DROPOUT)
    calls = []

    def second_and_third_call(rows: int) -> bool:  # the whole batch, then the second half
        calls.append(rows)
        return len(calls) in (1, 3)

    raise_out_of_memory_when(model, second_and_third_call)
    trainer = replanning_trainer(model, fast_plan(), tmp_path / "halfway")
    result = step(trainer, batch())
    assert calls == [4, 2, 2, 4]  # whole (OOM), first half, second half (OOM), whole with checkpointing
    assert trainer.memory_plan.gradient_checkpointing and trainer.memory_plan.split == 1
    assert_same_step(result, reference_step(tiny_dir, tmp_path))


def test_out_of_memory_under_the_smallest_plan_names_the_keys(tiny_dir, tmp_path):
    model = nf4_lora(tiny_dir, "float32", dequantize=True, lora=NO_DROPOUT)
    raise_out_of_memory_when(model, lambda rows: True)
    trainer = replanning_trainer(model, fast_plan(), tmp_path / "never")
    with pytest.raises(torch.OutOfMemoryError) as err:
        step(trainer, batch())
    for key in ("data_size.max_length", "training.per_device_batch_size", "training.gradient_accumulation_steps"):
        assert key in str(err.value)
    assert "micro-batch of 4 examples" in str(err.value)
    assert trainer.replans[-1]["to"].endswith("micro-batches in 4 pieces")  # down to one example per piece


def test_split_rows_splits_per_row_tensors_only():
    """The collator's per-row tensors are split; the positions shared by the rows (logits_to_keep) go to every
    piece, so each piece computes the logits and loss terms its rows had in the whole micro-batch."""
    from experiments.training.batching import keep_only_labelled_logits

    inputs = keep_only_labelled_logits(batch(rows=5))
    pieces = split_rows(inputs, 2)
    assert [p["input_ids"].shape[0] for p in pieces] == [3, 2]
    for piece in pieces:
        assert piece["logits_to_keep"] is inputs["logits_to_keep"]
        assert piece["shift_labels"].shape[0] == piece["attention_mask"].shape[0] == piece["input_ids"].shape[0]
    for key in ("input_ids", "labels", "shift_labels"):
        assert torch.equal(torch.cat([p[key] for p in pieces]), inputs[key])
    assert split_rows({**inputs, "logits_to_keep": 3}, 2)[1]["logits_to_keep"] == 3
