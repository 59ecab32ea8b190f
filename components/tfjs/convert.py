"""Runs in the converter's own venv (.venv-tfjs, components/tfjs/requirements.lock): SavedModel -> TF.js graph model.

Usage: python convert.py SIGNATURE, then SAVED_MODEL_DIR and OUTPUT_DIR as two lines on stdin.
The `tensorflowjs` package cannot share a venv with the TFX set (README "Portable exports"), so the
pipeline runs this file with that venv's Python; it imports nothing of the project. The paths come on
stdin so the pipeline can start it (seconds of importing TensorFlow) before the model to convert exists.
"""
import os
import sys

from tensorflowjs.converters import tf_saved_model_conversion_v2


def main(signature: str) -> None:
    saved_model_dir, output_dir = sys.stdin.readline().strip(), sys.stdin.readline().strip()
    if not saved_model_dir or not output_dir:
        sys.exit("convert.py: no SAVED_MODEL_DIR and OUTPUT_DIR lines on stdin")
    tf_saved_model_conversion_v2.convert_tf_saved_model(
        saved_model_dir, output_dir, signature_def=signature,
        # The outputs keep the signature's names (probability, ...), not the graph's node names.
        use_structured_outputs_names=True)
    # The files are written and closed: exit now. TensorFlow's teardown at a normal exit takes
    # ~1.4 s, which the pipeline would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
