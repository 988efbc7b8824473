"""WikiSQL in the official release layout: a directory of {split}.jsonl + {split}.tables.jsonl, or the release
tarball (data.tar.bz2) by path or URL, downloaded once into a cache and extracted.

The bundled sample uses the same layout, so it goes through this loader too.
"""

from __future__ import annotations

import hashlib
import http.client
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from experiments.data.jsonl import iter_jsonl
from experiments.data.records import (
    SOURCE_SPLITS,
    DataError,
    Example,
    SplitData,
    Table,
    release_query,
)

RELEASE_URL = "https://github.com/salesforce/WikiSQL/raw/master/data.tar.bz2"


def load_tables(path: Path) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for lineno, obj in iter_jsonl(path):
        try:
            table = Table.from_json(obj)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path} line {lineno}: not a WikiSQL table ({err!r})") from None
        if len(table.types) != len(table.header):
            raise DataError(f"{path} line {lineno}: table {table.id!r} has {len(table.header)} header names "
                            f"but {len(table.types)} types")
        tables[table.id] = table
    return tables


def load_split(directory: Path, split: str) -> SplitData:
    """One split of a release directory. Structural errors raise DataError naming file and line; lines that
    cannot be used (model.skip_reason) are skipped and counted."""
    questions = directory / f"{split}.jsonl"
    tables_path = directory / f"{split}.tables.jsonl"
    for required in (questions, tables_path):
        if not required.is_file():
            raise DataError(f"{required}: missing; an official WikiSQL directory holds "
                            f"{', '.join(f'{s}.jsonl and {s}.tables.jsonl' for s in SOURCE_SPLITS)}")
    tables = load_tables(tables_path)
    data = SplitData(name=split, examples=[], tables=tables)
    for n, (lineno, obj) in enumerate(iter_jsonl(questions)):
        where = f"{questions} line {lineno}"
        try:
            sql = obj["sql"]
            example = Example(id=f"{split}-{n}", table_id=str(obj["table_id"]), question=str(obj["question"]),
                              query=release_query(sql["sel"], sql["agg"], sql.get("conds", [])))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{where}: not a WikiSQL example (missing or malformed {err!s})") from None
        data.admit(example, where)
    return data


def find_release_dir(root: Path) -> Path:
    """The directory under `root` that holds train.jsonl (the tarball extracts into data/)."""
    if (root / "train.jsonl").is_file():
        return root
    for candidate in sorted(root.rglob("train.jsonl")):
        return candidate.parent
    raise DataError(f"{root}: no train.jsonl found; expected the official WikiSQL release layout")


def download(url: str, cache_dir: Path) -> Path:
    """Download `url` once into `cache_dir` (keyed by the URL), with a progress bar."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{Path(url).name or 'data.tar.bz2'}"
    if target.is_file():
        return target
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:  # noqa: S310 (user-given URL)
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {Path(url).name}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        partial.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DataError(f"{url}: cannot download the WikiSQL release ({reason}). Offline, or without access to it, "
                        "use a local copy: data=official data.path=DIR_OR_TARBALL (the unpacked release directory or "
                        "its data.tar.bz2; with data.path unset, data=official downloads it from this URL)") from None
    partial.replace(target)
    return target


def _unreadable(tarball: Path, cache_dir: Path, err: BaseException) -> DataError:
    again = ("delete this cached download to fetch it again" if tarball.parent == cache_dir
             else "download it again (was it cut short?)")
    return DataError(f"{tarball}: not a readable WikiSQL release tarball ({type(err).__name__}: {err}); {again}, or "
                     "point data.path at the unpacked release directory")


def extract(tarball: Path, cache_dir: Path) -> Path:
    """Extract a release tarball once (next to the cache) and return its release directory."""
    destination = cache_dir / (tarball.name.split(".tar")[0] + "-extracted")
    marker = destination / ".complete"
    if not marker.is_file():
        destination.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(destination, filter="data")
        except (tarfile.TarError, EOFError) as err:  # not a tarball, or one cut short
            raise _unreadable(tarball, cache_dir, err) from None
        except OSError as err:
            if err.errno is not None:  # the disk, not the archive (bz2 reports a corrupt stream without errno)
                raise
            raise _unreadable(tarball, cache_dir, err) from None
        marker.touch()
    return find_release_dir(destination)


def resolve_release(path: str, cache_dir: Path) -> Path:
    """A release directory from a directory, a tarball path or a tarball URL."""
    if path.startswith(("http://", "https://")):
        return extract(download(path, cache_dir), cache_dir)
    local = Path(path).expanduser()
    if local.is_dir():
        return find_release_dir(local)
    if local.is_file() and ".tar" in local.name:
        return extract(local, cache_dir)
    raise DataError(f"data.path={path!r}: not a directory, a .tar.bz2 release file or an http(s) URL")


def load_release(path: str, cache_dir: Path) -> dict[str, SplitData]:
    directory = resolve_release(path, cache_dir)
    return {split: load_split(directory, split) for split in SOURCE_SPLITS}
