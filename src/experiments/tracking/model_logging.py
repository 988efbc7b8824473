"""The run's final adapter as an MLflow model: MLflow's transformers flavor with PEFT, so it shows in the run's
Models column, can be registered (`tracking.register_as`) and loads back with `mlflow.transformers.load_model`.

MLflow saves a PEFT model as its adapter (`peft/`) plus the tokenizer, and only a *reference* to the base model:
- a Hub model (`model.name_or_path` a Hub id): its name and revision, the commit the run's config resolved to (or
  `model.revision`), never its weights; the loader downloads it at that revision;
- a local directory (`model.name_or_path=DIR`): that directory's path (MLflow's `base_model_path`); the loader reads
  it there, or where `load_model(uri, base_model_path=...)` says;
- a config-initialised model (`tiny_mistral`: no Hub name, weights made from `model.init` and a seed): there is no
  base to point at, so its weights are saved once, content-addressed, under `<outputs_dir>/base_models/` (16 MB for
  `tiny_mistral`), beside the MLflow store and artifacts that need it, and referenced as a local directory. (Left
  to itself, MLflow would save `get_peft_base_model(model)` as the base: the module tree with the LoRA layers
  injected, whose weight names are not a plain base checkpoint's.)

Logging never loads base weights it does not need: for a Hub or local base the PEFT model is built on an
uninitialised skeleton of the base (from its config), enough for MLflow to save the adapter and record the base's
class, name and dtype. Nothing runs the model while logging (no input example: MLflow would load and run it to
check), so it costs about a second for `tiny_mistral`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from experiments.config import ExperimentConfig, QuantizationConfig, QuantMode
from experiments.data.prompt import PROMPT_VERSION
from experiments.fileio import replace_dir
from experiments.model.loading import load_base_model, load_tokenizer, resolve_device, weights_dtype
from experiments.model.model_files import ModelFiles, resolve_model_files
from experiments.runs.files import RunFiles

log = logging.getLogger(__name__)

TASK = "text-generation"
BASE_MODELS_DIR = "base_models"
# What the logged model's environment pins (those installed); MLflow's own default list also pins torchvision.
REQUIREMENTS = ("torch", "transformers", "peft", "accelerate")


class ModelRegistrationError(RuntimeError):
    """tracking.register_as was set and the model could not be logged or registered under it."""


@dataclass(frozen=True)
class BaseReference:
    """Where the loader finds the base model: `kind` hub (name + revision), local (a directory) or config (a
    directory this module wrote for a config-initialised model)."""

    kind: str
    name: str
    revision: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class LoggedAdapter:
    """What was logged: the model's id and URI (`models:/<id>`), its base reference, the registered name and
    version (when tracking.register_as is set) and the seconds it took."""

    model_id: str
    model_uri: str
    base: BaseReference
    registered_name: str | None = None
    registered_version: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def log_final_adapter(cfg: ExperimentConfig, files: RunFiles, tracker, step: int = 0) -> LoggedAdapter | None:
    """The train stage's hook: log the run's adapter as an MLflow model unless tracking.log_model=false or there is
    no MLflow run. A failure only warns (the run and its `adapter` artifact stay whole), unless tracking.register_as
    asks for a registered model: then it raises ModelRegistrationError, since the run did not give what was asked."""
    if not cfg.tracking.log_model or getattr(tracker, "run_id", None) is None or tracker.uri is None:
        return None
    try:
        logged = log_adapter_model(cfg, files, tracker.uri, tracker.run_id, step=step)
    except Exception as err:
        if cfg.tracking.register_as:
            raise ModelRegistrationError(
                f"tracking.register_as={cfg.tracking.register_as}: could not log or register the adapter as an MLflow "
                f"model in {tracker.uri} ({type(err).__name__}: {err}). The adapter is saved in {files.adapter_dir}; "
                "fix the registry and run again, or run with tracking.register_as=null") from err
        log.warning("could not log the adapter as an MLflow model (%s: %s); the run goes on, and the adapter is still "
                    "in the run's `adapter` artifacts", type(err).__name__, err, exc_info=True)
        tracker.set_tags({"mlflow_model_error": f"{type(err).__name__}: {err}"})
        return None
    tags = {"mlflow_model": logged.model_uri}
    if logged.registered_name:
        tags["registered_model"] = f"{logged.registered_name}/{logged.registered_version}"
    tracker.set_tags(tags)
    tracker.log_metrics({"time/log_model_s": logged.seconds})
    return logged


def log_adapter_model(cfg: ExperimentConfig, files: RunFiles, uri: str, run_id: str, step: int = 0) -> LoggedAdapter:
    """Log `files.adapter_dir` (the run's final adapter) on its base, with the tokenizer, as a logged model of MLflow
    run `run_id` in store `uri` (the run's output at `step`, so its metrics at that step are linked to it), then
    register it under tracking.register_as when set."""
    import mlflow
    from mlflow import MlflowClient

    started = time.perf_counter()
    dtype = weights_dtype(cfg.model, cfg.quantization, resolve_device(cfg.device))
    model, base = peft_model_for_logging(cfg, files.adapter_dir, dtype)
    tokenizer = load_tokenizer(cfg.model)
    metadata_ = {"preset": cfg.preset, "prompt_version": PROMPT_VERSION, "base_model": asdict(base),
                 "quantization": cfg.quantization.mode.value}
    with tracking_uri(uri):
        client = MlflowClient(uri)
        run = client.get_run(run_id)
        # Created here, in the run's experiment: MLflow's log_model would put it in the fluent API's experiment.
        created = client.create_logged_model(
            run.info.experiment_id, name=f"{cfg.preset}-adapter", source_run_id=run_id,
            params={k: str(v)[:6000] for k, v in run.data.params.items()},
            tags={"preset": cfg.preset, "prompt_version": PROMPT_VERSION, "base_model": base.name})
        with hub_revision(base):
            info = mlflow.transformers.log_model(
                {"model": model, "tokenizer": tokenizer}, name=created.name, task=TASK, torch_dtype=dtype,
                base_model_path=base.path, metadata=metadata_, model_card=model_card(cfg, base),
                pip_requirements=pinned_requirements(cfg), model_id=created.model_id, run_id=run_id, step=step)
        registered_version = None
        if cfg.tracking.register_as:
            version = mlflow.register_model(info.model_uri, cfg.tracking.register_as)
            registered_version = str(version.version)
            log.info("MLflow model %s registered as %s version %s", info.model_uri, cfg.tracking.register_as,
                     registered_version)
    seconds = time.perf_counter() - started
    log.info("adapter logged as MLflow model %s (base: %s %s) in %.1f s", info.model_uri, base.kind,
             base.path or f"{base.name}@{base.revision}", seconds)
    return LoggedAdapter(info.model_id, info.model_uri, base, cfg.tracking.register_as, registered_version, seconds)


def peft_model_for_logging(cfg: ExperimentConfig, adapter_dir: Path, dtype: torch.dtype):
    """The PeftModel MLflow saves (on the CPU, in the run's weights `dtype`) and the base reference it records. The
    base is the real one only for a config-initialised model (whose weights are written to a base directory);
    otherwise an uninitialised skeleton of it, whose weights are never read (MLflow saves only the adapter)."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (the train stage writes it)")
    if cfg.model.name_or_path is None and cfg.model.gguf_file is None:
        base_model = load_base_model(cfg.model, QuantizationConfig(), torch.device("cpu")).to(dtype)
        path = save_config_base(base_model, Path(cfg.outputs_dir).expanduser().resolve() / BASE_MODELS_DIR,
                                cfg.model.name)
        reference = BaseReference("config", cfg.model.name, None, str(path))
    else:
        files = resolve_model_files(cfg.model)
        reference = base_reference(files)
        base_model = skeleton_base(files, dtype)
    base_model.config.name_or_path = reference.path or reference.name  # what MLflow records as the source model
    return PeftModel.from_pretrained(base_model, str(adapter_dir)), reference


def base_reference(files: ModelFiles) -> BaseReference:
    """A Hub id or a local directory as MLflow records it: a directory (a converted GGUF or offline copy included)
    by its absolute path; a Hub id by name and the commit its config resolves to in the local cache (the revision
    the run trained on), else model.revision."""
    if files.is_local:
        path = str(Path(files.path).resolve())
        return BaseReference("local", path, None, path)
    from transformers import AutoConfig

    commit = None
    with contextlib.suppress(Exception):  # offline without a cached config: the configured revision says enough
        commit = getattr(AutoConfig.from_pretrained(files.path, revision=files.revision), "_commit_hash", None)
    return BaseReference("hub", files.path, commit or files.revision)


def skeleton_base(files: ModelFiles, dtype: torch.dtype):
    """The base model's module tree from its config, with uninitialised CPU storage (never read or written): a
    PeftModel needs the modules, MLflow only their class, config and dtype."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(files.path, revision=files.revision)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return skeleton.to_empty(device="cpu")  # untouched pages: no memory is committed for the weights


def save_config_base(model, root: Path, name: str) -> Path:
    """A config-initialised model's weights, saved once under `root/<name>-<digest of the weights>`: the same
    weights (same init config, seed and torch) map to one directory, different ones never overwrite it."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    target = root / f"{name}-{digest.hexdigest()[:16]}"
    if not (target / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        replace_dir(target, lambda tmp: model.save_pretrained(tmp))
    return target


def model_card(cfg: ExperimentConfig, base: BaseReference):
    """A short model card (MLflow would otherwise try to fetch the base's from the Hub)."""
    from huggingface_hub import ModelCard

    where = f"{base.name} at revision {base.revision}" if base.kind == "hub" else f"{base.name} ({base.path})"
    return ModelCard(f"---\nlibrary_name: peft\npipeline_tag: {TASK}\ntags: [text-to-sql, lora]\n---\n"
                     f"# {cfg.preset}: LoRA adapter for Text-to-SQL\n\nBase model: {where}. Prompts: "
                     f"experiments.data.prompt, version {PROMPT_VERSION}. Greedy decoding, one line of SQL.\n")


def pinned_requirements(cfg: ExperimentConfig) -> list[str]:
    """The installed versions of what loading the model needs (bitsandbytes too for a quantised base)."""
    names = [*REQUIREMENTS, *(("bitsandbytes",) if cfg.quantization.mode != QuantMode.none else ())]
    pinned = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pinned.append(f"{name}=={metadata.version(name).split('+', 1)[0]}")
    return pinned


@contextlib.contextmanager
def hub_revision(base: BaseReference) -> Iterator[None]:
    """MLflow records a Hub base at the Hub's *latest* commit, looked up online; this makes it record the revision
    the run used (nothing to do for local bases, or when the revision is unknown)."""
    if base.kind != "hub" or not base.revision:
        yield
        return
    from unittest import mock

    import mlflow.transformers.flavor_config as flavor_config

    if not hasattr(flavor_config, "get_latest_commit_for_repo"):  # another MLflow: it looks the commit up itself
        log.warning("MLflow %s: cannot pin the base model's revision; MLflow records the Hub's latest commit",
                    metadata.version("mlflow"))
        yield
        return
    with mock.patch.object(flavor_config, "get_latest_commit_for_repo", return_value=base.revision):
        yield


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent tracking URI set to `uri` for the duration (log_model and register_model read it), then put
    back (MLflow mirrors it in MLFLOW_TRACKING_URI)."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it
