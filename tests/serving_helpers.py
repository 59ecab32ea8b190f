"""Real pieces for the serving tests: a SavedModel built the way the Trainer exports it, a
`python -m pipeline serve` subprocess on free 127.0.0.1 ports, concurrent requests and its metrics."""
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import threading
import time

import httpx
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from prometheus_client.parser import text_string_to_metric_families
from tfx.utils import io_utils

from components.serving_runtime import LocalServer
from models import preprocessing, raw_examples
from models.model import build_model
from models.signatures import make_signatures
from tests.conftest import TAXI_SPEC, cli_env

MODEL_NAME = TAXI_SPEC.label.name


def _instances(rows, schema):
    """CSV rows as tf.Transform instance dicts: one-element lists, empty lists for empty cells."""
    types = {f.name: f.type for f in schema.feature}
    convert = {schema_pb2.INT: lambda v: int(float(v)), schema_pb2.FLOAT: float,
               schema_pb2.BYTES: lambda v: v.encode()}
    return [{name: ([convert[types[name]](row[name])] if row[name] != "" else []) for name in types}
            for row in rows]


def build_saved_model(path, rows, seed=0, spec=TAXI_SPEC):
    """The pipeline's export without training: tf.Transform (real tft_beam) analyses `rows`, the model
    is models.model.build_model with seeded random weights, saved with models.signatures."""
    schema = io_utils.SchemaReader().read(spec.schema_path)
    work = tempfile.mkdtemp(prefix="serving_model_")
    transform_dir = os.path.join(work, "transform")
    with tft_beam.Context(temp_dir=os.path.join(work, "tmp")):
        transform_fn = ((_instances(rows, schema), dataset_metadata.DatasetMetadata(schema))
                        | tft_beam.AnalyzeDataset(lambda inputs: preprocessing.transform(inputs, spec)))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    raw_metadata = dataset_metadata.DatasetMetadata(schema)
    metadata_io.write_metadata(raw_metadata, os.path.join(transform_dir,
                                                          tft.TFTransformOutput.RAW_METADATA_DIR))
    tf.keras.utils.set_random_seed(seed)
    model = build_model(spec)
    model.save(path, save_format="tf",
               signatures=make_signatures(model, tft.TFTransformOutput(transform_dir), spec))
    shutil.rmtree(work, ignore_errors=True)
    return path


def in_process_predictions(model, rows):
    """What a loaded SavedModel itself answers on serving_default for CSV rows (empty cells absent)."""
    types = raw_examples.column_types(TAXI_SPEC.schema_path, "SERVING")
    examples = tf.constant(raw_examples.to_tf_examples(rows, types))
    return model.signatures["serving_default"](examples=examples)["probability"].numpy()


@contextlib.contextmanager
def serving(serving_dir, *extra_args, grpc=True):
    """`python -m pipeline serve` as a user starts it (the project sets Keras 2 itself), REST and gRPC on
    free ports; yields the LocalServer once MODEL_NAME is AVAILABLE and checks it exits cleanly."""
    with tempfile.TemporaryDirectory(prefix="serve_log_") as log_dir:
        server = LocalServer(str(serving_dir), MODEL_NAME, os.path.join(log_dir, "server.log"),
                             startup_timeout_s=180, grpc=grpc, extra_args=extra_args,
                             env=cli_env()).start()
        try:
            yield server
        finally:
            assert server.stop() == 0, server.log()


def send_together(url, path, bodies):
    """POSTs every body at once, one connected client each, released together by a barrier.

    A new client per request spends milliseconds of GIL-held set-up each, which spreads the requests
    out across several batch windows on a busy 2-core machine.
    """
    clients = [httpx.Client(base_url=url, timeout=60) for _ in bodies]
    barrier = threading.Barrier(len(bodies))

    def send(i):
        barrier.wait()
        return clients[i].post(path, content=bodies[i])

    try:
        for each in clients:
            each.get("/monitoring/prometheus/metrics").raise_for_status()  # connect before the barrier
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(send, range(len(bodies))))
    finally:
        for each in clients:
            each.close()


def metric(url, sample_name, **labels):
    """The sum of the server's Prometheus samples named `sample_name` whose labels include `labels`."""
    text = httpx.get(f"{url}/monitoring/prometheus/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == sample_name and labels.items() <= sample.labels.items())


def wait_for(condition, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
