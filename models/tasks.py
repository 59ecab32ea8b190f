"""Tasks: what the label is and what the model answers. One small class per task.

Each task owns its label transform (raw label values to the training target), its head, loss and Keras
metrics, its served outputs, and its TFMA metrics and gated metric. A new task is a new class
registered in `TASKS`.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from models import layers


@dataclasses.dataclass(frozen=True)
class GatedMetric:
    """The metric the Evaluator's blessing gate reads: its TFMA class and its name in the results."""
    tfma_class: str
    name: str
    higher_is_better: bool = True


def _as_label_strings(value: tf.Tensor) -> tf.Tensor:
    """Label values as the strings the spec names them by: integers without ".0", strings stripped."""
    if value.dtype == tf.string:
        return tf.strings.strip(value)
    if value.dtype.is_floating:
        value = tf.cast(tf.round(value), tf.int64)  # 8.0, as pandas writes an int column with gaps
    return tf.strings.as_string(value)


@dataclasses.dataclass(frozen=True)
class Task:
    task = ""

    @property
    def units(self) -> int:
        """Width of the head's output."""
        return 1

    @property
    def label_dtype(self) -> tf.DType:
        return tf.int64

    def target(self, label: tf.Tensor) -> tf.Tensor:
        """The raw label column (dense) or the expression's value to the training target."""
        raise NotImplementedError

    def head(self, name: str) -> tf.keras.layers.Layer:
        raise NotImplementedError

    def loss(self):
        raise NotImplementedError

    def keras_metrics(self):
        raise NotImplementedError

    def serving_outputs(self, model_output: tf.Tensor) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def tfma_metrics(self) -> Tuple[str, ...]:
        raise NotImplementedError

    @property
    def gated_metric(self) -> GatedMetric:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Binary(Task):
    """Two classes; the model answers P(positive class)."""
    positive: Optional[str] = None  # None: the label is a boolean expression
    task = "binary"

    def target(self, label):
        if label.dtype == tf.bool:
            return tf.cast(label, tf.int64)
        positive = str(self.positive).strip()
        if label.dtype == tf.string:
            matches = tf.equal(tf.strings.lower(tf.strings.strip(label)), positive.lower())
        else:
            matches = tf.equal(_as_label_strings(label), positive)
        return tf.cast(matches, tf.int64)

    def head(self, name):
        return layers.DenseWithActivation(1, activation="sigmoid", name=name)

    def loss(self):
        return tf.keras.losses.BinaryCrossentropy()

    def keras_metrics(self):
        return [tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")]

    def serving_outputs(self, model_output):
        return {"probability": tf.reshape(model_output, [-1])}

    def tfma_metrics(self):
        return ("ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall",
                "Calibration", "MeanLabel", "MeanPrediction")

    @property
    def gated_metric(self):
        return GatedMetric("AUC", "auc")


TASKS: Dict[str, type] = {t.task: t for t in (Binary,)}
