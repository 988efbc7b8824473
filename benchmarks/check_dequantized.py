"""On the GPU: NF4 dequantised once trains bit-identically to dequantising per call, through the train stage's own
model building (add_lora: k-bit preparation, dequantisation, LoRA) under the Trainer's autocast; prints the largest
differences and writes JSON. The CPU tests check the same on a tiny model; this checks the GPU stack (cuBLAS,
bitsandbytes' CUDA kernels, the installed transformers/PEFT) at full size.

    python benchmarks/check_dequantized.py --model /tmp/m7b --out dq_check.json      # on the GPU
    python benchmarks/check_dequantized.py --dry-run                                    # CPU, tiny model (no NF4)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_benchmark import bench_examples, lora_model, preset_config, release  # noqa: E402

from experiments.model.loading import autocast_dtype, load_tokenizer, resolve_device, torch_dtype  # noqa: E402
from experiments.model.tokenization import encode_example  # noqa: E402
from experiments.training.batching import collate_padded  # noqa: E402


def run(cfg, device, batch: dict[str, torch.Tensor], dequantize: bool, checkpointing: bool) -> dict:
    torch.manual_seed(0)  # the same LoRA initialisation
    model = lora_model(cfg, device, checkpointing, dequantize=dequantize)
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    half = autocast_dtype(cfg.model, cfg.quantization, device)
    inputs = {k: v.to(device) for k, v in batch.items()}
    model.train()
    torch.manual_seed(2)  # the same LoRA dropout masks
    with torch.autocast(device.type, dtype=torch_dtype(half) if half else torch.float32, enabled=half is not None):
        out = model(**inputs)
    out.loss.backward()
    result = {"loss": out.loss.detach().float().cpu(), "logits": out.logits.detach().float().cpu(),
              "grads": {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}}
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch_dtype(half) if half else torch.float32,
                                         enabled=half is not None):
        result["eval_logits"] = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits.float().cpu()
    del model, out
    release()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (make_random_mistral.py)")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--checkpointing", action="store_true", help="with gradient checkpointing")
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model (not quantised): exercise the code")
    parser.add_argument("--out", type=Path, default=Path("dequantized_check.json"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. quantization.compute_dtype=bfloat16")
    args = parser.parse_args()
    cfg = preset_config(args.preset, args.model, args.dry_run, list(args.overrides))
    device = resolve_device("cpu" if args.dry_run else "auto")
    tokenizer = load_tokenizer(cfg.model)
    examples = [encode_example(tokenizer, p.prompt, p.target, cfg.training.loss_on)
                for p in bench_examples(args.examples)]
    batch = collate_padded(examples, tokenizer.pad_token_id)
    per_call = run(cfg, device, batch, dequantize=False, checkpointing=args.checkpointing)
    once = run(cfg, device, batch, dequantize=True, checkpointing=args.checkpointing)
    grads = per_call["grads"]
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "tokens": int(batch["input_ids"].numel()), "compute_dtype": cfg.quantization.compute_dtype,
        "checkpointing": args.checkpointing, "loss_per_call": float(per_call["loss"]), "loss_once": float(once["loss"]),
        "loss_equal": bool(torch.equal(per_call["loss"], once["loss"])),
        "logits_max_abs_diff": float((per_call["logits"] - once["logits"]).abs().max()),
        "eval_logits_max_abs_diff": float((per_call["eval_logits"] - once["eval_logits"]).abs().max()),
        "lora_grads": len(grads), "lora_grads_equal": sum(torch.equal(g, once["grads"][n]) for n, g in grads.items()),
        "lora_grad_max_abs_diff": max(float((g - once["grads"][n]).abs().max()) for n, g in grads.items()),
    }
    print(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
