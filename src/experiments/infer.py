"""Stage 3: batched generation of SQL for the prepared test split -> predictions.jsonl.

Prompts are sorted by length and generated in large left-padded batches; each sequence stops at EOS or at a
newline (the SQL is one line). `adapter=null` with no train stage in this run scores the base model zero-shot.
In a data-parallel job every rank generates for its shard of the prompts; rank 0 gathers them in example order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments.config import ExperimentConfig, QuantMode, Stage
from experiments.data.jsonl import write_json, write_jsonl
from experiments.data.prepared import read_prepared
from experiments.distributed import dist_context, gather_to_main, run_on_main, shard, unshard
from experiments.modeling import load_adapter, load_base_model, load_tokenizer, peak_gpu_memory_gib, resolve_device
from experiments.paths import RunFiles
from experiments.tokenization import encode_prompt, encode_target

log = logging.getLogger(__name__)

TARGET_MARGIN_TOKENS = 8


def resolve_adapter(cfg: ExperimentConfig, files: RunFiles) -> Path | None:
    """None (zero-shot) with zero_shot=true; else adapter=PATH, else this run's adapter when this run trained one
    or has one, else None."""
    if cfg.zero_shot:
        return None
    if cfg.adapter:
        return Path(cfg.adapter).expanduser()
    if Stage.train in cfg.stages or files.adapter_dir.joinpath("adapter_config.json").is_file():
        return files.adapter_dir
    return None


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every token whose text holds a newline (SentencePiece byte token <0x0A>, BPE 'Ċ', ...)."""
    ids = []
    for token, index in tokenizer.get_vocab().items():
        if "\n" in token or "<0x0A>" in token or "Ċ" in token:
            ids.append(index)
    return sorted(ids)


def clean_generation(text: str) -> str:
    """The first line of the continuation, stripped: the SQL."""
    return text.split("\n", 1)[0].strip()


def max_new_tokens(cfg: ExperimentConfig, tokenizer, files: RunFiles) -> int:
    """The configured cap, lowered to the longest training SQL (+ EOS and a margin) when training data exists:
    a model never learned to write longer SQL, and random or diverging models would otherwise run to the cap."""
    cap = cfg.inference.max_new_tokens
    if not cfg.inference.bound_by_train_targets or not files.split("train").is_file():
        return cap
    train = read_prepared(files.split("train"))
    if not train:
        return cap
    longest = max(len(encode_target(tokenizer, p.prompt, p.target)) for p in train)  # tokenised as in training
    return min(cap, longest + 1 + TARGET_MARGIN_TOKENS)


@torch.inference_mode()
def generate_sql(model, tokenizer, prompts: list[str], cfg: ExperimentConfig, device: torch.device,
                 new_tokens_cap: int, progress: bool = True, min_new_tokens: int = 0) -> tuple[list[str], int]:
    """SQL per prompt (input order) and the number of generated tokens. `min_new_tokens` exists for benchmarks:
    random weights never stop by themselves, so both paths are made to generate the same number of tokens."""
    inf = cfg.inference
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    stop_ids = [tokenizer.eos_token_id] + (newline_token_ids(tokenizer) if inf.stop_at_newline else [])
    outputs: list[str] = [""] * len(prompts)
    generated_tokens = 0
    pad_id = tokenizer.pad_token_id
    batches = [order[i:i + inf.batch_size] for i in range(0, len(order), inf.batch_size)]
    for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress):
        longest = max(len(encoded[i]) for i in batch)
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, longest - len(encoded[i]):] = torch.tensor(encoded[i])
            attention[row, longest - len(encoded[i]):] = 1
        sampling = {"do_sample": True, "temperature": inf.temperature} if inf.temperature > 0 else \
            {"do_sample": False}
        sequences = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                   max_new_tokens=new_tokens_cap, min_new_tokens=min_new_tokens or None,
                                   eos_token_id=stop_ids, pad_token_id=pad_id, **sampling)
        new_tokens = sequences[:, longest:].cpu()
        for row, i in enumerate(batch):
            tokens = new_tokens[row].tolist()
            stop = next((k for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
            generated_tokens += min(stop + 1, len(tokens))
            outputs[i] = clean_generation(tokenizer.decode(tokens[:stop], skip_special_tokens=True))
    return outputs, generated_tokens


def run_infer(cfg: ExperimentConfig, run_dir: Path) -> dict:
    files = RunFiles(run_dir)
    ctx = dist_context()
    device = resolve_device(cfg.device, ctx.local_rank)
    test = read_prepared(files.split("test"))
    adapter = resolve_adapter(cfg, files)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    model = load_base_model(cfg.model, cfg.quantization, device)
    if adapter is None:
        log.warning("infer: scoring the base model zero-shot (%s)", "zero_shot=true" if cfg.zero_shot else
                    "adapter=null and no train stage in this run")
    else:
        merge = cfg.inference.merge_adapter and cfg.quantization.mode == QuantMode.none
        model = load_adapter(model, adapter, merge=merge)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    cap = max_new_tokens(cfg, tokenizer, files)
    log.info("infer: %d prompts (%d on this rank of %d), batch %d, at most %d new tokens", len(test),
             len(shard(test, ctx)), ctx.world_size, cfg.inference.batch_size, cap)
    started = time.perf_counter()
    sqls, generated = generate_sql(model, tokenizer, [p.prompt for p in shard(test, ctx)], cfg, device, cap,
                                   progress=ctx.is_main)
    seconds = time.perf_counter() - started
    gathered = gather_to_main(ctx, (sqls, generated, seconds, peak_gpu_memory_gib()))

    def write() -> dict:  # rank 0 writes; the other ranks wait for it, or fail with its error
        ordered = unshard([g[0] for g in gathered])  # checks every rank's share
        total_generated = sum(g[1] for g in gathered)
        slowest = max(g[2] for g in gathered)
        write_jsonl(files.predictions, ({"id": p.example.id, "sql": sql} for p, sql in zip(test, ordered, strict=True)))
        summary = {"adapter": str(adapter) if adapter else None, "examples": len(test), "max_new_tokens": cap,
                   "infer_seconds": slowest, "generated_tokens": total_generated,
                   "generated_tokens_per_s": total_generated / slowest if slowest else None}
        if torch.cuda.is_available():
            summary["infer_peak_memory_gib"] = max(g[3] for g in gathered)
        write_json(files.infer_summary, summary)
        return summary

    return {"predictions": files.predictions, "summary": run_on_main(ctx, write) or {}}
