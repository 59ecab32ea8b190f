"""Runs TFX's own taxi_pipeline_native_keras example, as shipped in the tfx wheel, on given paths.

Its `__main__` hard-codes ~/taxi and ~/tfx; this calls the example's own `_create_pipeline` and runner
with the same arguments and Beam options, only under OUTPUT_DIR. Used by compare_with_tfx_example.py.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the example's Trainer crashes without it on TF 2.16
if __name__ == "__main__":
    # TFX packages the example's user code (wheels, setup.py builds) into temporary directories it never
    # removes: under the run's output directory, they go with it.
    os.makedirs(os.path.join(sys.argv[1], "tmp"), exist_ok=True)
    os.environ["TMPDIR"] = os.path.join(sys.argv[1], "tmp")

from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as example  # noqa: E402

PIPELINE_NAME = example._pipeline_name  # pylint: disable=protected-access


def main(output_dir: str) -> None:
    example_dir = os.path.dirname(example.__file__)
    example.BeamDagRunner().run(
        example._create_pipeline(  # pylint: disable=protected-access
            pipeline_name=PIPELINE_NAME,
            pipeline_root=os.path.join(output_dir, "pipeline_root"),
            data_root=os.path.join(example_dir, "data", "simple"),
            module_file=os.path.join(example_dir, "taxi_utils_native_keras.py"),
            serving_model_dir=os.path.join(output_dir, "serving_model"),
            metadata_path=os.path.join(output_dir, "metadata.sqlite"),
            beam_pipeline_args=example._beam_pipeline_args))  # pylint: disable=protected-access


if __name__ == "__main__":
    main(sys.argv[1])
