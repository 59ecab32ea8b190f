"""The exported SavedModel's signatures; each applies the Transform graph, so clients send raw features.

- `serving_default`: serialized tf.Examples (raw features, no label) -> the task's outputs
  (models/tasks.py; binary: `probability`).
- `serving_raw`: one tensor per raw column (for JSON clients) -> the same outputs. A missing value
  is its column's marker (models/missing_values.py: NaN, "", or exactly -2**31 for an integer). An
  input is named after its column, or after a safe form of it where TensorFlow cannot hold the
  column's name ("mean radius" -> "mean_radius"): models/names.py.
- `transform_features`: serialized tf.Examples with the label -> transformed features (used by TFMA).

Beside the signatures, the model carries `encoder`: its feature encoder as a TF Hub-format module
(models/encoder.py), taking the same raw columns as `serving_raw`.
"""
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from models import encoder, missing_values
from models.names import raw_input_name
from models.spec import DatasetSpec


def serving_feature_spec(tf_transform_output: tft.TFTransformOutput,
                         spec: DatasetSpec) -> Dict[str, tf.io.VarLenFeature]:
    """The raw feature spec of the columns the model reads (no label sources, no ignored columns)."""
    raw = tf_transform_output.raw_feature_spec()
    return {column: raw[column] for column in spec.serving_columns}


def _as_raw_input(value: tf.Tensor, spec) -> tf.Tensor:
    """A dense rank-1 column to the form the Transform graph parses it into."""
    if not isinstance(spec, tf.io.VarLenFeature):
        return tf.reshape(value, [-1, 1])
    if value.dtype == tf.string:
        # Every row, the marker included: preprocessing fills a missing string with the marker ""
        # (models/kinds.py), so a present "" reads the same; and TF.js cannot gather strings
        # (boolean_mask), which the exported TF.js model would otherwise have to.
        rows = tf.range(tf.shape(value, out_type=tf.int64)[0])[:, tf.newaxis]
        values = value
    else:
        present = tf.logical_not(missing_values.missing_mask(value))
        rows, values = tf.where(present), tf.boolean_mask(value, present)
    return tf.SparseTensor(indices=tf.concat([rows, tf.zeros_like(rows)], axis=1), values=values,
                           dense_shape=tf.stack([tf.shape(value, out_type=tf.int64)[0], 1]))


def make_signatures(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                    spec: DatasetSpec) -> dict:
    # Tracked on the model so the Transform graph's assets (vocabularies) are saved with it.
    model.tft_layer = tf_transform_output.transform_features_layer()
    serving_spec = serving_feature_spec(tf_transform_output, spec)
    full_spec = tf_transform_output.raw_feature_spec()
    model_inputs = [i.name for i in spec.model_inputs]

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        return spec.task.serving_outputs(model({k: transformed[k] for k in model_inputs}))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    raw_input_signature = {
        raw_input_name(column): tf.TensorSpec([None], serving_spec[column].dtype,
                                              name=raw_input_name(column))
        for column in spec.serving_columns}

    def parse_raw(raw):
        return {column: _as_raw_input(raw[raw_input_name(column)], serving_spec[column])
                for column in spec.serving_columns}

    @tf.function(input_signature=[raw_input_signature])
    def serve_raw_features(raw):
        return predict(parse_raw(raw))

    model.encoder = encoder.make_module(model, model.tft_layer, lambda raw: model.tft_layer(parse_raw(raw)),
                                        raw_input_signature)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, full_spec))

    return {
        "serving_default": serve_tf_examples.get_concrete_function(),
        "serving_raw": serve_raw_features.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }
