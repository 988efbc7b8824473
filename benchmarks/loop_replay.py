"""Replay looping predictions of a multi-table run on the CPU: does steering near the cap end them?

A GPU run's grammar + scope row leaves queries cut at the token cap (SQLite: "incomplete input"). Each one's own
tokens are forced up to END_WINDOW tokens before its end, then SmolLM2 decodes on (greedy, its base weights: the
run's adapter stays on the GPU machine) under the grammar and scope check, told a cap at the query's length: once
with the closing steering of decoding/closing_tokens.py, once without. A query that ends and runs on its database
counts as valid. Usage:

    python benchmarks/loop_replay.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --prompts RUN/data/test.jsonl \\
        RESULTS.jsonl [RESULTS.jsonl ...]

where RUN is any spider_baseline run's directory (`stages=[prepare]` is enough) and RESULTS its eval stage's
results.jsonl files of grammar + scope rows.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LogitsProcessor

from experiments.config import load_config
from experiments.data.schema import Database
from experiments.data.sources import spider_sample_dir
from experiments.data.spider import load_spider
from experiments.decoding import constraint as constrained
from experiments.decoding.constraint import END_WINDOW, SchemaConstraint
from experiments.decoding.generate import newline_token_ids
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import encode_prompt, encode_target


class Forced(LogitsProcessor):
    """A large bonus to the given tokens, one a step from the prompt's end: the model writes them."""

    def __init__(self, ids: list[int], start: int) -> None:
        self.ids, self.start = ids, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        at = input_ids.shape[1] - self.start
        if at < len(self.ids):
            scores = scores.clone()
            scores[0, self.ids[at]] += 1000.0
        return scores


def runs(sql: str, database: Database) -> str:
    """"ok", or SQLite's error for `sql` on the database (read-only)."""
    conn = sqlite3.connect(f"{database.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        conn.execute(sql).fetchmany(1)
        return "ok"
    except sqlite3.Error as error:
        return str(error)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, required=True, help="a run's data/test.jsonl")
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    tokenizer = load_tokenizer(load_config(["model=smollm2_135m", f"model.gguf_file={args.gguf}"]).model)
    model = AutoModelForCausalLM.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name).eval()
    databases = {db: d for split in load_spider(spider_sample_dir()).values() for db, d in split.databases.items()}
    prompts = {row["id"]: row["prompt"] for row in map(json.loads, args.prompts.read_text().splitlines())}
    stop = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    constraint = SchemaConstraint(tokenizer, stop_token_ids=stop, multi_table=True)
    steer = constrained.SchemaLogitsProcessor._steer_to_close
    valid = {False: 0, True: 0}
    loops = 0
    for path in args.results:
        for row in map(json.loads, path.read_text().splitlines()):
            if row["valid_sql"] or "incomplete input" not in (row["error"] or ""):
                continue
            loops += 1
            database = databases[row["db_id"]]
            ids = encode_target(tokenizer, prompts[row["id"]], row["pred_sql"])
            prompt_ids = encode_prompt(tokenizer, prompts[row["id"]])
            for steered in (False, True):
                constrained.SchemaLogitsProcessor._steer_to_close = steer if steered else lambda *_: 0
                processors = constraint.logits_processor([database], greedy=True, max_new_tokens=len(ids))
                with torch.inference_mode():
                    out = model.generate(input_ids=torch.tensor([prompt_ids]),
                                         attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                                         max_new_tokens=len(ids), do_sample=False, eos_token_id=stop,
                                         pad_token_id=tokenizer.pad_token_id,
                                         logits_processor=[Forced(ids[:len(ids) - END_WINDOW], len(prompt_ids)),
                                                           *processors])
                generated = out[0, len(prompt_ids):].tolist()
                sql = tokenizer.decode([t for t in generated if t not in stop], skip_special_tokens=True).strip()
                verdict = runs(sql, database)
                valid[steered] += verdict == "ok"
                ended = "ended" if any(t in stop for t in generated) else "cut"
                print(f"{path.parent.parent.name}/{path.parent.name} {row['id']} "
                      f"{'steered' if steered else 'plain'}: {ended}, {verdict[:40]} | ...{sql[-100:]}")
    constrained.SchemaLogitsProcessor._steer_to_close = steer
    print(f"{loops} loops: valid {valid[False]} without steering, {valid[True]} with it")


if __name__ == "__main__":
    main()
