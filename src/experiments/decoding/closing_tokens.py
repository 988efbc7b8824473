"""The tokens that close what a query holds open, so that a row nearing max_new_tokens can be steered to an end.

A model that loops (digits of one number, subqueries nested in copies of themselves) is cut at the cap with a
bracket or a string still open: no grammar bound ends it in time, because every bound is looser than the tokens
left. Near the cap, decoding/constraint.py offers such a row only the tokens that close something, when the grammar
allows one: a `)` (or several, or CASE's END) outside a string literal, the literal's closing quote inside one.
Where none is allowed, it takes away the tokens that make the query longer without bringing it nearer an end, as
long as anything else is allowed: a `(`, another predicate, operand or item (AND, OR, an operator, a comma), more
than one space, and a number's next digit (SmolLM2 writes a digit a token). The sets are int32 bitmask words, as
llguidance fills them (bit j of word w: token 32w + j).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_QUOTE = b"'"
_EXTENDING = {b"AND", b"OR", b",", b"||", b"+", b"-", b"*", b"/", b"%"}  # another predicate, operand or item follows


@dataclass(frozen=True)
class ClosingTokens:
    """Bitmask words over the vocabulary: `brackets` close brackets or a CASE (`)`, `))`, ` END`, after optional
    spaces), `quotes` end a string literal (`'`, `')`: a quote, not the doubled quote that escapes one, then only
    `)`s), `lengthening` hold a `(`, are a word that another predicate, operand or item follows (` AND`, ` OR`,
    an operator, a comma) or are two or more spaces, `digits` are digits alone (a number's next ones, after a
    digit). Per token id, to read rows of generated tokens at once: `quotes_in` (single quotes it spells) and
    `ends_in_digit`."""

    brackets: torch.Tensor
    quotes: torch.Tensor
    lengthening: torch.Tensor
    digits: torch.Tensor
    quotes_in: torch.Tensor
    ends_in_digit: torch.Tensor

    @classmethod
    def of(cls, spelled: list[bytes], vocab: int) -> ClosingTokens:
        """The sets for a tokenizer whose token i is spelled `spelled[i]` (special tokens never belong to one)."""
        brackets, quotes, lengthening, digits = [], [], [], []
        for index, text in enumerate(spelled[:vocab]):
            bare = text.lstrip(b" ")
            if set(bare) == {ord(")")} or bare.upper() == b"END":
                brackets.append(index)
            elif bare.startswith(_QUOTE) and not bare.startswith(_QUOTE * 2) and set(bare[1:]) <= {ord(")")}:
                quotes.append(index)
            if b"(" in text or bare.upper() in _EXTENDING or (len(text) > 1 and text.isspace()):
                lengthening.append(index)
            if text.isdigit():
                digits.append(index)
        words = (vocab + 31) // 32
        padding = max(vocab, len(spelled)) - len(spelled)  # ids past the spelled ones: none of either
        quotes_in = torch.tensor([text.count(_QUOTE) for text in spelled] + [0] * padding)
        ends_in_digit = torch.tensor([text[-1:].isdigit() for text in spelled] + [False] * padding)
        return cls(*(bitmask_of(ids, words) for ids in (brackets, quotes, lengthening, digits)), quotes_in,
                   ends_in_digit)

    def read(self, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For rows of generated token ids (rows x steps): whether each stops inside a string literal (an odd number
        of single quotes: a doubled quote inside a literal keeps the count even), and whether it stops after a
        digit outside one."""
        inside = self.quotes_in[generated].sum(dim=1) % 2 == 1
        if generated.shape[1] == 0:
            return inside, torch.zeros_like(inside)
        return inside, self.ends_in_digit[generated[:, -1]] & ~inside

    def closers(self, inside: torch.Tensor) -> torch.Tensor:
        """Each row's closing tokens (rows x words): inside a string literal only its closing quote, which a `)`
        there is not."""
        return torch.where(inside[:, None], self.quotes, self.brackets)

    def lengthening_after(self, after_digit: torch.Tensor) -> torch.Tensor:
        """Each row's tokens that would make its query longer without bringing it nearer an end (rows x words):
        `lengthening` and, after a digit outside a string literal, `digits`."""
        return self.lengthening | torch.where(after_digit[:, None], self.digits, torch.zeros_like(self.digits))


def bitmask_of(ids: list[int], words: int) -> torch.Tensor:
    """int32 bitmask words with the bits of `ids` set."""
    mask = torch.zeros(words, dtype=torch.int64)
    for index in ids:
        mask[index // 32] |= 1 << (index % 32)
    return torch.where(mask >= 1 << 31, mask - (1 << 32), mask).to(torch.int32)


def ids_of(words: torch.Tensor) -> list[int]:
    """The token ids whose bits are set in int32 bitmask `words`."""
    ids = []
    for word in words.nonzero().flatten().tolist():
        value = int(words[word]) & 0xFFFFFFFF
        ids.extend(32 * word + bit for bit in range(32) if value >> bit & 1)
    return ids
