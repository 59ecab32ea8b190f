"""The TFX pipeline: its config, its DAG, its runners and its CLI (`python -m pipeline`).

TF 2.16 makes tf.keras Keras 3 unless TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported;
TFT and TFMA 1.16 need Keras 2. Setting it here covers every entry point that imports the project, and
Beam's worker processes inherit it from this process's environment.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
