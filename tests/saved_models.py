"""Real serving SavedModels for tests, the cheap way: tf.Transform on a few hundred taxi rows (real
analyzers on Beam), the project's model untrained (its weights come from the seed), the project's
signatures. What the Trainer exports, minus the training."""
import os

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from models.model import build_model
from models.preprocessing import preprocessing_fn
from models.signatures import make_signatures
from pipeline.config import DEFAULT_SCHEMA_PATH

_CONVERT = {schema_pb2.INT: lambda v: int(float(v)), schema_pb2.FLOAT: float,
            schema_pb2.BYTES: lambda v: v.encode()}


def transform_output(rows, directory: str) -> tft.TFTransformOutput:
    """Analyzes CSV rows (dicts of strings) with the project's preprocessing_fn; writes transform_fn."""
    schema = io_utils.SchemaReader().read(DEFAULT_SCHEMA_PATH)
    types = {f.name: f.type for f in schema.feature}
    raw = [{name: [_CONVERT[kind](row[name])] if row[name] != "" else [] for name, kind in types.items()}
           for row in rows]
    metadata = dataset_metadata.DatasetMetadata(schema)
    with beam.Pipeline() as pipeline, tft_beam.Context(
            temp_dir=os.path.join(directory, "tmp"), force_tf_compat_v1=True):
        transform_fn = ((pipeline | beam.Create(raw), metadata)
                        | tft_beam.AnalyzeDataset(preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(directory)
    # The raw schema beside the transform graph, as TFX's Transform writes it (the signatures read it).
    metadata_io.write_metadata(metadata, os.path.join(directory, tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(directory)


def save_serving_model(tf_transform_output: tft.TFTransformOutput, path: str, seed: int) -> str:
    """The project's model with weights from `seed`, saved with its serving signatures at `path`."""
    tf.keras.utils.set_random_seed(seed)
    model = build_model()
    model.save(path, save_format="tf", signatures=make_signatures(model, tf_transform_output))
    return path
