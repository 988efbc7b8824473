"""Files written whole: JSON, JSON lines, text, a file or a directory by a callback, each through a temporary one
renamed into place, so a crash never leaves half a file that a later stage (or a reader of the run directory) would
take for a whole one. The one atomic writer is `replace_file`; the text writers go through it.

Predictions and data are untrusted text: a lone UTF-16 surrogate ("\\ud800") is valid JSON and a valid Python
string but cannot be encoded as UTF-8, so writing it naively raises mid-file. JSON escapes it (`\\ud800`, read
back as the same string); other text files get the same escape as plain text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """JSON that is readable (non-ASCII kept as is) and always encodable as UTF-8 (lone surrogates escaped)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    # A surrogate can only sit inside a JSON string, where its escape means the same character.
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> None:
    """A UTF-8 text file written through `replace_file`; what UTF-8 cannot hold is written as its escape."""

    def write_text_to(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as handle:
            write(handle)

    replace_file(Path(path), write_text_to)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (temp file then rename), one JSON object per line; returns how many."""
    count = 0

    def write(handle: IO[str]) -> None:
        nonlocal count
        for row in rows:
            handle.write(json_text(row) + "\n")
            count += 1

    _write_atomically(path, write)
    return count


def write_json(path: Path, obj: Any) -> None:
    """One indented JSON document, written atomically."""
    _write_atomically(path, lambda handle: handle.write(json_text(obj, indent=2) + "\n"))


def write_text(path: Path, text: str) -> None:
    """A text file (Markdown, HTML) written atomically as UTF-8; a character UTF-8 cannot hold (a lone
    surrogate) is written as its escape, `\\ud800`, so a report shows it instead of failing."""
    _write_atomically(path, lambda handle: handle.write(text))


def replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a directory through a temporary one renamed into place, so a crash leaves the old one or the new one
    (or, between the two renames, none), never half of one that a later stage would load as whole."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    write(tmp)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def replace_file(target: Path, write: Callable[[Path], None]) -> None:
    """Write a file (a database, say) through a temporary file beside it, renamed over `target`: a crash never
    leaves half of one that a later stage would take for a whole one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        write(tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
