"""The model: feature definitions, preprocessing, custom Keras layers, the Trainer's run_fn.

Importing this package sets TF_USE_LEGACY_KERAS=1 (TFT and TFMA 1.16 are Keras 2 objects), checks it
took effect, and registers the custom layers, so `tf.keras.models.load_model` can load a pushed model.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from models import keras_setup  # noqa: E402  (must follow the variable)

keras_setup.require_keras_2()
keras_setup.skip_autograph_for_tf_keras()

from models import layers  # noqa: E402,F401  (registers the custom layers)
