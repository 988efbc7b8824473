"""Tokenizers of every family a causal LM brings, built offline with the `tokenizers` library and trained on the
bundled sample's text, saved as transformers folders and loaded through `load_tokenizer` as a user's model would be.

- byte_level: GPT-2/Llama-3/SmolLM2-style byte-level BPE ('Ġ' for a space, 'Ċ' for a newline), BOS added, its own
  pad token;
- sentencepiece: Metaspace ('▁') BPE with byte fallback ('<0xC3>' tokens for characters not in the vocabulary), the
  Mistral/Llama-2/Gemma family, BOS added, no pad token;
- eos_is_bos: GPT-2's convention, one '<|endoftext|>' for BOS and EOS, no BOS added, no pad token;
- mixed_decoder: what transformers 5.17 makes of SmolLM2's GGUF: a byte-level BPE whose model has byte_fallback and
  whose decoder starts with ByteFallback (llguidance's own reader takes it for SentencePiece), EOS '<|im_start|>'
  equal to BOS, no pad, chat markers as special tokens; its config.json names '<|im_end|>' as the model's EOS.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from experiments.data.official import load_split
from experiments.data.prompt import build_prompt, render_sql
from experiments.data.records import SOURCE_SPLITS
from experiments.data.sources import sample_dir

FAMILIES = ("byte_level", "sentencepiece", "eos_is_bos", "mixed_decoder")
VOCAB = 1200
CHAT = ["<|im_start|>", "<|im_end|>"]


@cache
def sample_text() -> tuple[str, ...]:
    """Prompts and gold SQL of the sample's train split, plus a line of accents, CJK and an emoji (not in the
    sentencepiece family's vocabulary: byte fallback writes them)."""
    split = load_split(sample_dir(), SOURCE_SPLITS[0])
    lines = []
    for example in split.examples[:1500]:
        table = split.tables[example.table_id]
        lines.append(build_prompt(example.question, table) + render_sql(example.query, table))
    return (*lines, "Höhe (m²) ünïcödé ☃ 中文 😀 O'Neal")


def _trained_bpe(pre_tokenizer, special: list[str], *, alphabet: list[str] | None = None,
                 byte_fallback: bool = False, unk: str | None = None, newlines: bool = True) -> Tokenizer:
    """A BPE trained on the sample's text; `newlines=False` learns no newline piece (SentencePiece models have none:
    a newline is the byte token <0x0A>)."""
    tokenizer = Tokenizer(models.BPE(unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizer
    limits = {"initial_alphabet": alphabet} if alphabet else {"limit_alphabet": 90}  # byte fallback: few characters
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=special, show_progress=False, **limits)
    text = sample_text() if newlines else tuple(line.replace("\n", " ") for line in sample_text())
    tokenizer.train_from_iterator(text, trainer)
    if not byte_fallback:
        return tokenizer
    model = json.loads(tokenizer.to_str())["model"]
    vocab = dict(model["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    rebuilt = Tokenizer(models.BPE(vocab, merges, unk_token=unk, byte_fallback=True))
    rebuilt.pre_tokenizer = pre_tokenizer
    rebuilt.add_special_tokens(special)
    return rebuilt


def _with_bos(tokenizer: Tokenizer, bos: str) -> None:
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])


def build(family: str, root: Path) -> Path:
    """The family's tokenizer saved as a transformers folder under `root`; returns the folder."""
    folder = root / family
    if family == "byte_level":
        core = _trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<s>", "</s>", "<pad>", *CHAT],
                            alphabet=pre_tokenizers.ByteLevel.alphabet())
        core.decoder = decoders.ByteLevel()
        _with_bos(core, "<s>")
        names = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    elif family == "sentencepiece":
        core = _trained_bpe(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
                            ["<unk>", "<s>", "</s>"], byte_fallback=True, unk="<unk>", newlines=False)
        core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                          decoders.Strip(" ", 1, 0)])
        _with_bos(core, "<s>")
        names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    elif family == "eos_is_bos":
        core = _trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"],
                            alphabet=pre_tokenizers.ByteLevel.alphabet())
        core.decoder = decoders.ByteLevel()
        names = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    elif family == "mixed_decoder":
        core = _trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>", *CHAT],
                            alphabet=pre_tokenizers.ByteLevel.alphabet(), byte_fallback=True, unk="<|endoftext|>")
        core.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse(), decoders.Replace("▁", " "),
                                          decoders.ByteLevel()])
        names = {"bos_token": "<|im_start|>", "eos_token": "<|im_start|>", "unk_token": "<|endoftext|>"}
    else:
        raise ValueError(f"unknown tokenizer family {family!r}: {FAMILIES}")
    wrapped = PreTrainedTokenizerFast(tokenizer_object=core, **names)
    wrapped.save_pretrained(str(folder))
    if family == "mixed_decoder":  # the model's own config: EOS '<|im_end|>', BOS '<|im_start|>'
        config = {"model_type": "llama", "bos_token_id": core.token_to_id("<|im_start|>"),
                  "eos_token_id": core.token_to_id("<|im_end|>"), "vocab_size": core.get_vocab_size()}
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
