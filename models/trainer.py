"""The Trainer component's `run_fn`: train on transformed examples, export a self-contained SavedModel."""
import logging

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from models import features
from models.model import ModelConfig, build_model
from models.signatures import make_signatures

DEFAULT_BATCH_SIZE = 128
DEFAULT_EPOCHS = 2


def input_fn(file_pattern, data_accessor, tf_transform_output, batch_size: int) -> tf.data.Dataset:
    """Transformed examples as (model inputs, label of shape [batch, 1]), repeated indefinitely."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size,
                                       label_key=features.TRANSFORMED_LABEL_KEY),
        tf_transform_output.transformed_metadata.schema)
    return dataset.map(
        lambda x, y: ({k: x[k] for k in features.MODEL_INPUTS}, tf.reshape(y, [-1, 1])),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def run_fn(fn_args: FnArgs) -> None:
    custom_config = fn_args.custom_config or {}
    batch_size = int(custom_config.get("batch_size", DEFAULT_BATCH_SIZE))
    epochs = max(1, min(int(custom_config.get("epochs", DEFAULT_EPOCHS)), fn_args.train_steps))
    tf.keras.utils.set_random_seed(int(custom_config.get("seed", 42)))

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, batch_size)

    model = build_model(ModelConfig.from_dict(custom_config))
    steps_per_epoch = max(1, fn_args.train_steps // epochs)
    logging.info("Training %d epochs of %d steps, batch size %d", epochs, steps_per_epoch, batch_size)
    # Per-epoch lines when the run is verbose (INFO logging), silence otherwise.
    verbose = 2 if logging.getLogger().isEnabledFor(logging.INFO) else 0
    model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch,
              validation_data=evaluation, validation_steps=fn_args.eval_steps, verbose=verbose,
              callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=make_signatures(model, tf_transform_output))
