"""The serving check: requests built from real examples, the verdict, and real servers on real models.

The fast tests cover request building, the verdict and the skip; the slow ones serve real SavedModels
with `python -m pipeline serve` on a free 127.0.0.1 port: the same model passes, a different model
(the serving runtime returning other numbers) and an impossible latency limit are blocked, and a model
the server cannot load is blocked with the server's output in the reason.
"""
import base64
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.types import standard_artifacts

from components.serving_check import (EXAMPLES_SIGNATURE, RAW_SIGNATURE, SKIPPED_REASON,
                                      CheckResult, check_model, eval_examples,
                                      in_process_predictions, probe, raw_input_spec, record,
                                      run_check, serving_requests, verdict)
from components.serving_runtime import LocalServer, ServingRuntimeError
from models.missing_values import MISSING_INT
from models.raw_examples import column_types, to_tf_examples
from pipeline.run_summary import check_figures, open_store
from tests.conftest import TAXI_SPEC

MODEL_NAME = "big_tipper"


@pytest.fixture(scope="module")
def eval_rows(taxi_rows):
    return taxi_rows[1][3::50][:40]


@pytest.fixture(scope="module")
def serialized(eval_rows):
    """tf.Examples as ExampleGen writes them: every schema column, the label source included."""
    return to_tf_examples(eval_rows, column_types(TAXI_SPEC.schema_path))


@pytest.fixture(scope="module")
def spec():
    """The raw signature's input spec, from the schema (what the exported signature declares)."""
    types = column_types(TAXI_SPEC.schema_path)
    dtypes = {schema_pb2.INT: tf.int64, schema_pb2.FLOAT: tf.float32, schema_pb2.BYTES: tf.string}
    return {c: tf.TensorSpec([None], dtypes[types[c]], name=c) for c in TAXI_SPEC.serving_columns}


