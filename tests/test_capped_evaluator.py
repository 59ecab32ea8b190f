"""The Evaluator's cap: a sample fixed by each row's hash, scored by TFX's real Evaluator executor."""
import glob
import hashlib
import json
import os
import shutil

import ml_metadata as mlmd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from ml_metadata.proto import metadata_store_pb2
from google.protobuf import json_format
from rich.console import Console
from tfx.components.evaluator import executor as evaluator_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import arrow_example_gen, capped_evaluator
from components.batch_size import tfxio_batch_size
from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config
from pipeline.run_summary import RunSummary
from pipeline.summary_view import render
from tests.conftest import EXECUTOR_BEAM_ARGS, TAXI_SPEC, close, write_csv
from tests.test_arrow_example_gen import ONE_INPUT, records, run

PIPELINE_SPLITS = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
    example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))


@pytest.fixture(scope="module")
def examples(tmp_path_factory, taxi_rows):
    """ExampleGen's artifact of 1,500 taxi rows in three files (~300 eval rows in three shards)."""
    fieldnames, rows = taxi_rows
    root = tmp_path_factory.mktemp("capped")
    for i in range(3):
        write_csv(str(root / "data" / f"{i}.csv"), fieldnames, rows[i * 500:(i + 1) * 500])
    arrow_example_gen.SHARD_INPUT_BYTES, shard_bytes = 60_000, arrow_example_gen.SHARD_INPUT_BYTES
    try:
        return run(arrow_example_gen.Executor, str(root / "data"), str(root / "examples"),
                   ONE_INPUT, PIPELINE_SPLITS)
    finally:
        arrow_example_gen.SHARD_INPUT_BYTES = shard_bytes


def _through_metadata(artifact, tmp_path):
    """The artifact as executors get it in a run: stored in ML Metadata and read back."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    store = mlmd.MetadataStore(config)
    mlmd_artifact = metadata_store_pb2.Artifact()
    mlmd_artifact.CopyFrom(artifact.mlmd_artifact)
    mlmd_artifact.type_id = store.put_artifact_type(artifact.artifact_type)
    (artifact_id,) = store.put_artifacts([mlmd_artifact])
    stored = standard_artifacts.Examples()
    stored.set_mlmd_artifact(store.get_artifacts_by_id([artifact_id])[0])
    return stored


def _sample(split_uri):
    return [r for path in sorted(glob.glob(os.path.join(split_uri, "*")))
            for r in tf.data.TFRecordDataset(path, "GZIP" if path.endswith(".gz") else "")
            .as_numpy_iterator()]


def test_the_sample_is_the_rows_of_smallest_hash_whatever_the_files(examples, tmp_path):
    eval_rows = records(examples, "eval")
    assert len(glob.glob(os.path.join(examples.uri, "Split-eval", "*"))) > 1
    written, total = capped_evaluator.sample_split(os.path.join(examples.uri, "Split-eval"),
                                                   str(tmp_path / "sample"), 100)
    assert (written, total) == (100, len(eval_rows))
    sample = _sample(str(tmp_path / "sample"))
    assert sorted(sample) == sorted(sorted(eval_rows, key=lambda r: hashlib.sha256(r).digest())[:100])
    # The same rows in one file, in another order: the same sample.
    (tmp_path / "one").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "one" / "all.gz"), "GZIP") as writer:
        for record in reversed(eval_rows):
            writer.write(record)
    capped_evaluator.sample_split(str(tmp_path / "one"), str(tmp_path / "again"), 100)
    assert sorted(_sample(str(tmp_path / "again"))) == sorted(sample)


def test_the_sample_keeps_the_split_order_when_pruned_in_small_batches(examples, tmp_path, monkeypatch):
    """Batches far smaller than the cap: the kept rows are pruned many times on the way."""
    monkeypatch.setattr(capped_evaluator, "_READ_BATCH", 7)
    split = os.path.join(examples.uri, "Split-eval")
    eval_rows = _sample(split)  # in the split's order: its files sorted, each file's rows in turn
    for cap in (1, 10, 37):
        assert capped_evaluator.sample_split(split, str(tmp_path / str(cap)), cap) == (
            cap, len(eval_rows))
        first = sorted(range(len(eval_rows)),
                       key=lambda i: (hashlib.sha256(eval_rows[i]).digest()[:8], i))[:cap]
        assert _sample(str(tmp_path / str(cap))) == [eval_rows[i] for i in sorted(first)]


def test_a_split_under_the_cap_is_counted_and_not_copied(examples, tmp_path):
    eval_rows = records(examples, "eval")
    assert capped_evaluator.sample_split(os.path.join(examples.uri, "Split-eval"),
                                         str(tmp_path / "sample"), len(eval_rows)) == (
        len(eval_rows), len(eval_rows))
    assert not os.path.exists(tmp_path / "sample")


def taxi_schema_artifact(uri):
    """The taxi spec's curated schema, alone in its artifact's directory `uri` as TFX wants it."""
    artifact = standard_artifacts.Schema()
    artifact.uri = uri
    os.makedirs(uri, exist_ok=True)
    shutil.copy(TAXI_SPEC.schema_path, uri)
    return artifact


def _evaluate(executor_class, examples, saved_model_dir, tmp_path, baseline=False, model_type=None,
              curated_schema=False, **properties):
    """Runs the Evaluator executor on the examples and the SavedModel (also as the baseline), with
    the pipeline's eval config (its model type replaced by `model_type`, "" for none), and the
    taxi's curated schema if `curated_schema`."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    os.makedirs(model.uri, exist_ok=True)
    if not os.path.exists(os.path.join(model.uri, "Format-Serving")):
        os.symlink(saved_model_dir, os.path.join(model.uri, "Format-Serving"))
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    executor = executor_class(executor_class.Context(
        beam_pipeline_args=list(EXECUTOR_BEAM_ARGS), tmp_dir=str(tmp_path / "tmp"), unique_id="1"))
    inputs = {"examples": [_through_metadata(examples, tmp_path)], "model": [model]}
    if baseline:
        inputs["baseline_model"] = [model]
    if curated_schema:
        inputs[capped_evaluator.CURATED_SCHEMA_KEY] = [taxi_schema_artifact(str(tmp_path / "schema"))]
    config = eval_config(PipelineConfig(output_dir=str(tmp_path / "out")))
    if model_type is not None:
        config.model_specs[0].model_type = model_type
    executor.Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]},
                {"eval_config": proto_utils.proto_to_json(config),
                 "example_splits": "null", **properties})
    return evaluation


