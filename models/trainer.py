"""The Trainer component's `run_fn`: train on transformed examples, export a self-contained SavedModel.

How long it trains follows the data (the spec's `training:`, models/spec.py): epochs over the training
split until the loss on a fixed part of the eval split stops improving (early stopping; the best epoch's
weights are kept), at most `max_epochs`; the Trainer's `train_steps`, when set, caps the steps.

Training runs under the tf.distribute strategy `custom_config["distribution_strategy"]` names:
"default" (one device), "mirrored" (every local device) or "multi_worker_mirrored" (the workers in
TF_CONFIG, each running this same function; TF's multi-worker guide).
"""
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile

from typing import List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from models import projector
from models.model import build_model
from models.signatures import make_signatures
from models.spec import HISTORY_FILE, DatasetSpec, from_custom_config

# A tiny table is validated every 50 steps (several passes), not after every batch or two: early
# stopping then judges the model on as many updates as it would on a table of 6,400 rows.
MIN_STEPS_PER_EPOCH = 50
# Batches per call of Keras' compiled training step (`steps_per_execution`): the same batches and
# the same updates, in the same order, as one call per batch, without Keras' Python round trip after
# each batch. Fed from memory at batch 128, that round trip was 1.05 ms of the taxi model's 1.7 ms
# step (bench/limits.py times the model from memory). Callbacks still run at each epoch's end;
# per-batch hooks (TensorBoard's profiler) every STEPS_PER_EXECUTION batches.
STEPS_PER_EXECUTION = 50
# ...but only for epochs of at least this many steps; shorter ones run one step per call. The Trainer
# alone (bench/rerun_executor.py, medians of 3): 15k taxi rows (94 steps an epoch) 10.9 s at 1, 11.4 s
# at 50; at 150k rows (938 steps) 50 per call trains 77k -> 83k examples/s (README "Scale").
SEVERAL_STEPS_PER_CALL_FROM = 500


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """How `fit` runs: `epochs` (at most; early stopping may end sooner) of `steps_per_epoch` batches,
    `steps_per_execution` of them per call of Keras' compiled training step."""
    train_examples: int
    steps_per_epoch: int
    epochs: int
    steps_per_execution: int


def plan_epochs(train_examples: int, batch_size: int, max_epochs: int,
                max_steps: Optional[int] = None) -> EpochPlan:
    """An epoch is one pass over the training examples, or MIN_STEPS_PER_EPOCH steps when a pass is
    shorter; `max_steps` (if set) caps the total number of steps. Epochs of at least
    SEVERAL_STEPS_PER_CALL_FROM steps run STEPS_PER_EXECUTION steps per call, shorter ones one."""
    if train_examples < 1:
        raise ValueError("The training split has no examples: the data root's CSV files have no rows, "
                         "or the hash split put none in train (ExampleGen's train/eval buckets).")
    steps = max(math.ceil(train_examples / batch_size), MIN_STEPS_PER_EPOCH)
    epochs = max_epochs
    if max_steps:
        steps = min(steps, max_steps)
        epochs = max(1, min(epochs, max_steps // steps))
    per_call = STEPS_PER_EXECUTION if steps >= SEVERAL_STEPS_PER_CALL_FROM else 1
    return EpochPlan(train_examples, steps, epochs, per_call)


def count_examples(file_patterns: List[str]) -> int:
    """Records in the (transformed) examples' files, without parsing them."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        return 0
    compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    records = tf.data.TFRecordDataset(files, compression_type=compression)
    # Counted by the batch: reduce's function runs once per element, ~40 us a call here, which
    # made counting a 1.2M-record split take ~50 s; per batch of 8,192 it takes ~2 s.
    return int(records.batch(8192).reduce(
        np.int64(0), lambda count, batch: count + tf.shape(batch, out_type=tf.int64)[0]))


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
             batch_size: int, shuffle: bool = True, num_epochs: Optional[int] = None) -> tf.data.Dataset:
    """Transformed examples as (model inputs, label of shape [batch, 1]), repeated indefinitely
    unless `num_epochs` says how many passes.

    `batch_size` is the global batch: a strategy splits each batch across its replicas. Workers
    take every n-th batch (DATA sharding), which works whatever the number of files.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=spec.transformed_label,
                                       shuffle=shuffle, num_epochs=num_epochs),
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
    spec = from_custom_config(custom_config)
    settings = spec.training
    # `batch_size` is per replica, so one replica trains exactly as without a strategy.
    batch_size = settings.batch_size * strategy.num_replicas_in_sync
    tf.keras.utils.set_random_seed(int(custom_config.get("seed", 42)))

    plan = plan_epochs(count_examples(fn_args.train_files), batch_size, settings.max_epochs,
                       fn_args.train_steps)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec, batch_size)
    # The same eval examples every epoch, so epochs are compared on equal terms.
    validation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec,
                          batch_size, shuffle=False, num_epochs=1).take(fn_args.eval_steps or 50).cache()
    # Its length, which Keras needs to run several steps per call (this pass also fills the cache).
    validation_steps = int(validation.reduce(np.int64(0), lambda count, _: count + 1))

    label_mean, label_std = (label_statistics(train) if spec.task.needs_label_statistics
                             else (0.0, 1.0))
    with strategy.scope():
        model = build_model(spec, label_mean, label_std, steps_per_execution=plan.steps_per_execution)
    logging.info("Training on %d examples: at most %d epochs of %d steps (%d per call), global batch "
                 "size %d on %d replica(s)", plan.train_examples, plan.epochs, plan.steps_per_epoch,
                 plan.steps_per_execution, batch_size, strategy.num_replicas_in_sync)
    early_stopping = tf.keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True)
    # Per-epoch lines when the run is verbose (INFO logging), silence otherwise.
    verbose = 2 if logging.getLogger().isEnabledFor(logging.INFO) else 0
    history = model.fit(train, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                        validation_data=validation, validation_steps=validation_steps, verbose=verbose,
                        callbacks=[early_stopping,
                                   tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    # Back to one step per call: the model returned evaluates any dataset, of known length or not
    # (Keras needs the length for several steps per call). Saving does not record it.
    model._steps_per_execution.assign(1)  # pylint: disable=protected-access
    # Every worker must save (saving runs collective ops); only the chief's copy is kept.
    is_chief = _is_chief(strategy)
    save_dir = fn_args.serving_model_dir if is_chief else tempfile.mkdtemp(prefix="non_chief_model_")
    # With Keras's per-layer call traces (the default), although saving without them took 1.5 s
    # instead of 3.5 s: TFMA loads the model with load_model, and a Beam worker that never imported
    # `models` (a portable runner's, Dataflow's) can call the custom layers only through their
    # traces (tests/test_portable_runner.py failed without them).
    model.save(save_dir, save_format="tf", signatures=make_signatures(model, tf_transform_output, spec))
    if is_chief:
        _write_history(fn_args.model_run_dir, plan, history.history, early_stopping.best_epoch)
        projector.write(fn_args.model_run_dir, model, spec, tf_transform_output)
    else:
        shutil.rmtree(save_dir, ignore_errors=True)
    return model


def _write_history(model_run_dir: str, plan: EpochPlan, history: dict, best_epoch: int) -> None:
    """The plan and the per-epoch losses and metrics (train and eval), beside TensorBoard's logs."""
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, HISTORY_FILE), "w") as f:
        json.dump({**dataclasses.asdict(plan), "epochs_run": len(history.get("loss", [])),
                   "best_epoch": best_epoch + 1,
                   "history": {k: [float(v) for v in values] for k, values in history.items()}}, f)
