"""create_pipeline: the components, their order and wiring, what the config controls, and the cache
keys: which edits change which component's parameters."""
import json
import os
import shutil
import subprocess

import pytest
import tensorflow_model_analysis as tfma

from components import fingerprints
from tfx.dsl.components.base import executor_spec

from models.spec import SPEC_KEY, TRANSFORM_KEYS, TrainingSettings, from_custom_config
from pipeline.config import DEFAULT_SPEC_DIR, PROJECT_ROOT, PipelineConfig
from pipeline.evaluation import metric_class
from tests.conftest import TAXI_SPEC
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import summarize
from tests.conftest import cli_command, cli_env

EXPECTED_ORDER = ["CsvExampleGen", "StatisticsGen", "ImportCuratedSchema", "ExampleValidator",
                  "DataValidationGate", "previous_data_statistics_resolver", "DriftCheck", "Transform", "Trainer", "latest_blessed_model_resolver",
                  "Evaluator", "ServingCheck", "EdgeExport", "Pusher"]


@pytest.fixture
def config(tmp_path):
    return PipelineConfig(data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out"),
                          serving_dir=str(tmp_path / "serving"), train_steps=123, eval_steps=7,
                          max_epochs=4, batch_size=64, gate_threshold=0.77, beam_args=("--direct_num_workers=2",))


@pytest.fixture
def components(config):
    return {c.id: c for c in create_pipeline(config).components}


def _producer(channel):
    return channel.producer_component_id


def test_every_component_present_and_after_its_upstream_nodes(config):
    ordered = create_pipeline(config).components
    ids = [c.id for c in ordered]
    assert sorted(ids) == sorted(EXPECTED_ORDER)
    for position, component in enumerate(ordered):
        assert all(ids.index(u.id) < position for u in component.upstream_nodes), component.id


def test_wiring(components):
    c = components
    assert _producer(c["StatisticsGen"].inputs["examples"]) == "CsvExampleGen"
    assert _producer(c["ExampleValidator"].inputs["schema"]) == "ImportCuratedSchema"
    assert _producer(c["DataValidationGate"].inputs["anomalies"]) == "ExampleValidator"
    # Transform must wait for both gates even though it consumes none of their outputs.
    assert {"DataValidationGate", "DriftCheck"} <= {n.id for n in c["Transform"].upstream_nodes}
    assert _producer(c["DriftCheck"].inputs["statistics"]) == "StatisticsGen"
    assert {n.id for n in c["previous_data_statistics_resolver"].upstream_nodes} == {"CsvExampleGen"}
    assert _producer(c["Trainer"].inputs["examples"]) == "Transform"
    assert _producer(c["Trainer"].inputs["transform_graph"]) == "Transform"
    assert _producer(c["Evaluator"].inputs["model"]) == "Trainer"
    assert _producer(c["Evaluator"].inputs["baseline_model"]) == "latest_blessed_model_resolver"
    assert _producer(c["Evaluator"].inputs["examples"]) == "CsvExampleGen"
    assert _producer(c["Pusher"].inputs["model_blessing"]) == "Evaluator"
    # The serving check sits between Evaluator and Pusher, on the same candidate model.
    assert _producer(c["ServingCheck"].inputs["model"]) == "Trainer"
    assert _producer(c["ServingCheck"].inputs["model_blessing"]) == "Evaluator"
    assert _producer(c["ServingCheck"].inputs["examples"]) == "CsvExampleGen"
    # The portable exports' check sits between the serving check and Pusher; the Pusher pushes the
    # SavedModel with its exports, only when both checks blessed it.
    assert _producer(c["EdgeExport"].inputs["model"]) == "Trainer"
    assert _producer(c["EdgeExport"].inputs["infra_blessing"]) == "ServingCheck"
    assert _producer(c["EdgeExport"].inputs["examples"]) == "CsvExampleGen"
    assert _producer(c["Pusher"].inputs["infra_blessing"]) == "EdgeExport"
    assert _producer(c["Pusher"].inputs["model"]) == "EdgeExport"


def test_resolver_sees_the_candidate_so_it_can_exclude_it(components):
    resolver = components["latest_blessed_model_resolver"]
    assert {n.id for n in resolver.upstream_nodes} == {"Trainer"}
    assert set(resolver.outputs) == {"candidate", "model", "model_blessing"}


