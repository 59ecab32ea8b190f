"""The Trainer component's `run_fn`: train on transformed examples, export a self-contained SavedModel.

Training runs under the tf.distribute strategy `custom_config["distribution_strategy"]` names:
"default" (one device), "mirrored" (every local device) or "multi_worker_mirrored" (the workers in
TF_CONFIG, each running this same function; TF's multi-worker guide).
"""
import logging
import shutil
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from models.model import build_model
from models.signatures import make_signatures
from models.spec import DatasetSpec, from_custom_config

DEFAULT_BATCH_SIZE = 128
DEFAULT_EPOCHS = 2


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Create before any other TensorFlow work: multi-worker collectives are set up at start-up."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown distribution_strategy {name!r}: use default, mirrored or "
                     "multi_worker_mirrored.")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:  # single worker
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def input_fn(file_pattern, data_accessor, tf_transform_output, spec: DatasetSpec,
             batch_size: int) -> tf.data.Dataset:
    """Transformed examples as (model inputs, label of shape [batch, 1]), repeated indefinitely.

    `batch_size` is the global batch: a strategy splits each batch across its replicas. Workers
    take every n-th batch (DATA sharding), which works whatever the number of files.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size,
                                       label_key=spec.transformed_label),
        tf_transform_output.transformed_metadata.schema)
    model_inputs = [i.name for i in spec.model_inputs]
    return dataset.map(
        lambda x, y: ({k: x[k] for k in model_inputs}, tf.reshape(y, [-1, 1])),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(options)


def label_statistics(dataset: tf.data.Dataset, max_batches: int = 200):
    """Mean and standard deviation of the label over the first `max_batches` training batches."""
    labels = np.concatenate([y.numpy().reshape(-1) for _, y in dataset.take(max_batches)])
    return float(labels.mean()), float(labels.std()) or 1.0


def run_fn(fn_args: FnArgs) -> tf.keras.Model:
    """Trains and saves the serving model (only the chief writes it); returns the trained model."""
    custom_config = fn_args.custom_config or {}
    strategy = make_strategy(custom_config.get("distribution_strategy", "default"))
    # `batch_size` is per replica, so one replica trains exactly as without a strategy.
    batch_size = int(custom_config.get("batch_size", DEFAULT_BATCH_SIZE)) * strategy.num_replicas_in_sync
    epochs = max(1, min(int(custom_config.get("epochs", DEFAULT_EPOCHS)), fn_args.train_steps))
    tf.keras.utils.set_random_seed(int(custom_config.get("seed", 42)))

    spec = from_custom_config(custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec, batch_size)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec,
                          batch_size)

    label_mean, label_std = (label_statistics(train) if spec.task.needs_label_statistics
                             else (0.0, 1.0))
    with strategy.scope():
        model = build_model(spec, label_mean, label_std)
    steps_per_epoch = max(1, fn_args.train_steps // epochs)
    logging.info("Training %d epochs of %d steps, global batch size %d on %d replica(s)", epochs,
                 steps_per_epoch, batch_size, strategy.num_replicas_in_sync)
    # Per-epoch lines when the run is verbose (INFO logging), silence otherwise.
    verbose = 2 if logging.getLogger().isEnabledFor(logging.INFO) else 0
    model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch,
              validation_data=evaluation, validation_steps=fn_args.eval_steps, verbose=verbose,
              callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    # Every worker must save (saving runs collective ops); only the chief's copy is kept.
    is_chief = _is_chief(strategy)
    save_dir = fn_args.serving_model_dir if is_chief else tempfile.mkdtemp(prefix="non_chief_model_")
    model.save(save_dir, save_format="tf", signatures=make_signatures(model, tf_transform_output, spec))
    if not is_chief:
        shutil.rmtree(save_dir, ignore_errors=True)
    return model