def test_the_evaluator_scores_the_sample_and_records_it(examples, saved_model_dir, tmp_path):
    """TFX's Evaluator executor on the capped sample: its metrics count the cap's rows, and the
    evaluation artifact says how many of how many."""
    evaluation = _evaluate(capped_evaluator.Executor, examples, saved_model_dir, tmp_path,
                           max_examples=120, code_sha256="x")
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    overall = dict(tfma.load_eval_result(evaluation.uri).slicing_metrics)[()][""][""]
    eval_rows = len(records(examples, "eval"))
    assert eval_rows > 200 and overall["example_count"]["doubleValue"] == 120
    assert evaluation.get_int_custom_property("evaluated_examples") == 120
    assert evaluation.get_int_custom_property("split_examples") == eval_rows
    assert not glob.glob(str(tmp_path / "tmp" / "1" / "*"))  # the sample is removed


def _results(evaluation_uri):
    """Every metric, plot and validation result the evaluation holds, as dicts."""
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    return {name: sorted((json_format.MessageToDict(r) for r in load(evaluation_uri)), key=_slice)
            for name, load in (("metrics", tfma.load_metrics), ("plots", tfma.load_plots),
                               ("validation", lambda uri: [tfma.load_validation_result(uri)]))}


def _slice(result):
    return json.dumps([result.get("sliceKey"), result.get("crossSliceKey")], sort_keys=True)


def test_the_evaluators_extractors_change_no_result(examples, saved_model_dir, tmp_path):
    """The batches cut to what the metrics and slices read (components/tfma_extractors.py), only
    those features decoded, and the models loaded as plain SavedModels: the same metrics, plots and
    validation as TFX's own Evaluator given no model type (TFMA then finds the Keras model and
    loads it as one), with a baseline (each model's transformed features apart). Both read the
    same fixed batches (the model's outputs can move in the last bit with the batch's size); float
    sums may be added in another order."""
    ours = _results(_evaluate(capped_evaluator.Executor, examples, saved_model_dir,
                              tmp_path / "ours", baseline=True, curated_schema=True,
                              batch_size=64).uri)
    with tfxio_batch_size(64):
        tfxs = _results(_evaluate(evaluator_executor.Executor, examples, saved_model_dir,
                                  tmp_path / "tfx", baseline=True, model_type="").uri)
    from tensorflow_model_analysis.utils import model_util  # pylint: disable=import-outside-toplevel
    assert model_util.get_model_type(None, saved_model_dir) == "tf_keras"  # what TFX's run loaded
    assert len(ours["metrics"]) > 10 and len(ours["plots"]) == len(ours["metrics"])  # the slices
    assert close(ours, tfxs, rel=1e-9)


def test_only_the_features_slices_labels_and_weights_read_are_decoded():
    schema = tfdv.load_schema_text(TAXI_SPEC.schema_path)
    config = eval_config(PipelineConfig())
    decoded = capped_evaluator.decoded_features(schema, config)
    # The label is the model's transformed one, not a raw feature.
    assert [f.name for f in decoded.feature] == [f.name for f in schema.feature
                                                 if f.name in ("payment_type", "trip_start_hour")]
    config.model_specs[0].example_weight_key = "trip_miles"
    assert {f.name for f in capped_evaluator.decoded_features(schema, config).feature} == {
        "payment_type", "trip_start_hour", "trip_miles"}
    del config.slicing_specs[1:]
    config.model_specs[0].example_weight_key = ""
    assert capped_evaluator.decoded_features(schema, config) is None  # none read: all decoded
    # A metric reading the features (a ranking metric's query): every feature decoded.
    reads_features = eval_config(PipelineConfig())
    reads_features.metrics_specs.add(query_key="company").metrics.add(
        class_name="MinLabelPosition", config='{"label_key": "tips"}')
    assert capped_evaluator.decoded_features(schema, reads_features) is None


def test_the_run_summary_states_the_sample(tmp_path):
    console = Console(record=True, width=200)
    summary = RunSummary(run_id="r", components=[],
                         metrics={"Overall": {"example_count": 100_000.0, "auc": 0.95}},
                         evaluation_examples={"evaluated": 100_000, "split_examples": 300_123})
    render(summary, console)
    assert "Evaluated a sample: 100,000 of the eval split's 300,123 examples" in console.export_text()
    summary.evaluation_examples = {"evaluated": 3_000, "split_examples": 3_000}
    console = Console(record=True, width=200)
    render(summary, console)
    assert "sample" not in console.export_text()
    assert json.loads(json.dumps(summary.to_record()))["evaluation_examples"]["evaluated"] == 3_000
