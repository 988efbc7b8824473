"""Where a test suite's databases are (the distilled test suites of Zhong et al. 2020, test-suite-sql-eval): one
folder per database id, `<dir>/<db_id>/`, holding that database's variants as `*.sqlite` files (the release puts
the original, `<db_id>.sqlite`, among them). Found once, before anything is scored, so a missing folder stops the
run by name instead of counting its questions silently one way or the other.

    suite = find_suite_databases("/data/test_suite_database", {e.db_id for e in examples})
    score_multi_table(examples, databases, predictions, semantics="spider", test_suite=suite)

The official evaluator takes every file of the folder whose name contains `.sqlite`; here only names that end in
`.sqlite` count, so SQLite's `-journal`/`-wal` side files and backups (`x.sqlite.bak`) are not taken for variants.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["find_suite_databases"]


def _folder_name(db_id: str) -> str:
    """`db_id` as one folder name under the suite's directory: a database id from a data file may not reach outside
    it (`..`, a path separator)."""
    if not db_id or db_id in (".", "..") or "/" in db_id or "\\" in db_id or "\0" in db_id:
        raise ValueError(f"database id {db_id!r} cannot name a test-suite folder (no path separators, not '.' or "
                         "'..')")
    return db_id


def find_suite_databases(root: Path | str, db_ids: Iterable[str]) -> dict[str, tuple[Path, ...]]:
    """{db_id: its variant database files, sorted by name} for each of `db_ids`, from `root/<db_id>/*.sqlite`.

    FileNotFoundError naming the folder when `root` is not a directory, or when a db_id has no folder or no
    `*.sqlite` file in it: a question whose variants are missing can be scored neither right nor wrong."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"eval.test_suite_path={root}: not a directory (expected <dir>/<db_id>/*.sqlite)")
    found: dict[str, tuple[Path, ...]] = {}
    for db_id in sorted(set(db_ids)):
        folder = base / _folder_name(db_id)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no test-suite folder for database {db_id!r} (eval.test_suite_path="
                                    f"{root} must hold <db_id>/*.sqlite for every database of the test split)")
        files = tuple(sorted((p for p in folder.iterdir() if p.suffix == ".sqlite" and p.is_file()),
                             key=lambda p: p.name))
        if not files:
            raise FileNotFoundError(f"{folder}: no *.sqlite file in the test-suite folder of database {db_id!r}")
        found[db_id] = files
    return found
