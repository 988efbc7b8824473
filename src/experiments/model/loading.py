"""Tokenizer, base model (plain, 8-bit or 4-bit NF4), LoRA: the one place models are built.

The tokenizer behaves as the model's own: BOS added where its tokenizer adds one (a bare SentencePiece model file,
such as mistral-common's, is Mistral's and adds it), never an EOS after a prompt, EOS the model's own, and pad = EOS
when it has none. Nothing here is specific to one model family.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import torch

from experiments.config import LoraConfig, ModelConfig, QuantizationConfig, QuantMode
from experiments.model.model_files import ModelFiles, resolve_model_files

log = logging.getLogger(__name__)

# Layers LoRA can adapt besides torch.nn.Linear: GPT-2's Conv1D, bitsandbytes' quantised linears
LORA_LAYER_CLASSES = ("Conv1D", "Linear4bit", "Linear8bitLt")


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's CUDA device if there is one (cuda:LOCAL_RANK in a data-parallel job), else the
    CPU; a bare 'cuda' also means this process's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but no CUDA device is visible; use device=cpu or device=auto")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    elif resolved.type == "cuda" and local_rank and resolved.index != local_rank:
        raise ValueError(f"device={device!r} in a data-parallel job would put rank {local_rank} on another rank's "
                         "GPU; use device=auto or device=cuda (each rank takes cuda:LOCAL_RANK)")
    return resolved


def peak_gpu_memory_gib() -> float | None:
    """Peak memory allocated by tensors on this process's GPU since the last reset (None without CUDA)."""
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype {name!r}: expected float32, bfloat16 or float16") from None


def mistral_common_tokenizer_file() -> Path:
    """Mistral's 32k SentencePiece model, shipped by the mistral-common package."""
    return Path(str(files("mistral_common") / "data" / "tokenizer.model.v1"))


def _sentencepiece_file(source: str | None) -> Path | None:
    """A bare SentencePiece model to load (None when `source` is a tokenizer folder or a Hub id)."""
    if source is None:
        return mistral_common_tokenizer_file()
    path = Path(source).expanduser()
    if path.suffix == ".model":
        return path
    if (path / "tokenizer.model").is_file() and not (path / "tokenizer.json").is_file():
        return path / "tokenizer.model"
    return None


def model_files(cfg: ModelConfig) -> ModelFiles | None:
    """The model's files (model_files.py), or None for a model initialised from `model.init`."""
    return None if cfg.name_or_path is None and cfg.gguf_file is None else resolve_model_files(cfg)


def model_source(cfg: ModelConfig) -> str:
    """Where the run's weights come from, as its summaries and tags say: "config" (model.init), "hub", "local",
    "gguf FILE" or "offline copy: PACKAGE==VERSION FILE" (whose figures differ from the Hub's weights); logged with
    the reason for an offline copy."""
    files = model_files(cfg)
    source = "config" if files is None else files.source
    log.info("model %s: weights from %s%s", cfg.name, source, f" ({files.why})" if files and files.why else "")
    return source


def load_tokenizer(cfg: ModelConfig):
    """The model's tokenizer (see the module docstring for BOS, EOS and pad)."""
    from transformers import AutoTokenizer, LlamaTokenizer

    files = model_files(cfg)
    source = cfg.tokenizer_path or (files.path if files else None)
    model_file = _sentencepiece_file(source)
    if model_file is not None:
        if not model_file.is_file():
            raise FileNotFoundError(f"model.tokenizer_path: {model_file} does not exist")
        with tempfile.TemporaryDirectory() as tmp:  # LlamaTokenizer wants a directory holding tokenizer.model
            shutil.copy(model_file, os.path.join(tmp, "tokenizer.model"))
            tokenizer = LlamaTokenizer.from_pretrained(tmp, add_bos_token=True, add_eos_token=False)
    else:
        revision = files.revision if files and source == files.path else None
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)  # its own BOS rule: no flags passed,
        probe = tokenizer("SELECT").input_ids  # which transformers 5 would take for "no BOS" as well
        if len(probe) > 1 and probe[-1] == tokenizer.eos_token_id:  # it ends every text with EOS: not a prompt
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, add_eos_token=False,
                                                      add_bos_token=probe[0] == tokenizer.bos_token_id)
    if files is not None:
        use_models_eos(tokenizer, model_eos_token_ids(files))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"model {cfg.name}: neither its tokenizer ({source}) nor its config names an EOS token; "
                         "training teaches the model to end its SQL with one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # labels are built from lengths, so pad = EOS masks no EOS label
    return tokenizer


