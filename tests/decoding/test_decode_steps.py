"""The decode steps generate_sql counts (infer_summary.json's `decode_steps`, MLflow's count/decode_steps): a batch
runs until its longest row ends, so constrained decoding's wall time is compared per step as well as in all."""

from __future__ import annotations

import torch
from conftest import tiny_mistral_config
from transformers import MistralForCausalLM

from experiments.config import DataConfig, ModelConfig, load_config
from experiments.data.prepared import PreparedExample
from experiments.data.sources import load_source
from experiments.decoding.generate import Decoding, generate_sql
from experiments.model.loading import load_tokenizer
from experiments.tracking.metric_names import infer_summary_logged


def test_each_batch_counts_the_steps_of_its_longest_row():
    cfg = load_config(["experiment=smoke", "tracking=none", "device=cpu", "inference.constrain=none"])
    tokenizer = load_tokenizer(ModelConfig())
    split = load_source(DataConfig())["test"]
    prompts = [PreparedExample.build(e, split.tables[e.table_id]).prompt for e in split.examples[:9]]
    torch.manual_seed(0)
    model = MistralForCausalLM(tiny_mistral_config()).eval()  # random weights: no row ends before the cap
    decoding = Decoding.for_run(cfg.inference, tokenizer, tables_sqlite=None)
    decoding.batch_size = 4  # batches of 4, 4 and 1 prompts
    _, tokens = generate_sql(model, tokenizer, prompts, cfg, torch.device("cpu"), 12, progress=False,
                             decoding=decoding)
    assert tokens == 9 * 12
    assert decoding.decode_steps == 3 * 12  # per batch, not per row
    summary = decoding.summary()
    assert summary["decode_steps"] == 36
    assert infer_summary_logged(summary)[1]["count/decode_steps"] == 36