def test_config_reaches_the_components(config, components):
    c = components
    assert c["CsvExampleGen"].exec_properties["input_base"] == config.data_root
    assert c["ImportCuratedSchema"].exec_properties["schema_file"].endswith(
        "schemas/taxi/schema.pbtxt")
    assert os.path.isfile(c["ImportCuratedSchema"].exec_properties["schema_file"])
    assert '"num_steps": 123' in c["Trainer"].exec_properties["train_args"]
    assert c["Trainer"].exec_properties["train_steps"] == 123  # what the Trainer's executor uses
    assert '"num_steps": 7' in c["Trainer"].exec_properties["eval_args"]
    # The training overrides reach run_fn inside the spec it receives.
    trainer_spec = from_custom_config(json.loads(c["Trainer"].exec_properties["custom_config"]))
    assert trainer_spec.training == TrainingSettings(batch_size=64, max_epochs=4, patience=3)
    # Transform receives only what preprocessing_fn reads.
    transform_config = json.loads(c["Transform"].exec_properties["custom_config"])
    assert set(json.loads(transform_config[SPEC_KEY])) == set(TRANSFORM_KEYS)
    assert c["ServingCheck"].exec_properties["model_name"] == config.model_name
    assert c["ServingCheck"].exec_properties["tolerance"] == config.serving_check_tolerance
    assert c["ServingCheck"].exec_properties["max_p50_latency_ms"] == config.serving_check_max_p50_ms
    push = c["Pusher"].exec_properties["push_destination"]
    assert os.path.join(config.serving_dir, config.model_name) in push


def _parameters(config):
    """Each component's exec properties: with its inputs and executor spec, TFX's cache key."""
    return {c.id: c.exec_properties for c in create_pipeline(config).components}


def _changed(before, after):
    return {component for component in before if before[component] != after[component]}


@pytest.fixture
def spec_copy(tmp_path):
    directory = tmp_path / "spec"
    shutil.copytree(DEFAULT_SPEC_DIR, directory)
    return directory


def test_editing_the_schema_changes_only_the_schema_importer_s_key(tmp_path, spec_copy):
    config = PipelineConfig(output_dir=str(tmp_path / "out"), spec_dir=str(spec_copy))
    before = _parameters(config)
    schema = spec_copy / "schema.pbtxt"
    schema.write_text(schema.read_text() + "\n# edited\n")
    assert _changed(before, _parameters(config)) == {"ImportCuratedSchema"}


def test_editing_the_dataset_spec_changes_the_keys_of_what_builds_from_it(tmp_path, spec_copy):
    def config():  # the spec is read when the configuration is built, as each run does
        return PipelineConfig(output_dir=str(tmp_path / "out"), spec_dir=str(spec_copy))

    before = _parameters(config())
    spec = spec_copy / "dataset.yaml"
    spec.write_text(spec.read_text().replace("hidden_units: [64, 32]", "hidden_units: [64]"))
    # Transform gets only the spec's columns and label: a model setting re-runs the Trainer alone.
    assert _changed(before, _parameters(config())) == {"Trainer"}
    spec.write_text(spec.read_text().replace("fare: {kind: numeric, scale: log, buckets: 20}",
                                             "fare: {kind: numeric, scale: log, buckets: 10}"))
    assert _changed(before, _parameters(config())) == {"Transform", "Trainer"}
    spec.write_text(spec.read_text().replace("slices: [payment_type, trip_start_hour]",
                                             "slices: [payment_type]"))
    assert "Evaluator" in _changed(before, _parameters(config()))


