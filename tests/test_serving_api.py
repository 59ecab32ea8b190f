"""`python -m pipeline serve` on a real SavedModel, over real REST and gRPC on 127.0.0.1: TF Serving's
request/response shapes, predictions equal to the in-process signature call, missing values, batching,
bad requests, and the `predict` client CLI. One server for the whole module."""
import base64
import json
import math
import os
import shutil
import subprocess
import sys

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from models import raw_examples
from models.missing_values import MISSING_INT
from pipeline.serving import client
from tests.serving_helpers import MODEL_NAME, in_process_predictions, metric, send_together, serving
from tests.conftest import TAXI_SPEC

TYPES = client.serving_column_types(TAXI_SPEC)

VERSION = 7
ROWS = 40
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def server(tmp_path_factory, saved_model_dir):
    serving_dir = tmp_path_factory.mktemp("serving")
    shutil.copytree(saved_model_dir, serving_dir / MODEL_NAME / str(VERSION))
    # A small request limit for the oversize test; a batch timeout so concurrent requests reliably
    # meet in one batch on a loaded 2-core machine.
    with serving(serving_dir, "--max-request-bytes", "200000", "--batch-timeout-ms", "20") as process:
        yield process


@pytest.fixture(scope="module")
def rows(taxi_rows):
    _, all_rows = taxi_rows
    return all_rows[1000:1000 + ROWS]


@pytest.fixture(scope="module")
def model(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


@pytest.fixture(scope="module")
def expected(model, rows):
    """In-process predictions of the same SavedModel (serving_default on tf.Examples)."""
    return in_process_predictions(model, rows)


def post(server, path, body, **kwargs):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.url}/v1/models/{path}", content=content, timeout=60, **kwargs)


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    return message


def json_examples(rows):
    """Rows as :classify/:regress examples: typed JSON values, empty cells left out (missing)."""
    types = TYPES
    return [{c: v for c, v in client.raw_instance(row, types).items() if row[c] != ""} for row in rows]


