"""JSON reading (JSON lines, or one JSON document per file) with errors that name the file and line (what is
wrong, where), whatever the bytes hold.

The writers are experiments/fileio.py's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from experiments.data.records import DataError


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
            obj = parse_json(line, where, unique_keys=unique_keys)
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


def parse_json(text: str, where: str, *, unique_keys: bool = False) -> Any:
    """One JSON document (a JSON line, or a whole file's text), or a DataError that starts with `where` (the file,
    and the line of a JSON-lines file) and says what is wrong, with the line and column for a text of several lines.
    With `unique_keys`, an object that gives a key twice is refused: JSON readers disagree on which value wins, so
    the document is ambiguous."""
    try:
        return json.loads(text, object_pairs_hook=_unique_object if unique_keys else None)
    except json.JSONDecodeError as err:
        at = f"line {err.lineno} column {err.colno}" if "\n" in text.rstrip("\n") else f"column {err.colno}"
        raise DataError(f"{where}: malformed JSON ({err.msg} at {at})") from None
    except _RepeatedKey as err:
        raise DataError(f"{where}: key {ascii(err.key[:100])} appears twice in one object (which value is meant "
                        "is ambiguous)") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of more than sys.get_int_max_str_digits() digits
        detail = (f"a number of more than {sys.get_int_max_str_digits():,} digits"
                  if "integer string conversion" in str(err) else str(err))
        raise DataError(f"{where}: malformed JSON ({detail})") from None
