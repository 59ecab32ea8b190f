"""create_pipeline: the components, their order and wiring, and what the config controls."""
import os

import pytest
import tensorflow_model_analysis as tfma

from models import features
from tfx.dsl.components.base import executor_spec

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

EXPECTED_ORDER = ["CsvExampleGen", "StatisticsGen", "ImportCuratedSchema", "ExampleValidator",
                  "DataValidationGate", "previous_data_statistics_resolver", "DriftCheck", "Transform", "Trainer", "latest_blessed_model_resolver",
                  "Evaluator", "ServingCheck", "Pusher"]


@pytest.fixture
def config(tmp_path):
    return PipelineConfig(data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out"),
                          serving_dir=str(tmp_path / "serving"), train_steps=123, eval_steps=7,
                          auc_floor=0.77, beam_args=("--direct_num_workers=2",))


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
    assert _producer(c["Pusher"].inputs["infra_blessing"]) == "ServingCheck"
    assert _producer(c["Pusher"].inputs["model"]) == "Trainer"


def test_resolver_sees_the_candidate_so_it_can_exclude_it(components):
    resolver = components["latest_blessed_model_resolver"]
    assert {n.id for n in resolver.upstream_nodes} == {"Trainer"}
    assert set(resolver.outputs) == {"candidate", "model", "model_blessing"}


def test_config_reaches_the_components(config, components):
    c = components
    assert c["CsvExampleGen"].exec_properties["input_base"] == config.data_root
    assert c["ImportCuratedSchema"].exec_properties["schema_file"].endswith("schemas/schema.pbtxt")
    assert os.path.isfile(c["ImportCuratedSchema"].exec_properties["schema_file"])
    assert '"num_steps": 123' in c["Trainer"].exec_properties["train_args"]
    assert c["Trainer"].exec_properties["train_steps"] == 123  # what the Trainer's executor uses
    assert '"num_steps": 7' in c["Trainer"].exec_properties["eval_args"]
    assert '"batch_size": 128' in c["Trainer"].exec_properties["custom_config"]
    assert '"models_sha256"' in c["Trainer"].exec_properties["custom_config"]
    assert '"models_sha256"' in c["Transform"].exec_properties["custom_config"]
    assert c["ServingCheck"].exec_properties["model_name"] == config.model_name
    assert c["ServingCheck"].exec_properties["tolerance"] == config.serving_check_tolerance
    assert c["ServingCheck"].exec_properties["max_p50_latency_ms"] == config.serving_check_max_p50_ms
    push = c["Pusher"].exec_properties["push_destination"]
    assert os.path.join(config.serving_dir, config.model_name) in push


def test_editing_the_schema_or_model_code_changes_the_cache_keys(tmp_path):
    schema = tmp_path / "schema.pbtxt"
    schema.write_text(open(PipelineConfig().schema_path).read())
    config = PipelineConfig(output_dir=str(tmp_path / "out"), schema_path=str(schema))
    before = {c.id: c.exec_properties for c in create_pipeline(config).components}
    schema.write_text(schema.read_text() + "\n# edited\n")
    after = {c.id: c.exec_properties for c in create_pipeline(config).components}
    assert before["ImportCuratedSchema"]["schema_sha256"] != after["ImportCuratedSchema"]["schema_sha256"]
    assert before["Trainer"]["custom_config"] == after["Trainer"]["custom_config"]


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
    assert slices == [[]] + [[k] for k in features.SLICE_FEATURES]
    metrics = {m.class_name: m for m in eval_config.metrics_specs[0].metrics}
    assert {"AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall", "Calibration",
            "ExampleCount"} <= set(metrics)
    (gate,) = metrics["AUC"].per_slice_thresholds
    assert [list(s.feature_keys) for s in gate.slicing_specs] == [[]]
    assert gate.threshold.value_threshold.lower_bound.value == pytest.approx(0.77)
    assert gate.threshold.change_threshold.absolute.value < 0
    assert eval_config.model_specs[0].label_key == features.TRANSFORMED_LABEL_KEY


@pytest.mark.parametrize("kwargs", [{"train_steps": 0}, {"batch_size": -1}, {"auc_floor": 1.5},
                                    {"serving_check_tolerance": -1e-6},
                                    {"serving_check_max_p50_ms": 0}, {"serving_check_examples": 0}])
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        PipelineConfig(**kwargs)


def test_pusher_renames_each_version_into_place(components):
    from components import atomic_pusher  # pylint: disable=import-outside-toplevel

    assert components["Pusher"].executor_spec.executor_class is atomic_pusher.Executor