def _examples_artifact(directory, serialized_examples):
    """An Examples artifact laid out as CsvExampleGen writes it: gzipped TFRecords per split."""
    examples = standard_artifacts.Examples()
    examples.uri = str(directory)
    examples.split_names = '["train", "eval"]'
    for split in ("train", "eval"):
        os.makedirs(directory / f"Split-{split}")
        with tf.io.TFRecordWriter(str(directory / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for record in serialized_examples:
                writer.write(record)
    return examples


# --- Requests, verdict and skip: fast, no server ---------------------------------------------------

def test_requests_carry_the_serving_columns_with_missing_markers(serialized, eval_rows, spec):
    raw, b64 = serving_requests(serialized, spec)
    assert len(raw) == len(b64) == len(eval_rows)
    for instance, row in zip(raw, eval_rows):
        assert sorted(instance) == sorted(TAXI_SPEC.serving_columns)
        assert instance["payment_type"] == row["payment_type"]
        assert instance["company"] == row["company"]  # "" when missing
        assert instance["trip_start_hour"] == int(row["trip_start_hour"])
        if row["dropoff_latitude"]:
            assert instance["dropoff_latitude"] == pytest.approx(float(row["dropoff_latitude"]))
        else:
            assert math.isnan(instance["dropoff_latitude"])
        area = row["dropoff_community_area"]
        assert instance["dropoff_community_area"] == (int(area) if area else MISSING_INT)
    # The sample exercises the string and integer missing markers.
    assert any(row["company"] == "" for row in eval_rows)
    assert any(row["dropoff_community_area"] == "" for row in eval_rows)
    # The base64 tf.Examples hold the same values, without the label's source (tips).
    example = tf.train.Example.FromString(base64.b64decode(b64[0]["b64"]))
    assert "tips" not in example.features.feature
    assert example.features.feature["payment_type"].bytes_list.value == [
        eval_rows[0]["payment_type"].encode()]


def test_eval_examples_reads_the_eval_split(tmp_path, serialized):
    examples = _examples_artifact(tmp_path / "examples", serialized)
    assert eval_examples(examples, 5) == serialized[:5]
    assert eval_examples(examples, 1000) == serialized
    shutil.rmtree(tmp_path / "examples" / "Split-eval")
    os.makedirs(tmp_path / "examples" / "Split-eval")
    with pytest.raises(ValueError, match="No eval-split examples in .*Split-eval"):
        eval_examples(examples, 5)


def _expected():
    return {RAW_SIGNATURE: np.array([0.1, 0.7, 0.3], np.float32),
            EXAMPLES_SIGNATURE: np.array([0.1, 0.7, 0.3], np.float32)}


def _served(delta=0.0):
    want = _expected()
    return {k: [v.astype(np.float64) + delta, v.astype(np.float64)] for k, v in want.items()}


def test_verdict_blesses_equal_answers_within_the_latency_limit():
    result = verdict(_served(), _expected(), [0.002, 0.003, 0.004], tolerance=1e-6,
                     max_p50_latency_ms=10)
    assert result.blessed and result.reason == ""
    assert result.examples == 3 and result.max_abs_diff == 0.0
    assert result.p50_latency_ms == pytest.approx(3.0)


def test_verdict_blocks_different_answers_and_names_the_difference():
    result = verdict(_served(delta=0.01), _expected(), [0.002], tolerance=1e-3, max_p50_latency_ms=10)
    assert not result.blessed
    assert result.max_abs_diff == pytest.approx(0.01)
    assert "differ from the model's in-process predictions by up to 0.01 (tolerance 0.001)" in \
        result.reason


def test_verdict_blocks_nan_answers_and_wrong_counts():
    served = _served()
    served[RAW_SIGNATURE][0][1] = np.nan
    assert not verdict(served, _expected(), [0.001], 1.0, 10).blessed
    served = _served()
    served[EXAMPLES_SIGNATURE][1] = served[EXAMPLES_SIGNATURE][1][:2]
    result = verdict(served, _expected(), [0.001], 1.0, 10)
    assert not result.blessed and "serving_default returned 2 predictions for 3 examples" in \
        result.reason


def test_verdict_blocks_slow_serving_and_names_the_limit():
    result = verdict(_served(), _expected(), [0.2, 0.3, 0.4], tolerance=1e-6, max_p50_latency_ms=50)
    assert not result.blessed
    assert "p50 latency of a one-example REST request is 300.00 ms, over the limit of 50 ms" in \
        result.reason


def test_an_unblessed_model_is_skipped_without_serving_it(tmp_path, serialized):
    """Not blessed by the Evaluator: no server is started (the model path does not even exist)."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "no_such_model")
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property("blessed", 0)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    result = run_check(model, _examples_artifact(tmp_path / "examples", serialized), model_blessing,
                       blessing, MODEL_NAME, 10, 1e-5, 500.0, 60.0)
    assert not result.blessed and result.reason == SKIPPED_REASON
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("reason") == SKIPPED_REASON
    assert os.listdir(blessing.uri) == ["INFRA_NOT_BLESSED"]


def _through_the_store(blessing, path):
    """The blessing as written to, and read back from, a real ML Metadata SQLite store."""
    store = open_store(str(path), read_only=False)
    artifact = blessing.mlmd_artifact
    artifact.type_id = store.put_artifact_type(blessing.artifact_type)
    (artifact_id,) = store.put_artifacts([artifact])
    return open_store(str(path)).get_artifacts_by_id([artifact_id])[0]


def test_a_tiny_difference_reads_back_from_the_metadata_store_as_measured(tmp_path):
    """SQLite keeps 6 decimals of a double: the difference is stored as text, so 1.5e-7 stays
    1.5e-7 in the run summary and the report; a store written before (a double) still reads."""
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    record(blessing, CheckResult(blessed=True, examples=100, max_abs_diff=1.5e-7,
                                 p50_latency_ms=3.25, p99_latency_ms=8.5), 1e-5, 500.0)
    figures = check_figures(_through_the_store(blessing, tmp_path / "metadata.sqlite"))
    assert figures["max_abs_diff"] == 1.5e-7
    assert figures["blessed"] == 1 and figures["examples"] == 100
    assert figures["p50_latency_ms"] == 3.25 and figures["tolerance"] == 1e-5
    old = standard_artifacts.InfraBlessing()
    old.set_float_custom_property("max_abs_diff", 0.25)
    assert check_figures(_through_the_store(old, tmp_path / "old.sqlite"))["max_abs_diff"] == 0.25


# --- Real models on a real server: slow ------------------------------------------------------------

@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, saved_model_dir, taxi_rows):
    """`candidate`: conftest's real SavedModel; `other`: the same export with other weights."""
    from tests.serving_helpers import build_saved_model  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("serving_check_models")
    os.symlink(saved_model_dir, root / "candidate")
    build_saved_model(str(root / "other"), taxi_rows[1][:300], seed=1)
    return root


@pytest.mark.slow
def test_the_served_model_passes_and_its_figures_are_recorded(models_dir, tmp_path, serialized):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(models_dir / "candidate", tmp_path / "model" / "Format-Serving")
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property("blessed", 1)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    result = run_check(model, _examples_artifact(tmp_path / "examples", serialized), model_blessing,
                       blessing, MODEL_NAME, 25, 1e-5, 500.0, 120.0)
    assert result.blessed, result.reason
    assert result.examples == 25 and result.max_abs_diff <= 1e-5
    assert 0 < result.p50_latency_ms <= result.p99_latency_ms
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_float_custom_property("p50_latency_ms") == pytest.approx(result.p50_latency_ms)
    assert blessing.get_int_custom_property("examples") == 25
    assert sorted(os.listdir(blessing.uri)) == ["INFRA_BLESSED", "server.log"]


@pytest.mark.slow
def test_a_server_returning_other_numbers_is_blocked(models_dir, tmp_path, serialized):
    """The server serves another model (other weights) than the one predicting in-process."""
    candidate = tf.saved_model.load(str(models_dir / "candidate"))
    raw, b64 = serving_requests(serialized[:10], raw_input_spec(candidate))
    shutil.copytree(models_dir / "other", tmp_path / MODEL_NAME / "1")
    with LocalServer(str(tmp_path), MODEL_NAME, str(tmp_path / "server.log")) as server:
        served, latencies = probe(server, raw, b64)
    result = verdict(served, in_process_predictions(candidate, raw, b64), latencies,
                     tolerance=1e-5, max_p50_latency_ms=500.0)
    assert not result.blessed
    assert result.max_abs_diff > 1e-3
    assert "differ from the model's in-process predictions" in result.reason


@pytest.mark.slow
def test_an_impossible_latency_limit_blocks(models_dir, serialized):
    result = check_model(str(models_dir / "candidate"), serialized[:5], MODEL_NAME, tolerance=1e-5,
                         max_p50_latency_ms=0.001, startup_timeout_s=120.0)
    assert not result.blessed and result.max_abs_diff <= 1e-5  # right answers, too slow
    assert "over the limit of 0.001 ms" in result.reason


@pytest.mark.slow
def test_a_model_the_server_cannot_load_is_reported_with_its_output(models_dir, tmp_path):
    shutil.copytree(models_dir / "candidate", tmp_path / MODEL_NAME / "1")
    (tmp_path / MODEL_NAME / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(ServingRuntimeError) as failure:
        with LocalServer(str(tmp_path), MODEL_NAME, str(tmp_path / "server.log"),
                         startup_timeout_s=60.0):
            pass
    message = str(failure.value)
    assert MODEL_NAME in message and "Last lines of its output" in message