CODE_KEYED = {"CsvExampleGen", "StatisticsGen", "ImportCuratedSchema", "DataValidationGate", "DriftCheck",
              "Transform", "Trainer", "Evaluator", "ServingCheck", "EdgeExport", "Pusher"}


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A copy of the project's packages that create_pipeline fingerprints instead of the real ones."""
    root = tmp_path / "project"
    for package in sorted(fingerprints.PROJECT_PACKAGES):
        shutil.copytree(os.path.join(PROJECT_ROOT, package), root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    monkeypatch.setattr(fingerprints, "PROJECT_ROOT", str(root))
    return root


def _code_key(parameters):
    if "code_sha256" in parameters:  # a parameter of the project's function components
        return parameters["code_sha256"]
    custom_config = json.loads(parameters["custom_config"])  # TFX's own component classes
    # ExampleGen's is a CustomConfig proto: the fingerprint is in its `Any`.
    return custom_config.get("custom_config", {}).get("value", custom_config)["code_sha256"]


def test_each_component_running_project_code_is_keyed_on_it_wherever_the_project_lives(
        config, project_copy, monkeypatch):
    in_copy = {c: _code_key(p) for c, p in _parameters(config).items() if c in CODE_KEYED}
    assert len(set(in_copy.values())) == len(CODE_KEYED)  # each on its own code
    monkeypatch.setattr(fingerprints, "PROJECT_ROOT", PROJECT_ROOT)
    # Relative paths: a checkout elsewhere (or the Kubeflow image) gives the same keys.
    assert in_copy == {c: _code_key(p) for c, p in _parameters(config).items() if c in CODE_KEYED}


def test_unchanged_code_keeps_every_key_even_when_its_files_are_rewritten(config, project_copy):
    before = _parameters(config)
    for path in project_copy.rglob("*.py"):  # same content, new modification time
        path.write_bytes(path.read_bytes())
        os.utime(path, (path.stat().st_atime + 60, path.stat().st_mtime + 60))
    assert _changed(before, _parameters(config)) == set()


# An edit must change the parameters of exactly the components whose code imports the file. Those
# downstream of a changed component re-run too, through their inputs (its new output artifacts).
@pytest.mark.parametrize("edited, changed", [
    ("models/model.py", {"Trainer"}),  # not Transform: the model does not change the preprocessing
    ("models/preprocessing.py", {"Transform"}),  # the Trainer re-runs on Transform's new outputs
    ("models/kinds.py", {"Transform", "Trainer"}),  # a kind owns its preprocessing and its encoder
    ("models/spec.py", {"Transform", "Trainer"}),
    ("models/signatures.py", {"Trainer"}),
    ("components/trainer.py", {"Trainer"}),
    ("components/schema_importer.py", {"ImportCuratedSchema"}),
    ("components/data_gate.py", {"DataValidationGate", "DriftCheck"}),  # DriftCheck imports it
    ("components/drift_check.py", {"DriftCheck"}),
    ("components/serving_check.py", {"ServingCheck", "EdgeExport"}),  # whose helpers it reuses
    ("components/serving_runtime.py", {"ServingCheck", "EdgeExport"}),
    ("components/edge_formats.py", {"EdgeExport"}),
    ("pipeline/serving/rest.py", {"ServingCheck"}),  # the server it starts imports it when it starts
    ("components/atomic_pusher.py", {"Pusher"}),
    ("components/arrow_example_gen.py", {"CsvExampleGen"}),
    ("components/capped_evaluator.py", {"Evaluator"}),
    ("components/tfma_extractors.py", {"Evaluator"}),
    ("components/tfma_metrics.py", {"Evaluator"}),  # which TFMA imports by name, and the extractors
    # Their executors read a fixed number of rows per batch (the Evaluator's shares the helper).
    ("components/batch_size.py", {"StatisticsGen", "Transform", "Evaluator"}),
    # The TF.js tools: the converter, the Node runner and the pinned packages (no Python imports them).
    ("components/tfjs/convert.py", {"EdgeExport"}),
    ("components/tfjs/predict.js", {"EdgeExport"}),
    ("components/tfjs/requirements.lock", {"EdgeExport"}),
    # Every `components` module runs the package's __init__.py first.
    ("components/__init__.py", CODE_KEYED),
    ("pipeline/summary_view.py", set()),  # the CLI's, run by no component
])
def test_a_code_edit_changes_the_keys_of_exactly_the_components_that_run_it(
        config, project_copy, edited, changed):
    before = _parameters(config)
    with open(project_copy / edited, "a", encoding="utf-8") as f:
        f.write("\n# edited\n")
    assert _changed(before, _parameters(config)) == changed


@pytest.mark.slow
def test_a_real_re_run_after_an_edit_re_runs_exactly_the_components_that_run_the_edited_code(
        tmp_path, small_data_root):
    """The CLI run from a copy of the project, edited between runs (~90 s: 20 training steps)."""
    project = tmp_path / "project"
    for name in sorted(fingerprints.PROJECT_PACKAGES) + ["schemas"]:
        shutil.copytree(os.path.join(PROJECT_ROOT, name), project / name,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    shutil.copy(os.path.join(PROJECT_ROOT, "setup.py"), project)
    # The TF.js export's tools, as `make tfjs` left them in the checkout (components/edge_formats.py).
    for tool in (".venv-tfjs", "components/tfjs/node_modules"):
        os.symlink(os.path.join(PROJECT_ROOT, tool), project / tool)
    output = tmp_path / "out"
    args = ["--data-root", small_data_root, "--output-dir", str(output),
            "--serving-dir", str(tmp_path / "serving"), "--train-steps", "20", "--eval-steps", "2",
            "--max-epochs", "1"]

    def run_after_editing(edited=None):
        if edited:
            with open(project / edited, "a", encoding="utf-8") as f:
                f.write("\n# edited\n")
        # From the copy's directory, so `python -m pipeline` imports (and fingerprints) the copy.
        result = subprocess.run(cli_command(*args), cwd=project, env=cli_env(), capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        summary = summarize(str(output / "metadata.sqlite"), PipelineConfig().pipeline_name)
        return {c.name for c in summary.components if c.state == "ran" and "resolver" not in c.name}

    assert "Transform" in run_after_editing()
    # The model, not the preprocessing: Trainer and what consumes its model re-run, Transform is cached.
    assert run_after_editing("models/model.py") == {"Trainer", "Evaluator", "ServingCheck",
                                                    "EdgeExport", "Pusher"}
    # A component's own module: that component alone.
    assert run_after_editing("components/drift_check.py") == {"DriftCheck"}


def test_fingerprints_follow_relative_and_deferred_imports_and_name_a_missing_module(tmp_path):
    package = tmp_path / "models"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "entry.py").write_text(
        "from . import sibling\nfrom ..helpers import util\n"
        "def later():\n    import models.deferred\n")
    for name in ("sub/sibling.py", "helpers.py", "deferred.py", "unused.py"):
        (package / name).write_text(f"# {name}\n")
    assert sorted(fingerprints.module_sources(["models.sub.entry"], str(tmp_path))) == [
        "models/__init__.py", "models/deferred.py", "models/helpers.py", "models/sub/__init__.py",
        "models/sub/entry.py", "models/sub/sibling.py"]
    with pytest.raises(ValueError, match=r"No project module models\.typo under"):
        fingerprints.code_sha256("models.typo", root=str(tmp_path))


def test_pipeline_level_settings(config):
    p = create_pipeline(config)
    assert p.enable_cache is True
    assert p.beam_pipeline_args == ["--direct_num_workers=2"]
    assert p.metadata_connection_config.sqlite.filename_uri == os.path.join(
        config.output_dir, "metadata.sqlite")
    assert p.pipeline_info.pipeline_root == os.path.join(config.output_dir, "pipeline_root")


def test_every_beam_component_gets_the_beam_arguments(tmp_path):
    args = ("--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=EXTERNAL")
    p = create_pipeline(PipelineConfig(output_dir=str(tmp_path), beam_args=args))
    beam_components = {c.id: c.executor_spec.beam_pipeline_args for c in p.components
                       if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec)}
    assert sorted(beam_components) == ["CsvExampleGen", "Evaluator", "StatisticsGen", "Transform"]
    assert all(a == list(args) for a in beam_components.values())


def test_no_cache_flag(tmp_path):
    assert create_pipeline(PipelineConfig(output_dir=str(tmp_path), enable_cache=False)).enable_cache \
        is False


def test_evaluator_gates_auc_on_the_overall_slice_and_slices_by_the_feature_definitions(components):
    eval_config = tfma.EvalConfig()
    from google.protobuf import json_format
    json_format.Parse(components["Evaluator"].exec_properties["eval_config"], eval_config)
    slices = [list(s.feature_keys) for s in eval_config.slicing_specs]
    assert slices == [[]] + [[k] for k in TAXI_SPEC.slices]
    metrics = {metric_class(m): m for m in eval_config.metrics_specs[0].metrics}
    assert {"AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall", "HistogramCalibration",
            "ExampleCount"} <= set(metrics)
    (gate,) = metrics["AUC"].per_slice_thresholds
    assert [list(s.feature_keys) for s in gate.slicing_specs] == [[]]
    assert gate.threshold.value_threshold.lower_bound.value == pytest.approx(0.77)
    assert gate.threshold.change_threshold.absolute.value < 0
    assert eval_config.model_specs[0].label_key == TAXI_SPEC.transformed_label
    # A sample of a large eval split (components/capped_evaluator.py).
    assert components["Evaluator"].exec_properties["max_examples"] == 100_000


SERVING_CHECK = (r"serving_check_examples must be positive, serving_check_tolerance at least 0 and "
                 r"serving_check_max_p50_ms above 0")


@pytest.mark.parametrize("kwargs, message", [
    ({"train_steps": -1}, r"train_steps must be at least 0 \(0: no cap\), got -1"),
    ({"eval_steps": 0}, r"eval_steps must be positive, got 0"),
    ({"batch_size": -1}, r"Training setting batch_size: -1 must be a positive integer"),
    ({"max_epochs": 0}, r"Training setting max_epochs: 0 must be a positive integer"),
    ({"gate_threshold": 1.5}, r"a threshold on auc must be in \[0, 1\], got 1\.5"),
    ({"span_window": 0}, r"span_window must be at least 1, got 0"),
    ({"max_eval_examples": -1}, r"max_eval_examples must be at least 0 \(0: no cap\), got -1"),
    ({"beam_batch_size": -1}, r"beam_batch_size must be at least 0 \(0: adaptive\), got -1"),
    ({"distribution_strategy": "tpu"}, r"distribution_strategy must be one of .*got 'tpu'"),
    ({"serving_check_tolerance": -1e-6}, SERVING_CHECK),
    ({"serving_check_max_p50_ms": 0}, SERVING_CHECK), ({"serving_check_examples": 0}, SERVING_CHECK)])
def test_invalid_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**kwargs)


def test_pusher_renames_each_version_into_place(components):
    from components import atomic_pusher  # pylint: disable=import-outside-toplevel

    assert components["Pusher"].executor_spec.executor_class is atomic_pusher.Executor
