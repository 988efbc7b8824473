"""How untrusted text (predictions, error messages that quote them, a dataset's questions, headers and cells, ids
from a predictions file) is shown in reports: shortened with a visible marker, control characters made visible,
and, in Markdown, its syntax escaped.

results.jsonl keeps every prediction whole: it is the record. The reports and analysis.json show each text at
most MAX_SHOWN_CHARS long, so 160 predictions of 2 MB give reports of kilobytes, not of hundreds of megabytes.
Markdown viewers render raw HTML, images and links: `![x](https://...)` in a predicted value would fetch a remote
image, so every such text is HTML-escaped and its inline Markdown syntax backslash-escaped. A NUL is dropped by
HTML parsers and Markdown renderers alike, so the page would show other SQL than was scored: control characters
are shown as `\\x00` escapes, as lone surrogates are shown as `\\ud800` (data/jsonl.py's write_text).
"""

from __future__ import annotations

import html
import re

MAX_SHOWN_CHARS = 2_000  # a generated WikiSQL query is ~100 characters; anything longer is shown cut
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls and DEL, but tab, newline and CR
# Markdown's inline syntax: code, emphasis, links and images ([ ]), strikethrough, table pipes; `_` only at a word's
# edge (inside one, as in `syntax_error`, it is plain); a backslash only where it would escape what follows; the
# `:` of `https://`, so that a bare URL is not made a link either.
_MARKDOWN = re.compile(r"[`*\[\]~|]|\\(?=[!-/:-@\[-`{-~])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|(?<=[A-Za-z]):(?=//)")


def shortened(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters and a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated, {len(text):,} characters in all]"


def visible(text: str) -> str:
    """Control characters (but tab, newline and carriage return) as `\\x00`-style escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def markdown_text(text: str) -> str:
    """Untrusted text as literal Markdown prose on one line: controls visible, HTML-escaped, inline syntax escaped,
    whitespace runs (newlines included) as one space; safe in a table cell."""
    one_line = " ".join(visible(text).split())
    return _MARKDOWN.sub(lambda m: "\\" + m.group(), html.escape(one_line, quote=False))