# --- REST: status, metadata, predict, classify, regress ------------------------------------------
def test_model_status_has_tf_servings_shape(server):
    status = httpx.get(f"{server.url}/v1/models/{MODEL_NAME}").json()
    assert status == {"model_version_status": [{"version": str(VERSION), "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    one = httpx.get(f"{server.url}/v1/models/{MODEL_NAME}/versions/{VERSION}").json()
    assert one == status


def test_metadata_lists_the_signatures_with_types(server):
    metadata = httpx.get(f"{server.url}/v1/models/{MODEL_NAME}/metadata").json()
    assert metadata["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": str(VERSION)}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_raw", "transform_features"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert default["inputs"]["examples"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert default["outputs"]["probability"]["dtype"] == "DT_FLOAT"
    raw = signatures["serving_raw"]["inputs"]
    assert raw["fare"]["dtype"] == "DT_FLOAT" and raw["payment_type"]["dtype"] == "DT_STRING"
    assert raw["trip_start_hour"]["dtype"] == "DT_INT64"


def test_raw_instances_match_in_process_predictions(server, rows, expected):
    response = post(server, f"{MODEL_NAME}:predict", client.raw_request(rows, TYPES))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == ROWS and all(isinstance(p, float) for p in predictions)
    np.testing.assert_allclose(predictions, expected, atol=TOLERANCE)


def test_b64_tf_examples_to_the_default_signature(server, rows, expected):
    response = post(server, f"{MODEL_NAME}:predict", client.b64_request(rows, TYPES))
    np.testing.assert_allclose(response.json()["predictions"], expected, atol=TOLERANCE)
    # The same examples named explicitly, and through the versioned URL.
    named = {"instances": [{"examples": b} for b in client.b64_request(rows[:3], TYPES)["instances"]]}
    response = post(server, f"{MODEL_NAME}/versions/{VERSION}:predict", named)
    np.testing.assert_allclose(response.json()["predictions"], expected[:3], atol=TOLERANCE)


def test_columnar_inputs_answer_with_outputs(server, rows, expected):
    instances = client.raw_request(rows[:5], TYPES)["instances"]
    columns = {k: [i[k] for i in instances] for k in instances[0]}
    response = post(server, f"{MODEL_NAME}:predict", {"signature_name": "serving_raw", "inputs": columns})
    assert set(response.json()) == {"outputs"}
    np.testing.assert_allclose(response.json()["outputs"], expected[:5], atol=TOLERANCE)


def test_missing_values_use_the_signatures_markers(server, rows):
    row = dict(rows[0], company="", pickup_latitude="", trip_seconds="")
    instance = client.raw_request([row], TYPES)["instances"][0]
    assert instance["company"] == "" and math.isnan(instance["pickup_latitude"])
    assert instance["trip_seconds"] == MISSING_INT
    # NaN travels as a bare NaN token, which TF Serving's parser accepts too.
    response = post(server, f"{MODEL_NAME}:predict", json.dumps(
        {"signature_name": "serving_raw", "instances": [instance]}))
    from_raw = response.json()["predictions"][0]
    from_b64 = post(server, f"{MODEL_NAME}:predict", client.b64_request([row], TYPES)).json()["predictions"][0]
    assert from_raw == pytest.approx(from_b64, abs=TOLERANCE)


def test_negative_integers_are_values_only_the_marker_or_null_is_missing(server, model, rows):
    """trip_seconds (an optional integer column): -5 is a value (clipped to 0 s by preprocessing), the
    marker and null are missing (the training mean is imputed), exactly as in a tf.Example that has
    the value or leaves the feature out."""
    with_value, without = dict(rows[0], trip_seconds="-5"), dict(rows[0], trip_seconds="")
    instance = client.raw_request([with_value], TYPES)["instances"][0]
    assert instance["trip_seconds"] == -5
    body = {"signature_name": "serving_raw", "instances": [
        instance, dict(instance, trip_seconds=MISSING_INT), dict(instance, trip_seconds=None)]}
    response = post(server, f"{MODEL_NAME}:predict", body)
    assert response.status_code == 200, response.text
    negative, marker, null = response.json()["predictions"]
    from_value, from_absent = in_process_predictions(model, [with_value, without])
    assert abs(from_value - from_absent) > 1e-4  # the two cases are told apart by the model
    assert negative == pytest.approx(from_value, abs=TOLERANCE)
    assert marker == pytest.approx(from_absent, abs=TOLERANCE)
    assert null == pytest.approx(from_absent, abs=TOLERANCE)


def test_classify_returns_class_scores_per_example(server, rows, expected):
    response = post(server, f"{MODEL_NAME}:classify", {"examples": json_examples(rows[:4])})
    results = response.json()["results"]
    assert len(results) == 4
    for result, p in zip(results, expected[:4]):
        assert [label for label, _ in result] == ["0", "1"]
        assert result[1][1] == pytest.approx(p, abs=TOLERANCE)
        assert result[0][1] == pytest.approx(1.0 - p, abs=TOLERANCE)


def test_regress_returns_one_value_per_example(server, rows, expected):
    body = {"examples": json_examples(rows[:6])}
    response = post(server, f"{MODEL_NAME}/versions/{VERSION}:regress", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 6 and all(isinstance(v, float) for v in results)
    np.testing.assert_allclose(results, expected[:6], atol=TOLERANCE)


# --- Batching (its flags: tests/test_serving_batching.py) ---------------------------------------
def test_concurrent_requests_share_model_calls(server, rows, expected):
    calls_before = metric(server.url, "serving_model_calls_total", signature="serving_raw")
    examples_before = metric(server.url, "serving_examples_total", signature="serving_raw")
    bodies = [json.dumps(client.raw_request([row], TYPES)) for row in rows[:32]]
    responses = send_together(server.url, f"/v1/models/{MODEL_NAME}:predict", bodies)
    predictions = [r.json()["predictions"][0] for r in responses]
    # Each request still gets its own row back, as the row alone would be answered: batching must not
    # move a value to another bucket (it did, through TF's vectorised log1p; models/preprocessing.py).
    np.testing.assert_allclose(predictions, expected[:32], atol=TOLERANCE)
    calls = metric(server.url, "serving_model_calls_total", signature="serving_raw") - calls_before
    examples = metric(server.url, "serving_examples_total", signature="serving_raw") - examples_before
    assert examples == 32
    assert calls < 32 / 2, f"{calls} model calls for 32 concurrent requests"


# --- Bad requests: 4xx with a message naming the problem; the server keeps serving --------------
@pytest.fixture
def one_instance(rows):
    return client.raw_request(rows[:1], TYPES)["instances"][0]


def test_malformed_json(server):
    assert_error(post(server, f"{MODEL_NAME}:predict", b'{"instances": [1, 2'), 400, "JSON Parse error")
    assert_error(post(server, f"{MODEL_NAME}:predict", b"[1, 2]"), 400, "Is not object")
    assert_error(post(server, f"{MODEL_NAME}:predict", b""), 400, "empty")


def test_unknown_model_and_version(server, one_instance):
    body = {"signature_name": "serving_raw", "instances": [one_instance]}
    assert_error(post(server, "no_such_model:predict", body), 404, "no_such_model", MODEL_NAME)
    assert_error(post(server, f"{MODEL_NAME}/versions/99:predict", body), 404, "99", str(VERSION))
    assert_error(httpx.get(f"{server.url}/v1/models/no_such_model"), 404, "no_such_model")
    assert_error(post(server, f"{MODEL_NAME}:predict", {"signature_name": "nope", "instances": [1]}),
                 400, "nope", "serving_raw")


def test_missing_extra_and_wrongly_typed_features(server, one_instance):
    def raw(instance):
        return post(server, f"{MODEL_NAME}:predict",
                    {"signature_name": "serving_raw", "instances": [instance]})

    missing = {k: v for k, v in one_instance.items() if k != "fare"}
    assert_error(raw(missing), 400, "missing fare")
    assert_error(raw(dict(one_instance, tips=1.0)), 400, "unexpected tips")
    assert_error(raw(dict(one_instance, fare="twelve")), 400, "fare", "twelve", "float")
    assert_error(raw(dict(one_instance, trip_start_hour=19.5)), 400, "trip_start_hour", "int64")
    assert_error(raw(dict(one_instance, payment_type=3)), 400, "payment_type", "string")
    assert_error(raw(dict(one_instance, fare=[1.0, 2.0])), 400, "fare", "shape")
    columns = {k: [v] for k, v in missing.items()}
    assert_error(post(server, f"{MODEL_NAME}:predict", {"signature_name": "serving_raw", "inputs": columns}),
                 400, "Missing named input: fare")
    # null is a missing value only as an item of the batch, not in place of the whole column.
    assert_error(post(server, f"{MODEL_NAME}:predict", {"signature_name": "serving_raw",
                                                         "inputs": dict(columns, fare=None)}),
                 400, "fare", "null")


def test_structural_mistakes(server, one_instance):
    both = {"signature_name": "serving_raw", "instances": [one_instance], "inputs": {}}
    assert_error(post(server, f"{MODEL_NAME}:predict", both), 400, "only one of")
    assert_error(post(server, f"{MODEL_NAME}:predict", {"instances": []}), 400, "No values")
    assert_error(post(server, f"{MODEL_NAME}:predict", {"rows": []}), 400, "'inputs' or 'instances'")
    assert_error(post(server, f"{MODEL_NAME}:predict", {"signature_name": "serving_raw",
                                                         "instances": [1.0]}), 400, "list of objects")
    assert_error(post(server, f"{MODEL_NAME}:predict", {"instances": [{"b64": "not base64!"}]}),
                 400, "base64")
    bad_example = {"instances": [{"b64": base64.b64encode(b"\x00\x01garbage").decode()}]}
    assert_error(post(server, f"{MODEL_NAME}:predict", bad_example), 400, "Could not parse example")
    assert_error(post(server, f"{MODEL_NAME}:classify", {"instances": []}), 400, "'examples'")
    assert_error(post(server, f"{MODEL_NAME}:classify", {"signature_name": "serving_raw",
                                                          "examples": [{}]}), 400, "serialized tf.Examples")
    assert_error(post(server, f"{MODEL_NAME}:explain", {}), 404, "Malformed request")


def test_oversize_payload_is_refused(server, one_instance):
    body = {"signature_name": "serving_raw", "instances": [one_instance] * 2000}
    assert_error(post(server, f"{MODEL_NAME}:predict", body), 413, "--max-request-bytes")


def test_server_still_serves_after_bad_requests(server, rows, expected):
    response = post(server, f"{MODEL_NAME}:predict", client.raw_request(rows[:2], TYPES))
    np.testing.assert_allclose(response.json()["predictions"], expected[:2], atol=TOLERANCE)
    assert server.process.poll() is None


# --- gRPC ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


def test_grpc_predict_matches_rest(channel, rows, expected):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_default"
    examples = [base64.b64decode(i["b64"]) for i in client.b64_request(rows, TYPES)["instances"]]
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    response = stub.Predict(request, timeout=60)
    assert response.model_spec.version.value == VERSION
    probabilities = tf.make_ndarray(response.outputs["probability"])
    np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)


def _tf_examples(rows):
    serialized = raw_examples.to_tf_examples(rows, TYPES)
    return [tf.train.Example.FromString(e) for e in serialized]


def test_grpc_classify_scores_both_classes(channel, rows, expected):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    request.input.example_list.examples.extend(_tf_examples(rows[:8]))
    response = stub.Classify(request, timeout=60)
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (
        VERSION, "serving_default")
    classifications = response.result.classifications
    assert len(classifications) == 8
    for classification, p in zip(classifications, expected[:8]):
        assert [c.label for c in classification.classes] == ["0", "1"]
        assert classification.classes[1].score == pytest.approx(p, abs=TOLERANCE)
        assert classification.classes[0].score == pytest.approx(1.0 - p, abs=TOLERANCE)


def test_grpc_regress_merges_the_context_into_each_example(channel, model, rows):
    """Every example without payment_type, the context holding it: answered as if each had it."""
    shared = {"payment_type": "Cash"}
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_default"
    with_context = request.input.example_list_with_context
    with_context.examples.extend(_tf_examples([dict(r, payment_type="") for r in rows[:6]]))
    with_context.context.CopyFrom(_tf_examples([shared])[0])
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, timeout=60)
    values = [r.value for r in response.result.regressions]
    assert any(r["payment_type"] != "Cash" for r in rows[:6])  # the context changes some rows
    expected = in_process_predictions(model, [dict(r, **shared) for r in rows[:6]])
    np.testing.assert_allclose(values, expected, atol=TOLERANCE)


def test_grpc_metadata_and_status(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert "serving_raw" in signature_map.signature_def
    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL_NAME
    status = status_stub.GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (VERSION, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


def test_grpc_errors_have_status_codes(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "no_such_model"
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = MODEL_NAME
    request.inputs["fare"].CopyFrom(tf.make_tensor_proto([1.0]))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "examples" in error.value.details()


# --- The client CLI -----------------------------------------------------------------------------
def _predict_cli(server, *args):
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    return subprocess.run([sys.executable, "-m", "pipeline", "predict", "--url", server.url, *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_predict_cli_on_csv_and_json(server, rows, expected, tmp_path, taxi_rows):
    from tests.conftest import write_csv  # pylint: disable=import-outside-toplevel

    fieldnames, _ = taxi_rows
    csv_path = write_csv(str(tmp_path / "rows.csv"), fieldnames, rows[:6])
    result = _predict_cli(server, csv_path, "--json")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(json.loads(result.stdout)["predictions"], expected[:6], atol=TOLERANCE)

    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps(rows[:6]))
    result = _predict_cli(server, str(json_path), "--format", "b64", "--model-version", str(VERSION))
    assert result.returncode == 0, result.stderr
    assert f"{expected[0]:.4f}" in result.stdout and "probability" in result.stdout


def test_predict_cli_explains_failures(server, tmp_path, rows):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(rows[0], fare="twelve")]))
    result = _predict_cli(server, str(bad))
    assert result.returncode == 1 and "row 1, column fare" in result.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps(rows[:1]))
    result = _predict_cli(server, str(good), "--model-name", "no_such_model")
    assert result.returncode == 1 and "404" in result.stderr and "no_such_model" in result.stderr
