"""Real pieces for the serving tests: a SavedModel built the way the Trainer exports it, and a
`python -m pipeline serve` subprocess on free 127.0.0.1 ports."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from models import preprocessing
from models.model import build_model
from models.signatures import make_signatures
from tests.conftest import TAXI_SPEC

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m pipeline serve` in a subprocess, as a user (or the serving check) starts it."""

    def __init__(self, serving_dir, *extra_args, log_path=None):
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path = log_path or os.path.join(tempfile.mkdtemp(prefix="serve_log_"), "server.log")
        self._log = open(self.log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        env = dict(os.environ)
        env.pop("TF_USE_LEGACY_KERAS", None)  # the project must set it itself
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "pipeline", "serve", "--serving-dir", str(serving_dir),
             "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port), *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self):
        with open(self.log_path, encoding="utf-8") as f:
            return f.read()

    def wait_until_available(self, model_name=MODEL_NAME, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                status = httpx.get(f"{self.url}/v1/models/{model_name}", timeout=2).json()
                if any(s["state"] == "AVAILABLE" for s in status.get("model_version_status", [])):
                    return status
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{model_name} not AVAILABLE after {timeout} s:\n{self.log()}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_for(condition, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