def model_eos_token_ids(files: ModelFiles) -> list[int]:
    """The EOS ids the model's generation config names (what `generate` stops on by default), else its config's;
    none when neither can be read."""
    from transformers import AutoConfig, GenerationConfig

    for read in (GenerationConfig.from_pretrained, AutoConfig.from_pretrained):
        try:
            eos = read(files.path, revision=files.revision).eos_token_id
        except Exception:  # noqa: S112 (no such file: try the next source)
            continue
        if eos is not None:
            return [int(i) for i in (eos if isinstance(eos, list | tuple) else [eos])]
    return []


def use_models_eos(tokenizer, model_eos: list[int]) -> None:
    """Make the tokenizer's EOS one the model itself ends on: a tokenizer whose EOS is none of the model's (the
    GGUF conversion of transformers 5.17 gives SmolLM2's tokenizer EOS '<|im_start|>', its BOS, where the model and
    5.25 say '<|im_end|>') would teach the model to end its SQL with a token it was trained to start with."""
    if not model_eos or tokenizer.eos_token_id in model_eos:
        return
    eos = model_eos[0]
    if not 0 <= eos < len(tokenizer):
        return
    token = tokenizer.convert_ids_to_tokens(eos)
    log.warning("tokenizer: its EOS %r (id %s) is not the model's; using the model's, %r (id %d)", tokenizer.eos_token,
                tokenizer.eos_token_id, token, eos)
    tokenizer.eos_token = token


