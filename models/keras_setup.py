"""Keras 2 (tf_keras) checks and tuning that must run before any model is built."""
import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.core import config as autograph_config


def require_keras_2() -> None:
    """Fails fast, with the fix, when TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set."""
    if tf.keras.layers.Layer is not tf_keras.layers.Layer:
        raise ImportError(
            "tf.keras is Keras 3, but this project needs Keras 2 (tf_keras): TFT's transform layer and "
            "TFMA 0.47 are Keras 2 objects. TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was "
            "set. Import `pipeline` or `models` before tensorflow, or export TF_USE_LEGACY_KERAS=1.")


def skip_autograph_for_tf_keras() -> None:
    """Stops AutoGraph from rewriting tf_keras' own source on every first trace.

    TF 2.16's AutoGraph leaves the `keras` package alone but not `tf_keras`, so the first
    `fit`/`train_on_batch`/`save` re-parses Keras' training loop: measured here, 20 s for a one-layer
    model, 0.4 s with this rule. Our own layers are still converted.
    """
    rule = autograph_config.DoNotConvert("tf_keras")
    if not any(getattr(r, "_prefix", None) == "tf_keras" for r in autograph_config.CONVERSION_RULES):
        autograph_config.CONVERSION_RULES = (rule,) + tuple(autograph_config.CONVERSION_RULES)
