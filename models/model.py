"""Builds the multi-input Functional model from the dataset spec and the custom layers in `models.layers`."""
import tensorflow as tf

from models import kinds
from models.names import safe_name
from models.layers import DenseWithActivation, FeatureCross
from models.spec import DatasetSpec

# The shared representation the task head reads: what the exported feature encoder returns
# (models/encoder.py).
ENCODER_OUTPUT = "cross_and_deep"


def build_model(spec: DatasetSpec, label_mean: float = 0.0, label_std: float = 1.0,
                steps_per_execution: int = 1) -> tf.keras.Model:
    """One input per transformed feature, each feature's encoder (shared embeddings for share groups),
    a cross network beside a deep network, and the task's head.

    Inputs are rank-1 tensors keyed by transformed feature name, exactly what the Transform graph emits.
    `label_mean` and `label_std` (the training label's) are for tasks that standardize their target;
    `steps_per_execution` is Keras' batches per call of its compiled training step (models/trainer.py).
    """
    settings = spec.model
    inputs = {i.name: tf.keras.Input(shape=(), name=i.name, dtype=i.dtype) for i in spec.model_inputs}
    shared = kinds.SharedState(spec.features)
    encoded = [t for feature in spec.features for t in feature.encode(inputs, shared, settings)]

    x0 = tf.keras.layers.Concatenate(name="all_features")(encoded)
    crossed = x0
    for i in range(settings.cross_layers):
        crossed = FeatureCross(name=f"feature_cross_{i}")([x0, crossed])
    deep = x0
    for i, units in enumerate(settings.hidden_units):
        deep = DenseWithActivation(units, activation="relu", name=f"deep_{i}")(deep)
    combined = tf.keras.layers.Concatenate(name=ENCODER_OUTPUT)([crossed, deep])
    label = safe_name(spec.label.name)
    output = spec.task.output(combined, f"{label}_{spec.task.task}_head", label_mean, label_std)

    model = tf.keras.Model(inputs=inputs, outputs=output, name=label)
    model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate), loss=spec.task.loss(),
                  metrics=spec.task.keras_metrics(), steps_per_execution=steps_per_execution)
    return model