def quantization_config(cfg: QuantizationConfig):
    from transformers import BitsAndBytesConfig

    if cfg.mode == QuantMode.nf4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=cfg.double_quant,
                                  bnb_4bit_compute_dtype=torch_dtype(cfg.compute_dtype))
    if cfg.mode == QuantMode.int8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_base_model(cfg: ModelConfig, quant: QuantizationConfig, device: torch.device):
    """The base causal LM on `device`: from the Hub or a local dir, or initialised from `cfg.init` (tiny)."""
    from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

    if quant.mode != QuantMode.none and device.type != "cuda":
        raise RuntimeError(f"quantization={quant.mode.value} needs a CUDA GPU (bitsandbytes); this run's device "
                           f"is {device}. Use quantization=none on the CPU.")
    dtype = weights_dtype(cfg, quant, device)
    if cfg.name_or_path is None and cfg.gguf_file is None:
        if not cfg.init:
            raise ValueError("model: set model.name_or_path (hub id or directory) or model.init (a config)")
        torch.manual_seed(cfg.init_seed)
        config = MistralConfig(**cfg.init)
        if cfg.attn_implementation:
            config._attn_implementation = cfg.attn_implementation
        model = MistralForCausalLM(config).to(device=device, dtype=dtype)
        return model
    kwargs = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    files = resolve_model_files(cfg)
    model = AutoModelForCausalLM.from_pretrained(
        files.path, revision=files.revision, dtype=dtype, quantization_config=quantization_config(quant),
        device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"}, **kwargs)
    return model


def weights_dtype(cfg: ModelConfig, quant: QuantizationConfig, device: torch.device) -> torch.dtype:
    """The dtype of the weights that are not quantised: model.dtype, or with `auto` float32 on the CPU and the
    compute dtype on a GPU."""
    if cfg.dtype != "auto":
        return torch_dtype(cfg.dtype)
    if device.type != "cuda":
        return torch.float32
    return torch_dtype(quant.compute_dtype)


def autocast_dtype(cfg: ModelConfig, quant: QuantizationConfig, device: torch.device) -> str | None:
    """The training's mixed-precision dtype (float16 | bfloat16), or None for none: a quantised model computes in
    quantization.compute_dtype; a plain one in its own weights' dtype, so bfloat16 weights never run under float16
    autocast. None on the CPU and for float32 weights."""
    if device.type != "cuda":
        return None
    dtype = torch_dtype(quant.compute_dtype) if quant.mode != QuantMode.none else weights_dtype(cfg, quant, device)
    return {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(dtype)


def add_lora(model, cfg: LoraConfig, quant: QuantizationConfig, gradient_checkpointing: bool,
             dequantize: bool = False, exact_qlora: bool = True):
    """Wrap the base model with trainable LoRA adapters (k-bit preparation first for quantised models). `dequantize`:
    NF4 weights dequantised once after k-bit preparation, before LoRA (dequantize.py; the same maths).
    `exact_qlora=False` (training.exact_qlora): quantised models skip k-bit preparation's float32 upcast
    (prepare_without_upcast). LoRA weights are float32 either way (PEFT's default): they are the optimizer's
    master weights, where bf16 would round away updates of lr x gradient below 2^-8 of a weight, and fp16's
    gradient scaler refuses half-precision parameters; under autocast their matmuls run in the compute dtype."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quant.mode != QuantMode.none:
        if exact_qlora:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            prepare_without_upcast(model, gradient_checkpointing)
        if dequantize:
            from experiments.model.dequantize import dequantize_4bit_layers

            log.info("NF4: %d layers dequantised once to %s", dequantize_4bit_layers(model), quant.compute_dtype)
    elif gradient_checkpointing:
        enable_checkpointing(model)
        model.enable_input_require_grads()
    model.config.use_cache = False  # training builds no KV cache (without checkpointing it would, per step)
    # A module trained in full (modules_to_save) that is tied to another (embed_tokens and lm_head) stays tied.
    tie = bool(cfg.modules_to_save) and bool(getattr(model.config, "tie_word_embeddings", False))
    targets = "all-linear" if list(cfg.target_modules) == ["all-linear"] else list(cfg.target_modules)
    peft_config = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                 target_modules=targets, bias="none", task_type="CAUSAL_LM",
                                 modules_to_save=list(cfg.modules_to_save) or None, ensure_weight_tying=tie)
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as err:
        if "not found in the base model" not in str(err):
            raise
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear) or type(module).__name__ in LORA_LAYER_CLASSES})
        raise ValueError(f"lora.target_modules={list(cfg.target_modules)}: none of these is a module of "
                         f"{type(model).__name__}, whose linear layers are named {', '.join(linear)}; set "
                         "lora.target_modules to some of them, or to [all-linear]") from None
    if dequantize:
        from experiments.model.dequantize import match_4bit_lora_casts

        match_4bit_lora_casts(model)
    return model


def prepare_without_upcast(model, gradient_checkpointing: bool) -> None:
    """PEFT's k-bit preparation without its float32 copies of the weights that are not quantised (training.exact_qlora
    =false): every base weight frozen and, when asked, non-reentrant checkpointing on, which is all PEFT's
    `prepare_model_for_kbit_training` does besides the upcast (with use_reentrant=False it adds no input-grad hook).
    Norms, embeddings and lm_head stay in their loaded dtype, so the residual stream runs in the compute dtype: no
    casts to and from float32 around every projection, half the norms' and embeddings' memory, and the fused
    kernels of training.kernels get the dtype they are written for. Not bit-identical to QLoRA's numerics."""
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        enable_checkpointing(model)


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing without reentrancy, under the name this transformers version prefers
    (`activation_checkpointing_enable` since 5.2x; the older name warns there)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_adapter(model, adapter_dir: Path, merge: bool = False):
    """Base model + a saved LoRA adapter; merged into the weights when asked (not possible when quantised)."""
    from peft import PeftModel

    if not Path(adapter_dir, "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter={adapter_dir}: no adapter_config.json there; point adapter= at a "
                                "directory written by the train stage (run_dir/adapter)")
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    if merge:
        model = model.merge_and_unload()
    return model


def compile_blocks(model) -> int:
    """torch.compile every transformer block in place (regional compilation) and return how many.

    An NF4 + LoRA block runs hundreds of small operators (dequantise, cast, dropout, two LoRA matmuls, scale, add,
    per projection), so an eager step costs per-operator overhead far above its FLOPs; compiled, the elementwise
    work fuses. All blocks share one compiled graph (parameters are graph inputs), so the compile happens once;
    shapes are dynamic because length-grouped batches change length. Parameter names, and so saved adapters, are
    unchanged.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not blocks:
        raise ValueError(f"training.compile=true: {type(model).__name__} has no transformer blocks to compile "
                         "(no GradientCheckpointingLayer); set training.compile=false")
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


@contextmanager
def attention_without_cudnn(device: torch.device) -> Iterator[None]:
    """Attention on a GPU while training and decoding: SDPA's flash (or memory-efficient) kernels, never cuDNN's.
    On an H200 SDPA picks cuDNN attention, whose CPU cost per call is ~1 ms (forward and backward each) inside
    compiled blocks, against tens of microseconds for flash: ~70 ms of a step of ~0.37 s on `extended`, a step that
    is bound by CPU time (benchmarks/profile_step.py); decoding 1,000 prompts took 13.5 s with it, 11.1 s without.
    Same maths (exact attention either way). Restores the backends after."""
    if device.type != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def attend_causally_without_padding_mask(model) -> torch.utils.hooks.RemovableHandle:
    """Drop the attention mask from the model's training inputs (a forward pre-hook): the train stage right-pads,
    and under causal attention a real token never sees the pads after it, so the mask changes no real token's
    output and no loss-bearing position (pads have label IGNORE_INDEX). Without a mask SDPA runs its fused
    causal (flash) kernel instead of a masked one; with a mask the H100 picks cuDNN attention, whose per-call CPU
    cost on shapes that change every step is milliseconds. Only for right-padded batches (never for generation,
    which pads on the left)."""

    def drop_mask(module, args, kwargs):
        if module.training:  # training batches only: evaluation and generation keep their masks
            kwargs.pop("attention_mask", None)
        return args, kwargs

    return model.register_forward_pre_hook(drop_mask, with_kwargs=True)
