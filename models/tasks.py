"""Tasks: what the label is and what the model answers. One small class per task.

Each task owns its label transform (raw label values to the training target), its head, loss and Keras
metrics, its served outputs, and its TFMA metrics and gated metric. A new task is a new class
registered in `TASKS`.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from models import layers
from models.kinds import strip_whitespace


@dataclasses.dataclass(frozen=True)
class GatedMetric:
    """The metric the Evaluator's blessing gate reads: its TFMA class and its name in the results."""
    tfma_class: str
    name: str
    higher_is_better: bool = True
    maximum: Optional[float] = 1.0  # None: unbounded above (RMSE); every gated metric is >= 0

    def check_threshold(self, value: float) -> None:
        if not 0.0 <= value <= (float("inf") if self.maximum is None else self.maximum):
            allowed = ">= 0" if self.maximum is None else f"in [0, {self.maximum:g}]"
            raise ValueError(f"a threshold on {self.name} must be {allowed}, got {value:g}")


def label_string(value: str) -> str:
    """A label cell as the spec names values: stripped, integers pandas wrote as 8.0 (a column with
    gaps) are 8; what `_as_label_strings` does to the parsed column."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def _as_label_strings(value: tf.Tensor) -> tf.Tensor:
    """Label values as the strings the spec names them by: integers without ".0", strings stripped."""
    if value.dtype == tf.string:
        return strip_whitespace(value)
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
    def label_values(self) -> Optional[Tuple[str, ...]]:
        """The label column's allowed values (as strings), when the task declares them."""
        return None

    def is_known_label(self, value: str) -> bool:
        """Whether a label cell (stripped; integers without ".0") is a value the task trains on."""
        return self.label_values is None or value in self.label_values

    def target(self, label: tf.Tensor) -> tf.Tensor:
        """The raw label column (dense) or the expression's value to the training target."""
        raise NotImplementedError

    @property
    def needs_label_statistics(self) -> bool:
        """Whether `output` wants the training label's mean and standard deviation."""
        return False

    def output(self, x: tf.Tensor, name: str, label_mean: float = 0.0, label_std: float = 1.0):
        """The model's output (Keras tensor) from the last hidden representation `x`."""
        raise NotImplementedError

    def loss(self):
        raise NotImplementedError

    def keras_metrics(self):
        raise NotImplementedError

    def serving_outputs(self, model_output: tf.Tensor) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def tfma_metrics(self) -> Tuple[str, ...]:
        raise NotImplementedError

    def tfma_per_class_metrics(self) -> Tuple[Tuple[str, dict], ...]:
        """(TFMA class, its config) computed per class (binarized), overall and per slice."""
        return ()

    def tfma_configured_metrics(self) -> Tuple[Tuple[str, dict], ...]:
        """(TFMA or Keras metric class, its config) computed on the whole output."""
        return ()

    @property
    def prediction_key(self) -> str:
        """The served output TFMA evaluates."""
        raise NotImplementedError

    @property
    def gated_metric(self) -> GatedMetric:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Binary(Task):
    """Two classes; the model answers P(positive class)."""
    positive: Optional[str] = None  # None: the label is a boolean expression
    negative: Optional[str] = None  # declared: any other label value is refused by the input checks
    task = "binary"

    def __post_init__(self):
        if self.positive is not None and self.positive == self.negative:
            raise ValueError(f"positive and negative are both {self.positive!r}")

    @property
    def label_values(self) -> Optional[Tuple[str, ...]]:
        """The label column's allowed values, when declared."""
        return None if self.negative is None else (self.negative, self.positive)

    def is_known_label(self, value):
        # As `target` matches string labels: any case.
        return self.label_values is None or value.lower() in {v.lower() for v in self.label_values}

    def target(self, label):
        if label.dtype == tf.bool:
            return tf.cast(label, tf.int64)
        positive = str(self.positive).strip()
        if label.dtype == tf.string:
            matches = tf.equal(tf.strings.lower(strip_whitespace(label)), positive.lower())
        else:
            matches = tf.equal(_as_label_strings(label), positive)
        return tf.cast(matches, tf.int64)

    def output(self, x, name, label_mean=0.0, label_std=1.0):
        return layers.DenseWithActivation(1, activation="sigmoid", name=name)(x)

    def loss(self):
        return tf.keras.losses.BinaryCrossentropy()

    def keras_metrics(self):
        return [tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")]

    def serving_outputs(self, model_output):
        return {"probability": tf.reshape(model_output, [-1])}

    @property
    def prediction_key(self):
        return "probability"

    def tfma_metrics(self):
        # The plots feed the run report's ROC, precision-recall and calibration figures.
        # HistogramCalibration (components/tfma_metrics.py): TFMA's calibration, mean_label and
        # mean_prediction from the histogram AUC fills anyway, a quarter less of TFMA's work per example.
        return ("ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall",
                "HistogramCalibration", "ConfusionMatrixPlot", "CalibrationPlot")

    @property
    def gated_metric(self):
        return GatedMetric("AUC", "auc")


@dataclasses.dataclass(frozen=True)
class Multiclass(Task):
    """One of k declared classes; the model answers each class's probability."""
    classes: Tuple[str, ...] = ()
    task = "multiclass"

    def __post_init__(self):
        classes = tuple(str(c) for c in self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes: {list(classes)!r} must list two or more distinct values")
        object.__setattr__(self, "classes", classes)

    @property
    def units(self):
        return len(self.classes)

    @property
    def label_values(self):
        return self.classes

    def target(self, label):
        """The class's index in `classes`; -1 for a value not declared (the input checks refuse
        such rows before training)."""
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self.classes),
                                                tf.range(len(self.classes), dtype=tf.int64)),
            default_value=-1)
        return table.lookup(_as_label_strings(label))

    def output(self, x, name, label_mean=0.0, label_std=1.0):
        return layers.DenseWithActivation(self.units, activation="softmax", name=name)(x)

    def loss(self):
        return tf.keras.losses.SparseCategoricalCrossentropy()

    def keras_metrics(self):
        return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def serving_outputs(self, model_output):
        batch = tf.shape(model_output)[0]
        classes = tf.tile(tf.constant([self.classes]), tf.stack([batch, 1]))
        return {"probabilities": model_output, "classes": classes}

    @property
    def prediction_key(self):
        return "probabilities"

    def tfma_metrics(self):
        return ("ExampleCount", "SparseCategoricalAccuracy", "MultiClassConfusionMatrixPlot")

    def tfma_per_class_metrics(self):
        return (("Precision", {}), ("Recall", {}))

    def tfma_configured_metrics(self):
        # Top-2 accuracy: whether the right class is among the two most likely (3+ classes).
        return (("SparseTopKCategoricalAccuracy", {"k": 2, "name": "top_2_accuracy"}),) if (
            len(self.classes) > 2) else ()

    @property
    def gated_metric(self):
        return GatedMetric("SparseCategoricalAccuracy", "sparse_categorical_accuracy")


