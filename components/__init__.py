"""Custom TFX pieces: data gates, resolver strategies, the serving check and the atomic Pusher."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
