"""What each token id stands for, in bytes, read from how the tokenizer itself encodes text: llguidance's view of the
vocabulary, the same for every tokenizer family.

llguidance's own `llguidance.hf.from_tokenizer` decides how to read a token's string (GPT-2 byte-level characters
such as 'Ġ' for a space, or SentencePiece's '▁' and '<0x0A>' byte tokens) from the tokenizer's *decoder* settings.
A tokenizer whose decoder lists both (transformers 5.17's conversion of SmolLM2's GGUF: a byte-level BPE with a
`ByteFallback` step first in its decoder) is then read as SentencePiece: 'Ġ"' becomes the two characters 'Ġ"'
instead of ' "', no token can write a space, and every constrained generation ends after `SELECT` (valid SQL 0.0,
with no error). Here the reading is instead the one under which the tokenizer's *encoder* round-trips a probe text
(spaces, a newline, quotes, accents, CJK, an emoji) byte for byte; a tokenizer that fits no reading is refused by
name. Special tokens (EOS, BOS, chat markers) are marked as such (llguidance's 0xFF prefix), so no text can spell
them; other added tokens stand for their text.

`encode_exactly` is the tokenizer llguidance calls for text the grammar forces: it returns ids whose bytes are exactly
the text, without the leading space SentencePiece adds to the first word ('▁SE', 'LECT' for 'SELECT').
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import llguidance
from llguidance._tokenizer import TokenizerWrapper

SPECIAL_MARKER = b"\xff"  # how llguidance recognises a special token among the token bytes
PROBE_TEXT = "SELECT \"Höhe (m²)\" FROM 't' WHERE x = 'O''Neal 中文 😀' AND y > -3.5\n\tend"
# Text that tokenises as its own tokens before any text, to learn where a dummy-prefix space goes: a newline
PREFIX_TEXT = "\n"


class TokenizerNotSupported(ValueError):
    """The tokenizer's tokens cannot be read as bytes in any known way: constrained decoding cannot work with it."""


@cache
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's map from the printable character standing for a byte back to the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _byte_level(token: str) -> bytes | None:
    decoder = _byte_level_decoder()
    if not all(char in decoder for char in token):
        return None
    return bytes(decoder[char] for char in token)


def _sentencepiece(token: str) -> bytes:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)])
        except ValueError:
            pass
    return token.replace("▁", " ").encode("utf-8")


READINGS: dict[str, Callable[[str], bytes | None]] = {"byte-level": _byte_level, "sentencepiece": _sentencepiece}


def describe(tokenizer) -> str:
    """The tokenizer as an error message names it: class, source, EOS, BOS and pad."""
    def token(name: str) -> str:
        return f"{getattr(tokenizer, name + '_token', None)!r} (id {getattr(tokenizer, name + '_token_id', None)})"

    source = getattr(tokenizer, "name_or_path", "") or "?"
    return f"{type(tokenizer).__name__} from {source}, EOS {token('eos')}, BOS {token('bos')}, pad {token('pad')}"


def special_ids(tokenizer) -> set[int]:
    """Ids that stand for no text: the tokenizer's special tokens and its added tokens marked special."""
    ids = {int(i) for i in tokenizer.all_special_ids}
    ids |= {int(i) for i, added in tokenizer.added_tokens_decoder.items() if added.special}
    return ids


def _reading(tokenizer) -> Callable[[str], bytes | None]:
    """The reading of token strings under which the tokenizer's encoding of PROBE_TEXT spells PROBE_TEXT."""
    ids = tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    wanted = PROBE_TEXT.encode("utf-8")
    for read in READINGS.values():
        spelled = [read(piece) for piece in pieces]
        if None not in spelled and b"".join(spelled) in (wanted, b" " + wanted):  # b" ": SentencePiece's dummy prefix
            return read
    raise TokenizerNotSupported(
        f"tokenizer {describe(tokenizer)}: its tokens spell {PROBE_TEXT!r} as {pieces[:12]}..., which neither the "
        f"byte-level nor the SentencePiece reading turns back into the text, so the grammar cannot know what a token "
        "writes. Decode without the grammar: inference.constrain=none")


def token_bytes(tokenizer) -> list[bytes]:
    """The bytes of every token id (len(tokenizer) of them): special tokens behind SPECIAL_MARKER, added tokens as
    their text, the rest read as the tokenizer's encoder writes them."""
    read = _reading(tokenizer)
    specials = special_ids(tokenizer)
    added = {int(i): token.content for i, token in tokenizer.added_tokens_decoder.items()}
    table = [b""] * len(tokenizer)
    for piece, index in tokenizer.get_vocab().items():
        if index >= len(table):
            table.extend([b""] * (index + 1 - len(table)))
        if index in specials:
            table[index] = SPECIAL_MARKER + added.get(index, piece).encode("utf-8")
        elif index in added:
            table[index] = added[index].encode("utf-8")
        else:
            spelled = read(piece)
            table[index] = piece.encode("utf-8") if spelled is None else spelled
    return table


class ExactEncoder:
    """The tokenizer as llguidance calls it: text in, ids whose bytes are exactly that text (special-token text
    spelled as plain text, no dummy-prefix space)."""

    def __init__(self, tokenizer, tokens: list[bytes]) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        self.special_token_ids = sorted(special_ids(tokenizer))

    def spell(self, ids: list[int]) -> bytes:
        return b"".join(self.tokens[i] if 0 <= i < len(self.tokens) else b"" for i in ids)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def __call__(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError("ExactEncoder takes text")  # llguidance then always passes str
        wanted = text.encode("utf-8")
        ids = self._encode(text)
        if self.spell(ids) == wanted or not text:
            return ids
        prefixed = self._encode(PREFIX_TEXT + text)  # a dummy-prefix space lands before the newline: drop both
        for cut in range(1, len(prefixed)):
            head = self.spell(prefixed[:cut])
            if head in (PREFIX_TEXT.encode(), b" " + PREFIX_TEXT.encode()):
                if self.spell(prefixed[cut:]) == wanted:
                    return prefixed[cut:]
                break
            if len(head) > len(PREFIX_TEXT) + 1:
                break
        return ids


def llguidance_tokenizer(tokenizer, eos_token_id: int, tokens: list[bytes] | None = None) -> llguidance.LLTokenizer:
    """llguidance's tokenizer info for `tokenizer`, with `eos_token_id` as the token that ends a grammar (`tokens`:
    its token_bytes, when the caller has them already)."""
    tokens = token_bytes(tokenizer) if tokens is None else tokens
    return llguidance.LLTokenizer(TokenizerWrapper(ExactEncoder(tokenizer, tokens)), n_vocab=len(tokens),
                                  eos_token=eos_token_id)
