"""run_fn under MultiWorkerMirroredStrategy: two real worker processes on 127.0.0.1 (TF_CONFIG)."""
import dataclasses
import json
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

import models  # noqa: F401  (Keras 2 and the custom layers)
from components.serving_runtime import free_ports
from models import trainer
from models.preprocessing import SPEC_KEY, transform
from models.raw_examples import column_types, to_tf_examples
from models.spec import TrainingSettings
from pipeline.config import PROJECT_ROOT, PipelineConfig
from tests.conftest import TAXI_SPEC
from tests.test_preprocessing import _raw_instances

TRAIN_ROWS, EVAL_ROWS = 600, 200
TRAIN_STEPS = 6
WORKERS = 2
SEED = 7


@pytest.fixture(scope="module")
def transformed_data(tmp_path_factory, taxi_rows):
    """A real transform graph and transformed TFRecords from taxi rows, as Transform writes them."""
    root = tmp_path_factory.mktemp("transformed")
    schema = io_utils.SchemaReader().read(TAXI_SPEC.schema_path)
    fieldnames, rows = taxi_rows
    raw = _raw_instances((fieldnames, rows[::7]), schema, TRAIN_ROWS + EVAL_ROWS)
    metadata = dataset_metadata.DatasetMetadata(schema)
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp"), force_tf_compat_v1=True):
        train = p | "Train" >> beam.Create(raw[:TRAIN_ROWS])
        evaluation = p | "Eval" >> beam.Create(raw[TRAIN_ROWS:])
        (train_out, out_metadata), transform_fn = (train, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform(inputs, TAXI_SPEC), output_record_batches=False)
        eval_out, _ = ((evaluation, metadata), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_graph"))
        coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
        for name, data in (("train", train_out), ("eval", eval_out)):
            _ = (data | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Write{name}" >> beam.io.WriteToTFRecord(
                     str(root / "examples" / f"Split-{name}" / "data"), file_name_suffix=".gz"))
    # Transform also records the raw schema beside the graph; the serving signatures read it.
    metadata_io.write_metadata(
        metadata, str(root / "transform_graph" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return root, rows[::7][TRAIN_ROWS + EVAL_ROWS:][:100]


@pytest.mark.slow
def test_two_workers_agree_and_only_the_chief_saves(transformed_data, tmp_path):
    root, held_out = transformed_data
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]}
    serving_dir = tmp_path / "serving_model"
    spec = dataclasses.replace(TAXI_SPEC, training=TrainingSettings(batch_size=32, max_epochs=2))
    custom_config = {SPEC_KEY: spec.to_json(), "distribution_strategy": "multi_worker_mirrored",
                     "seed": SEED}
    workers = []
    for index in range(WORKERS):
        (tmp_path / f"tmp{index}").mkdir()
        spec = {"examples_uri": str(root / "examples"),
                "train_pattern": str(root / "examples" / "Split-train" / "*"),
                "eval_pattern": str(root / "examples" / "Split-eval" / "*"),
                "train_steps": TRAIN_STEPS, "eval_steps": 2,
                "transform_output": str(root / "transform_graph"),
                # Both get the same destination, as workers on shared storage do.
                "serving_model_dir": str(serving_dir),
                "model_run_dir": str(tmp_path / "model_run"),
                "weights_out": str(tmp_path / f"weights{index}.npz"),
                "custom_config": custom_config}
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                    "task": {"type": "worker", "index": index}}),
                   TMPDIR=str(tmp_path / f"tmp{index}"), TF_USE_LEGACY_KERAS="1")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "tests.distributed_worker", json.dumps(spec)], cwd=PROJECT_ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    for index, (worker, output) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{output[-4000:]}"

    weights = [np.load(tmp_path / f"weights{index}.npz") for index in range(WORKERS)]
    assert len(weights[0].files) == len(weights[1].files) > 0
    for key in weights[0].files:
        np.testing.assert_allclose(weights[0][key], weights[1][key], rtol=1e-5, atol=1e-6)
    trained = [weights[0][f"arr_{index}"] for index in range(len(weights[0].files))]

    def initial_weights(seed):
        tf.keras.utils.set_random_seed(seed)
        return trainer.build_model(TAXI_SPEC).get_weights()

    def squared_distance(a, b):
        return sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b))

    start = initial_weights(SEED)
    assert [w.shape for w in trained] == [w.shape for w in start]
    # run_fn started from the model its seed builds (far nearer to it than to another seed's)...
    near, far = squared_distance(trained, start), squared_distance(trained, initial_weights(SEED + 1))
    assert near < far / 4, (near, far)
    # ...and training moved every weight away from there.
    for index, (after, before) in enumerate(zip(trained, start)):
        assert not np.allclose(after, before), f"weight {index} did not move in training"

    # The chief (worker 0) wrote the model; the other worker's temporary copy is gone.
    assert (serving_dir / "saved_model.pb").is_file()
    assert not any(name.startswith("non_chief_model_") for name in os.listdir(tmp_path / "tmp1"))
    model = tf.saved_model.load(str(serving_dir))
    examples = tf.constant(to_tf_examples(held_out, column_types(TAXI_SPEC.schema_path, "SERVING")))
    probabilities = model.signatures["serving_default"](examples=examples)["probability"].numpy()
    assert probabilities.shape == (len(held_out),)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_unknown_strategy_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="default, mirrored, multi_worker_mirrored"):
        PipelineConfig(distribution_strategy="tpu")
    with pytest.raises(ValueError, match="multi_worker_mirrored"):
        trainer.make_strategy("tpu")


def test_strategy_reaches_run_fn_through_custom_config():
    config = PipelineConfig(distribution_strategy="mirrored")
    assert config.trainer_config()["distribution_strategy"] == "mirrored"
    assert PipelineConfig().trainer_config()["distribution_strategy"] == "default"
