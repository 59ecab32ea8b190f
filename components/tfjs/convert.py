"""Runs in the converter's own venv (.venv-tfjs, requirements-tfjs.lock): SavedModel -> TF.js graph model.

Usage: python convert.py SAVED_MODEL_DIR OUTPUT_DIR SIGNATURE
The `tensorflowjs` package cannot share a venv with the TFX set (README: "TensorFlow.js"), so the
pipeline runs this file with that venv's Python; it imports nothing of the project.
"""
import sys

from tensorflowjs.converters import tf_saved_model_conversion_v2


def main(saved_model_dir: str, output_dir: str, signature: str) -> None:
    tf_saved_model_conversion_v2.convert_tf_saved_model(
        saved_model_dir, output_dir, signature_def=signature,
        # The outputs keep the signature's names (probability, ...), not the graph's node names.
        use_structured_outputs_names=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
