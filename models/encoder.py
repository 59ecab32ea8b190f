"""The trained model's feature encoder as a TF Hub-format module: raw features -> the shared
representation the task head reads (the `cross_and_deep` layer, models/model.py).

Every exported SavedModel carries it as `encoder` (models/signatures.py), a tracked object that shares
the model's variables and Transform graph, so it adds functions and no weights; `python -m pipeline
export-encoder` saves it on its own. The module follows TF Hub's Reusable SavedModel API: `__call__`
takes a dict of raw columns (the names and dtypes of `serving_raw`, one dense [batch] tensor each, a
missing value is its column's marker) and returns [batch, d] float32; `variables`,
`trainable_variables` and `regularization_losses` are attributes. Another model loads it with
`tf.saved_model.load` (or `hub.KerasLayer`) and may fine-tune `trainable_variables`.
"""
from typing import Callable, Mapping

import tensorflow as tf

from models.model import ENCODER_OUTPUT


def encoder_model(model: tf.keras.Model) -> tf.keras.Model:
    """The part of `model` from its transformed-feature inputs to the shared representation."""
    return tf.keras.Model(model.input, model.get_layer(ENCODER_OUTPUT).output,
                          name=f"{model.name}_encoder")


def make_module(model: tf.keras.Model, transform: tf.keras.layers.Layer,
                transform_raw: Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]],
                raw_signature: Mapping[str, tf.TensorSpec]) -> tf.train.Checkpoint:
    """The encoder module: `transform_raw` (raw columns -> the Transform graph's outputs, through the
    tracked `transform` layer) then the encoder part of `model`."""
    encoder = encoder_model(model)
    module = tf.train.Checkpoint()  # attributes become the SavedModel's objects, as TF Hub expects
    module.encoder = encoder
    module.transform = transform  # tracked: its tables and vocabulary assets are saved with it

    @tf.function(input_signature=[dict(raw_signature)])
    def encode(features):
        transformed = transform_raw(features)
        return encoder({name: transformed[name] for name in encoder.input})

    module.__call__ = encode
    module.variables = list(encoder.variables)
    module.trainable_variables = list(encoder.trainable_variables)
    module.regularization_losses = []
    return module


def export(model_dir: str, out_dir: str) -> tf.TensorSpec:
    """Saves the `encoder` of the SavedModel at `model_dir` as a module at `out_dir`; returns the
    module's output spec. A model exported before the encoder existed has none: ValueError."""
    loaded = tf.saved_model.load(model_dir)
    module = getattr(loaded, "encoder", None)
    if module is None:
        raise ValueError(f"{model_dir} has no feature encoder (exported before models/encoder.py); "
                         "train it again to export one.")
    tf.saved_model.save(module, out_dir)
    return module.__call__.concrete_functions[0].structured_outputs
