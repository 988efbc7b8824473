"""The infer stage's fast plan on a tiny NF4 model (bitsandbytes runs 4-bit layers on the CPU): NF4 dequantised
once with the adapter merged in and a static KV cache generates the same greedy SQL as today's path (4-bit weights,
adapter unmerged, dynamic cache), with the grammar constraint and with execution-guided beam search.

transformers compiles decode steps on a GPU only (it skips compiling on the CPU), so the compiled path is not run
here; with `compile` on, every batch is padded to the first one's size (one compiled shape), which is tested."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mistral_config
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralForCausalLM

from experiments.config import DataConfig, MemoryPlan, load_config
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.decoding.generate import Decoding, generate_sql
from experiments.model.dequantize import DequantizedLinear
from experiments.model.loading import load_adapter, load_tokenizer
from experiments.model.memory_plan import InferencePlan

pytest.importorskip("bitsandbytes")

LOW = InferencePlan(dequantize_merge=False, static_cache=False, compile=False, mode=MemoryPlan.low)
FAST = InferencePlan(dequantize_merge=True, static_cache=True, compile=False, mode=MemoryPlan.fast)
PADDED = InferencePlan(dequantize_merge=True, static_cache=True, compile=True, mode=MemoryPlan.fast)
# auto with memory to spare: the plan's batch holds all 7 prompts (inference.batch_size is 3)
ONE_BATCH = InferencePlan(dequantize_merge=True, static_cache=False, compile=False, mode=MemoryPlan.auto, batch_size=7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Mistral with the real 32k vocabulary, saved, and a LoRA adapter for it with non-zero B."""
    torch.manual_seed(0)
    config = tiny_mistral_config()
    root = tmp_path_factory.mktemp("tiny_nf4")
    model = MistralForCausalLM(config)
    model.save_pretrained(root / "model")
    adapter = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj",
                                                                                  "gate_proj", "down_proj"]))
    for name, param in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    adapter.save_pretrained(root / "adapter")
    return root


@pytest.fixture
def nf4_on_cpu(tiny, monkeypatch):
    """The infer stage's base-model loader, made to load the tiny model in NF4 on the CPU (the project refuses
    NF4 off a GPU); bitsandbytes' CPU-only bf16 repacking for no-grad forwards is switched off, as GPUs have none."""
    import bitsandbytes as bnb

    import experiments.model.inference_model as inference_model

    def load(model_cfg, quant, device):
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(tiny / "model", quantization_config=config,
                                                     dtype=torch.float32, device_map={"": "cpu"})
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
        return model

    monkeypatch.setattr(inference_model, "load_base_model", load)
    return tiny


def prompts_and_tables(n: int):
    split = load_source(DataConfig())["test"]
    examples = split.examples[:n]
    return ([PreparedExample.build(e, split.tables[e.table_id]).prompt for e in examples],
            [split.tables[e.table_id] for e in examples])


def generate(root, plan: InferencePlan, overrides: list[str], tables_sqlite):
    from experiments.model.inference_model import load_inference_base, merges_adapter

    cfg = load_config(["experiment=smoke",
                       "tracking=none", "quantization=nf4", "quantization.compute_dtype=float32", "device=cpu",
                       "inference.batch_size=3", *overrides])
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    model = load_inference_base(cfg, torch.device("cpu"), plan)
    model = load_adapter(model, root / "adapter", merge=merges_adapter(cfg, plan)).eval()
    dense = [m for m in model.modules() if isinstance(m, DequantizedLinear)]
    assert len(dense) == (14 if plan.dequantize_merge else 0)
    assert not any("lora" in name for name, _ in model.named_modules()) or not plan.dequantize_merge  # merged
    prompts, tables = prompts_and_tables(7)
    decoding = Decoding.for_run(cfg.inference, tokenizer, tables_sqlite, plan)
    calls = []
    generate_batch = model.generate
    model.generate = lambda **kwargs: calls.append(kwargs["input_ids"].shape[0]) or generate_batch(**kwargs)
    try:
        generated, _ = generate_sql(model, tokenizer, prompts, cfg, torch.device("cpu"), 12, progress=False,
                                    schemas=tables, decoding=decoding)
    finally:
        decoding.close()
    assert calls == ([7] if plan.batch_size == 7 else [3, 3, 3] if plan.compile else [3, 3, 1])  # prompts per batch
    return [(g.sql, g.candidate) for g in generated]


@pytest.fixture(scope="module")
def tables_sqlite(tmp_path_factory):
    from experiments.evaluation import materialize_tables

    db = tmp_path_factory.mktemp("tables") / "tables.sqlite"
    materialize_tables(load_source(DataConfig())["test"].tables.values(), db)
    return db


@pytest.mark.parametrize("overrides", [
    pytest.param(["inference.constrain=none"], id="greedy"),
    pytest.param(["inference.constrain=grammar"], id="grammar", marks=pytest.mark.slow),
    # beam search over a static cache
    pytest.param(["inference.constrain=grammar", "inference.execution_guided=2"], id="guided-beams",
                 marks=pytest.mark.slow),
])
def test_fast_plan_generates_what_the_4bit_path_generates(nf4_on_cpu, tables_sqlite, overrides):
    today = generate(nf4_on_cpu, LOW, overrides, tables_sqlite)
    assert any(sql for sql, _ in today)  # the tiny model does write something
    assert generate(nf4_on_cpu, FAST, overrides, tables_sqlite) == today
    assert generate(nf4_on_cpu, PADDED, overrides, tables_sqlite) == today  # last batch padded to 3 rows
    assert generate(nf4_on_cpu, ONE_BATCH, overrides, tables_sqlite) == today  # the plan's one batch of 7


def test_static_cache_options():
    from experiments.decoding.generate import static_cache_options

    assert static_cache_options(Decoding(), 100) == {}
    eager = static_cache_options(Decoding(static_cache=True), 100)
    assert eager == {"cache_implementation": "static", "max_cache_len": 100, "disable_compile": True}
    compiled = static_cache_options(Decoding(static_cache=True, compile=True), 100)
    assert compiled["compile_config"].mode == "reduce-overhead" and "disable_compile" not in compiled
