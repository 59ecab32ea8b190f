"""The server's batching flags on a real server and a real SavedModel: `--no-enable-batching` (one model
call per request), `--max-batch-size` (no model call over it under concurrent load), and one bad request
in a batch failing alone while the requests batched with it are answered. The model calls are counted
from the server's own Prometheus metrics."""
import base64
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from pipeline.serving import client
from tests.serving_helpers import MODEL_NAME, in_process_predictions, metric, send_together, serving
from tests.conftest import TAXI_SPEC

TYPES = client.serving_column_types(TAXI_SPEC)

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
TOLERANCE = 1e-6
MAX_BATCH_SIZE = 4
# Long enough that concurrent requests reliably meet in one batch on a loaded 2-core machine.
BATCH_TIMEOUT_MS = "100"


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory, saved_model_dir):
    root = tmp_path_factory.mktemp("serving")
    shutil.copytree(saved_model_dir, root / MODEL_NAME / "1")
    return root


@pytest.fixture(scope="module")
def rows(taxi_rows):
    return taxi_rows[1][2000:2024]


@pytest.fixture(scope="module")
def expected(saved_model_dir, rows):
    return in_process_predictions(tf.saved_model.load(saved_model_dir), rows)


@pytest.fixture(scope="module")
def small_batches(serving_dir):
    with serving(serving_dir, "--max-batch-size", str(MAX_BATCH_SIZE), "--batch-timeout-ms",
                 BATCH_TIMEOUT_MS, grpc=False) as server:
        yield server


def one_row_bodies(rows):
    return [json.dumps(client.raw_request([row], TYPES)) for row in rows]


def predictions(responses):
    for response in responses:
        assert response.status_code == 200, response.text
    return [response.json()["predictions"][0] for response in responses]


def counts(server, signature):
    """Model calls, examples, and calls that served at most 1 / 2 / MAX_BATCH_SIZE requests."""
    labels = {"signature": signature}
    return {"calls": metric(server.url, "serving_model_calls_total", **labels),
            "examples": metric(server.url, "serving_examples_total", **labels),
            **{f"calls_le_{n}": metric(server.url, "serving_batch_requests_bucket", le=f"{n:.1f}",
                                       **labels) for n in (1, 2, MAX_BATCH_SIZE)}}


def delta(after, before):
    return {k: after[k] - before[k] for k in after}


def test_without_batching_every_request_is_its_own_model_call(serving_dir, rows, expected):
    # The same batch timeout that merges these requests when batching is on.
    with serving(serving_dir, "--no-enable-batching", "--batch-timeout-ms", BATCH_TIMEOUT_MS,
                 grpc=False) as server:
        before = counts(server, "serving_raw")
        responses = send_together(server.url, PREDICT, one_row_bodies(rows[:16]))
        np.testing.assert_allclose(predictions(responses), expected[:16], atol=TOLERANCE)
        served = delta(counts(server, "serving_raw"), before)
    assert served["examples"] == 16
    assert served["calls"] == 16 and served["calls_le_1"] == 16, served


def test_no_model_call_exceeds_the_max_batch_size(small_batches, rows, expected):
    before = counts(small_batches, "serving_raw")
    responses = send_together(small_batches.url, PREDICT, one_row_bodies(rows))
    np.testing.assert_allclose(predictions(responses), expected, atol=TOLERANCE)
    served = delta(counts(small_batches, "serving_raw"), before)
    # One row per request: a call's requests are its examples.
    assert served["examples"] == len(rows)
    assert served[f"calls_le_{MAX_BATCH_SIZE}"] == served["calls"], f"a call over {MAX_BATCH_SIZE}: {served}"
    # Requests were merged (beyond two), so the limit, not a lack of concurrency, capped the batches.
    assert served["calls_le_2"] < served["calls"] < len(rows), served


def test_a_bad_request_in_a_batch_fails_alone(small_batches, rows, expected):
    good = [json.dumps({"instances": [instance]})
            for instance in client.b64_request(rows[:MAX_BATCH_SIZE * 2 - 1], TYPES)["instances"]]
    garbage = base64.b64encode(b"\x00\x01 not a tf.Example").decode()
    bodies = good[:3] + [json.dumps({"instances": [{"b64": garbage}]})] + good[3:]
    before = counts(small_batches, "serving_default")
    responses = send_together(small_batches.url, PREDICT, bodies)
    served = delta(counts(small_batches, "serving_default"), before)

    bad = responses.pop(3)
    assert bad.status_code == 400, bad.text
    assert "Could not parse example" in bad.json()["error"], bad.text
    np.testing.assert_allclose(predictions(responses), expected[:len(good)], atol=TOLERANCE)
    # The bad request shared a model call with others: that call failed and its requests were re-run
    # one by one, so their examples were counted twice (a lone bad request is counted once).
    assert served["examples"] > len(bodies), served
