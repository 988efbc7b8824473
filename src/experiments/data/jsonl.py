"""JSON-lines reading with errors that name the file and line; JSON, JSON-lines and text files written atomically
and as valid UTF-8 whatever text they hold.

Predictions and data are untrusted text: a lone UTF-16 surrogate ("\\ud800") is valid JSON and a valid Python
string but cannot be encoded as UTF-8, so writing it naively raises mid-file. JSON escapes it (`\\ud800`, read
back as the same string); other text files get the same escape as plain text.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from experiments.data.records import DataError

_SURROGATE = re.compile("[\ud800-\udfff]")


def iter_jsonl(path: Path, *, unique_keys: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line. Anything wrong with a line (not UTF-8, not
    JSON, nested too deeply, a number too long to read, not an object; with `unique_keys`, a key given twice) is a
    DataError naming the file and line."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path} line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{where}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of "
                                "the line)") from None
            if not line.strip():
                continue
            obj = json_line(line, where, unique_keys=unique_keys)
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


class _RepeatedKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _RepeatedKey(key)
        obj[key] = value
    return obj


def json_line(line: str, where: str, *, unique_keys: bool = False) -> Any:
    """One JSON document read from one line, or a DataError that starts with `where` (file and line) and says
    what is wrong. With `unique_keys`, an object that gives a key twice is refused: JSON readers disagree on which
    value wins, so the line is ambiguous."""
    try:
        return json.loads(line, object_pairs_hook=_unique_object if unique_keys else None)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
    except _RepeatedKey as err:
        raise DataError(f"{where}: key {ascii(err.key[:100])} appears twice in one object (which value is meant "
                        "is ambiguous)") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of more than sys.get_int_max_str_digits() digits
        detail = (f"a number of more than {sys.get_int_max_str_digits():,} digits"
                  if "integer string conversion" in str(err) else str(err))
        raise DataError(f"{where}: malformed JSON ({detail})") from None


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """JSON that is readable (non-ASCII kept as is) and always encodable as UTF-8 (lone surrogates escaped)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    # A surrogate can only sit inside a JSON string, where its escape means the same character.
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write through a temp file renamed over `path`, so a crash never leaves half a file that reads as whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as handle:
            write(handle)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