@dataclasses.dataclass(frozen=True)
class Regression(Task):
    """A number; the model answers it in the label's own units."""
    task = "regression"

    def target(self, label):
        return tf.cast(label, tf.float32)

    @property
    def needs_label_statistics(self):
        return True

    def output(self, x, name, label_mean=0.0, label_std=1.0):
        # The dense layer learns a standardized target; Rescale answers in the label's units.
        standardized = layers.DenseWithActivation(1, activation="linear", name=name)(x)
        return layers.Rescale(scale=label_std, offset=label_mean, name=f"{name}_in_label_units")(
            standardized)

    def loss(self):
        return tf.keras.losses.MeanSquaredError()

    def keras_metrics(self):
        return [tf.keras.metrics.RootMeanSquaredError(name="rmse"),
                tf.keras.metrics.MeanAbsoluteError(name="mae")]

    def serving_outputs(self, model_output):
        return {"prediction": tf.reshape(model_output, [-1])}

    @property
    def prediction_key(self):
        return "prediction"

    def tfma_metrics(self):
        return ("ExampleCount", "RootMeanSquaredError", "MeanAbsoluteError", "MeanLabel",
                "MeanPrediction")

    @property
    def gated_metric(self):
        return GatedMetric("RootMeanSquaredError", "root_mean_squared_error", higher_is_better=False,
                           maximum=None)


TASKS: Dict[str, type] = {t.task: t for t in (Binary, Multiclass, Regression)}
