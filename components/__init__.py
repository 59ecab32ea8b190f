"""Custom TFX pieces: the data-validation gate and the baseline-model resolver strategy."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
