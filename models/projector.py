"""The trained model's embedding tables for TensorBoard's Embedding Projector, every row labelled with
what it encodes (a vocabulary entry, an hour, a grid cell), written beside the Trainer's logs."""
import os
from typing import Dict, List

import tensorflow as tf
from tensorboard.plugins import projector

from models.spec import DatasetSpec

CHECKPOINT_PREFIX = "embeddings.ckpt"


def tensor_name(layer_name: str) -> str:
    """The table's name in the checkpoint, which the projector's config and data API use."""
    return f"{layer_name}/.ATTRIBUTES/VARIABLE_VALUE"


def embedding_labels(spec: DatasetSpec, tf_transform_output) -> Dict[str, List[str]]:
    """{embedding layer name: labels}, one entry per table (members of a share group agree)."""
    labels: Dict[str, List[str]] = {}
    for feature in spec.features:
        labels.update(feature.embedding_labels(tf_transform_output))
    return labels


def write(log_dir: str, model: tf.keras.Model, spec: DatasetSpec, tf_transform_output) -> List[str]:
    """Writes the tables, their labels and the projector's config into `log_dir`; returns the layer
    names written."""
    config = projector.ProjectorConfig()
    tables = {}
    for layer_name, labels in sorted(embedding_labels(spec, tf_transform_output).items()):
        weights = model.get_layer(layer_name).embeddings
        if len(labels) != weights.shape[0]:
            raise ValueError(f"{layer_name}: {len(labels)} labels for {weights.shape[0]} rows")
        tables[layer_name] = tf.Variable(weights.numpy(), trainable=False)
        metadata = f"{layer_name}.tsv"
        with tf.io.gfile.GFile(os.path.join(log_dir, metadata), "w") as f:
            # One label per line, no header (a single column); tabs and newlines would split it.
            f.write("".join(" ".join(label.split()) + "\n" for label in labels))
        embedding = config.embeddings.add()
        embedding.tensor_name = tensor_name(layer_name)
        embedding.metadata_path = metadata
    if not tables:
        return []
    # `save` also writes the `checkpoint` file, through which the projector finds the tables relative
    # to the log directory (the config holds no absolute path, so the logs can be moved).
    tf.train.Checkpoint(**tables).save(os.path.join(log_dir, CHECKPOINT_PREFIX))
    projector.visualize_embeddings(log_dir, config)
    return sorted(tables)
