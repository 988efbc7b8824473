"""The notebooks' recipe, written as they wrote it, for a side-by-side with the train stage on the same data and
budget: HF `Trainer` + `DataCollatorForLanguageModeling` (labels = input ids with pad masked; pad = EOS, so the
EOS ending each example is masked out too and the model never learns to stop), every example padded to max length,
gradient checkpointing; then free decoding at low temperature (sampling at 0.1), cut at the first newline.

It reads the prepare stage's files of a run directory (the same seeded train and test examples as the preset's own
run) and writes `notebook_predictions.jsonl` there, which the eval stage scores like any predictions file:

    experiments experiment=baseline model=smollm2_135m data=sample data_size.val=64 data_size.test=null \\
        stages='[prepare]' hydra.run.dir=RUN
    python benchmarks/notebook_recipe.py RUN experiment=baseline model=smollm2_135m data=sample ...
    experiments ... stages='[eval]' eval.predictions=RUN/notebook_predictions.jsonl hydra.run.dir=RUN

The one liberty taken: prompts are generated in left-padded batches of 32 rather than one at a time (which changes
only the speed and which random draws each prompt gets).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from experiments.config import ExperimentConfig, load_config
from experiments.data.prepared import read_prepared
from experiments.decoding.generate import left_padded
from experiments.model.loading import add_lora, autocast_dtype, load_base_model, load_tokenizer, resolve_device
from experiments.model.tokenization import encode_prompt
from experiments.runs.files import RunFiles

TEMPERATURE = 0.1
MAX_NEW_TOKENS = 128
GENERATION_BATCH = 32
PREDICTIONS = "notebook_predictions.jsonl"


def train_notebook_style(cfg: ExperimentConfig, files: RunFiles, device: torch.device, workdir: Path):
    """LoRA on the base model, trained on the run's train split as the notebooks did; returns (model, tokenizer,
    seconds, steps)."""
    import datasets
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tokenizer = load_tokenizer(cfg.model)
    tokenizer.pad_token = tokenizer.eos_token  # as the notebooks set it
    train = read_prepared(files.split("train"))
    texts = [p.prompt + p.target + tokenizer.eos_token for p in train]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=cfg.data_size.max_length)
    dataset = datasets.Dataset.from_dict({"input_ids": encoded["input_ids"],
                                          "attention_mask": encoded["attention_mask"]})
    model = add_lora(load_base_model(cfg.model, cfg.quantization, device), cfg.lora, cfg.quantization,
                     gradient_checkpointing=True)
    t = cfg.training
    half = autocast_dtype(cfg.model, cfg.quantization, device)
    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, num_train_epochs=t.num_epochs,
        max_steps=t.max_steps, learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, optim=t.optimizer, logging_steps=t.logging_steps,
        save_strategy="no", report_to="none", seed=t.seed, fp16=half == "float16", bf16=half == "bfloat16",
        use_cpu=device.type != "cuda", dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    started = time.perf_counter()
    output = trainer.train()
    return model, tokenizer, time.perf_counter() - started, output.global_step


@torch.inference_mode()
def generate_notebook_style(model, tokenizer, prompts: list[str], device: torch.device, seed: int) -> list[str]:
    """Sampling at TEMPERATURE up to MAX_NEW_TOKENS, the text cut at its first newline."""
    model.eval()
    torch.manual_seed(seed)
    texts = []
    for start in range(0, len(prompts), GENERATION_BATCH):
        encoded = [encode_prompt(tokenizer, p) for p in prompts[start:start + GENERATION_BATCH]]
        input_ids, attention = left_padded(encoded, tokenizer.pad_token_id)
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=TEMPERATURE,
                             pad_token_id=tokenizer.pad_token_id)
        for row in out[:, input_ids.shape[1]:]:
            texts.append(tokenizer.decode(row, skip_special_tokens=True).split("\n", 1)[0].strip())
    return texts


def run(run_dir: Path, overrides: list[str]) -> dict:
    """Train and generate the notebooks' way in `run_dir` (prepared already); returns timings and counts."""
    cfg = load_config(overrides)
    files = RunFiles(run_dir)
    device = resolve_device(cfg.device)
    model, tokenizer, train_seconds, steps = train_notebook_style(cfg, files, device, run_dir / "notebook_trainer")
    test = read_prepared(files.split("test"))
    started = time.perf_counter()
    sql = generate_notebook_style(model, tokenizer, [p.prompt for p in test], device, cfg.training.seed)
    infer_seconds = time.perf_counter() - started
    with open(run_dir / PREDICTIONS, "w", encoding="utf-8") as out:
        for example, text in zip(test, sql, strict=True):
            out.write(json.dumps({"id": example.example.id, "sql": text}, ensure_ascii=False) + "\n")
    summary = {"train_examples": len(read_prepared(files.split("train"))), "global_steps": steps,
               "train_seconds": train_seconds, "infer_seconds": infer_seconds,
               "steps_per_epoch": math.ceil(len(read_prepared(files.split("train"))) /
                                            (cfg.training.per_device_batch_size *
                                             cfg.training.gradient_accumulation_steps)),
               "predictions": str(run_dir / PREDICTIONS)}
    (run_dir / "notebook_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory the prepare stage has written")
    parser.add_argument("overrides", nargs="*", help="the run's config overrides (key=value)")
    args = parser.parse_args()
    print(json.dumps(run(args.run_dir, args.overrides), indent=2))


if __name__ == "__main__":
    main()
