"""One training worker for tests/test_distributed.py: runs `run_fn` with a real FnArgs, dumps weights.

Usage: python -m tests.distributed_worker SPEC_JSON   (TF_CONFIG in the environment names the cluster)
"""
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import numpy as np  # noqa: E402
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs  # noqa: E402
from tfx.components.util import tfxio_utils  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from models import trainer  # noqa: E402


def main(spec: dict) -> None:
    examples = standard_artifacts.Examples()
    examples.uri = spec["examples_uri"]
    fn_args = FnArgs(
        train_files=[spec["train_pattern"]], eval_files=[spec["eval_pattern"]],
        train_steps=spec["train_steps"], eval_steps=spec["eval_steps"],
        transform_output=spec["transform_output"], serving_model_dir=spec["serving_model_dir"],
        model_run_dir=spec["model_run_dir"],
        data_accessor=DataAccessor(
            tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
            record_batch_factory=None, data_view_decode_fn=None),
        custom_config=spec["custom_config"])
    model = trainer.run_fn(fn_args)
    np.savez(spec["weights_out"], *model.get_weights())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
