"""The adapter as an MLflow model: logged through the transformers flavor (adapter + tokenizer + a base reference,
never base weights), linked to the run, registered under tracking.register_as, and loaded back by MLflow's own
loader into a model that generates the run's SQL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from experiments.config import ConfigError, load_config
from experiments.model.loading import load_base_model, load_tokenizer
from experiments.runs.files import RunFiles
from experiments.tracking.mlflow_tracker import MlflowTracker
from experiments.tracking.model_logging import (
    BASE_MODELS_DIR,
    BaseReference,
    ModelRegistrationError,
    log_adapter_model,
    log_final_adapter,
    tracking_uri,
)

PROMPTS = ("SELECT name FROM", "What is the team of the player who wears number 7?")


def test_log_model_and_register_as_defaults_and_refusals():
    cfg = load_config(["experiment=smoke"])
    assert cfg.tracking.log_model is True and cfg.tracking.register_as is None
    assert load_config(["experiment=smoke", "tracking=none"]).tracking.log_model is False
    assert load_config(["experiment=smoke",
                        "tracking.register_as=text2sql-smoke"]).tracking.register_as == "text2sql-smoke"
    for overrides, words in ((["tracking=none", "tracking.register_as=x"], "tracking=none"),
                             (["tracking.log_model=false", "tracking.register_as=x"], "tracking.log_model=false"),
                             (["tracking.register_as=team/model"], "cannot contain"),
                             (["tracking.register_as=' '"], "non-empty")):
        with pytest.raises(ConfigError, match="tracking.register_as") as err:
            load_config(overrides)
        assert words in str(err.value)


class RefusingTracker:
    """A tracker with a run that fails the test if anything is logged to it."""

    run_id, uri = "run", "sqlite:///nowhere.db"

    def __getattr__(self, name):
        raise AssertionError(f"tracker.{name} called")


def test_log_model_false_logs_nothing(tmp_path):
    cfg = load_config(["experiment=smoke", "tracking.log_model=false", f"outputs_dir={tmp_path}"])
    assert log_final_adapter(cfg, RunFiles(tmp_path / "run"), RefusingTracker()) is None


def random_adapter(base, adapter_dir):
    """A LoRA adapter with random (non-zero) weights and a trained embedding copy, saved like the train stage's."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, modules_to_save=["embed_tokens"],
                                            ensure_weight_tying=True, task_type="CAUSAL_LM"))
    model.save_pretrained(str(adapter_dir))


def logits(model, tokenizer):
    model.eval()
    with torch.no_grad():
        return [model(tokenizer(p, return_tensors="pt").input_ids).logits for p in PROMPTS]


@pytest.mark.slow
def test_a_local_base_is_referenced_not_copied_and_loads_back(tmp_path):
    """model.name_or_path=DIR: the model holds the adapter and tokenizer, and points at DIR for the base."""
    from peft import PeftModel

    tiny = load_config(["experiment=smoke"])
    base_dir = tmp_path / "base"
    load_base_model(tiny.model, tiny.quantization, torch.device("cpu")).save_pretrained(base_dir)
    load_tokenizer(tiny.model).save_pretrained(base_dir)  # a local base directory as the Hub's: with its tokenizer
    files = RunFiles(tmp_path / "run")
    random_adapter(load_base_model(tiny.model, tiny.quantization, torch.device("cpu")), files.adapter_dir)
    cfg = load_config(["experiment=smoke",
                       f"model.name_or_path={base_dir}", "model.init=null", f"outputs_dir={tmp_path / 'outputs'}"])
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "text2sql-lora", "local-base", {},
                            system_metrics=False)
    logged = log_final_adapter(cfg, files, tracker)
    tracker.finish("FINISHED")
    assert logged is not None and logged.base.kind == "local" and logged.base.path == str(base_dir.resolve())
    flavor = saved_flavor(logged.model_uri, tracker.uri)
    assert flavor["local_base_model_path"] == str(base_dir.resolve()) and "model_binary" not in flavor
    with tracking_uri(tracker.uri):
        loaded = mlflow.transformers.load_model(logged.model_uri)
    reference = PeftModel.from_pretrained(load_base_model(tiny.model, tiny.quantization, torch.device("cpu")),
                                          str(files.adapter_dir))
    tokenizer = load_tokenizer(tiny.model)
    base_only = load_base_model(tiny.model, tiny.quantization, torch.device("cpu"))
    for got, want, plain in zip(logits(loaded.model, loaded.tokenizer), logits(reference, tokenizer),
                                logits(base_only, tokenizer), strict=True):
        assert torch.equal(got, want)
        assert (got - plain).abs().max() > 1e-3  # the adapter changes the model: equality above means it is applied


def saved_flavor(model_uri: str, uri: str) -> dict:
    """The logged model's transformers flavor (MLmodel), checking that no base weights were saved with it."""
    with tracking_uri(uri):  # models:/ URIs resolve through the fluent tracking URI
        local = Path(mlflow.artifacts.download_artifacts(model_uri))
    names = {p.name for p in local.iterdir()}
    assert {"peft", "components", "MLmodel"} <= names and "model" not in names, names  # "model" = base weights
    return Model.load(str(local / "MLmodel")).flavors["transformers"]


@pytest.mark.slow
def test_a_failure_to_log_warns_but_one_to_register_fails_the_run(tmp_path, caplog):
    files = RunFiles(tmp_path / "run")  # no adapter in it: logging the model fails
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "text2sql-lora", "broken", {},
                            system_metrics=False)
    cfg = load_config(["experiment=smoke", f"outputs_dir={tmp_path / 'outputs'}"])
    with caplog.at_level(logging.WARNING):
        assert log_final_adapter(cfg, files, tracker) is None
    assert "could not log the adapter as an MLflow model (FileNotFoundError" in caplog.text
    assert "FileNotFoundError" in tracker.client.get_run(tracker.run_id).data.tags["mlflow_model_error"]
    cfg = load_config(["experiment=smoke",
                       f"outputs_dir={tmp_path / 'outputs'}", "tracking.register_as=text2sql-smoke"])
    with pytest.raises(ModelRegistrationError, match="tracking.register_as=text2sql-smoke"):
        log_final_adapter(cfg, files, tracker)
    tracker.finish("FINISHED")


@pytest.fixture(scope="module")
def registered_run(tmp_path_factory):
    """A tiny smoke run with tracking.register_as=text2sql-smoke."""
    from experiments.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("mlmodel")
    cfg = load_config(["experiment=smoke",
                       f"outputs_dir={root / 'outputs'}", "training.max_steps=4", "data_size.train=32",
                       "data_size.val=4", "data_size.test=6", "training.eval_steps=4", "training.learning_rate=0.01",
                       "inference.max_new_tokens=24", "tracking.system_metrics=false",
                       "tracking.register_as=text2sql-smoke"])
    summary = run_pipeline(cfg, root / "run")
    return cfg, summary, RunFiles(root / "run"), MlflowClient(f"sqlite:///{root / 'outputs' / 'mlflow.db'}")


@pytest.mark.slow
def test_the_run_logs_its_adapter_as_a_model_and_registers_it(registered_run):
    cfg, summary, files, client = registered_run
    run = client.get_run(summary["mlflow_run_id"])
    logged = summary["stages"]["train"]["mlflow_model"]
    # The run's Models column: the run's outputs name the logged model, in the run's experiment
    assert [o.model_id for o in run.outputs.model_outputs] == [logged["model_id"]]
    model = client.get_logged_model(logged["model_id"])
    assert model.experiment_id == run.info.experiment_id and model.source_run_id == run.info.run_id
    assert model.name == "smoke-adapter" and str(model.status).endswith("READY")
    assert model.tags["prompt_version"] and model.params["training.max_steps"] == "4"
    assert {"val/execution_accuracy", "val/loss"} <= {m.key for m in model.metrics}  # at the adapter's step
    assert run.data.tags["mlflow_model"] == f"models:/{logged['model_id']}"
    assert run.data.tags["registered_model"] == "text2sql-smoke/1" and "time/log_model_s" in run.data.metrics
    # The registry: version 1 of text2sql-smoke is that model
    version = client.get_model_version("text2sql-smoke", "1")
    assert version.source == logged["model_uri"] and version.run_id == run.info.run_id
    # The base: the tiny model's weights saved once under outputs/base_models, referenced, not inside the model
    base = logged["base"]
    assert base["kind"] == "config" and base["path"].startswith(str(cfg.outputs_dir))
    assert f"/{BASE_MODELS_DIR}/tiny_mistral-" in base["path"]
    flavor = saved_flavor(logged["model_uri"], client.tracking_uri)
    assert flavor["local_base_model_path"] == base["path"] and flavor["task"] == "text-generation"
    assert flavor["peft_adaptor"] == "peft" and flavor["pipeline_model_type"] == "MistralForCausalLM"


@pytest.mark.slow
def test_the_registered_model_loads_back_and_generates_the_runs_sql(registered_run):
    from experiments.data.prepared import read_prepared, read_tables
    from experiments.decoding.generate import Decoding, generate_sql, new_tokens_cap
    cfg, summary, files, client = registered_run
    with tracking_uri(client.tracking_uri):
        loaded = mlflow.transformers.load_model("models:/text2sql-smoke/1")
    model, tokenizer = loaded.model, loaded.tokenizer
    reference_tokenizer = load_tokenizer(cfg.model)
    test = read_prepared(files.split("test"))
    prompts = [p.prompt for p in test]
    assert [tokenizer(p).input_ids for p in prompts] == [reference_tokenizer(p).input_ids for p in prompts]
    tables = read_tables(files.tables_jsonl)
    decoding = Decoding.for_run(cfg.inference, tokenizer, files.tables_sqlite)
    model.eval()
    cap = new_tokens_cap(cfg, tokenizer, files.split("train"))

    def sql(model) -> list[str]:
        generated, _ = generate_sql(model, tokenizer, prompts, cfg, torch.device("cpu"), cap, progress=False,
                                    schemas=[tables[p.example.table_id] for p in test], decoding=decoding)
        return [g.sql for g in generated]

    predictions = {row["id"]: row["sql"] for row in map(json.loads, files.predictions.read_text().splitlines())}
    from_registry = sql(model)
    assert from_registry == [predictions[p.example.id] for p in test]  # the infer stage's SQL, prompt by prompt
    # ...which the base alone does not write: the equality above holds because the adapter is applied
    with model.disable_adapter():
        assert sql(model) != from_registry
    decoding.close()


@pytest.mark.slow
def test_each_run_registers_a_new_version_on_one_saved_base(registered_run):
    cfg, summary, files, client = registered_run
    tracker = MlflowTracker(client.tracking_uri, "text2sql-lora", "again", {}, system_metrics=False)
    logged = log_adapter_model(cfg, files, tracker.uri, tracker.run_id)
    tracker.finish("FINISHED")
    assert logged.registered_version == "2"
    assert client.get_model_version("text2sql-smoke", "2").source == logged.model_uri
    assert logged.base == BaseReference(**summary["stages"]["train"]["mlflow_model"]["base"])
    bases = list((files.root.parent / "outputs" / BASE_MODELS_DIR).iterdir())
    assert [b.name for b in bases] == [f"tiny_mistral-{bases[0].name.rsplit('-', 1)[1]}"]  # one, reused
