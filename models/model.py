"""Builds the multi-input Functional model from the custom layers in `models.layers`."""
import dataclasses

import tensorflow as tf

from models import features
from models.layers import DenseWithActivation, FeatureCross, LocationEmbedding


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and optimizer settings; the Trainer passes these through `custom_config`."""
    hidden_units: tuple = (64, 32)
    num_cross_layers: int = 2
    location_embedding_dim: int = 8
    learning_rate: float = 0.003

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in (values or {}).items() if k in known}
        if "hidden_units" in kwargs:
            kwargs["hidden_units"] = tuple(kwargs["hidden_units"])
        return cls(**kwargs)


def build_model(config: ModelConfig = ModelConfig()) -> tf.keras.Model:
    """Numeric, categorical, pickup- and dropoff-location inputs to a big-tipper probability.

    Inputs are rank-1 tensors keyed by transformed feature name, exactly what the Transform graph emits;
    the output has shape [batch, 1].
    """
    numeric_inputs = [tf.keras.Input(shape=(), name=k, dtype=tf.float32)
                      for k in features.NUMERIC_INPUTS]
    categorical_inputs = {k: tf.keras.Input(shape=(), name=k, dtype=tf.int64)
                          for k in features.CATEGORICAL_INPUTS}
    location_inputs = [tf.keras.Input(shape=(), name=k, dtype=tf.int64)
                       for k in features.LOCATION_INPUTS]

    numeric = tf.keras.layers.Concatenate(name="numeric")(
        [tf.keras.layers.Reshape((1,), name=f"{i.name}_column")(i) for i in numeric_inputs])
    categorical = [
        tf.keras.layers.Embedding(num_ids, features.embedding_dim(num_ids),
                                  name=f"{name}_embedding")(categorical_inputs[name])
        for name, num_ids in features.CATEGORICAL_INPUTS.items()]
    # One table for both ends of the trip: the shared layer.
    location_embedding = LocationEmbedding(features.NUM_LOCATION_IDS,
                                           config.location_embedding_dim,
                                           name="pickup_dropoff_location_embedding")
    locations = [location_embedding(i) for i in location_inputs]

    x0 = tf.keras.layers.Concatenate(name="all_features")([numeric, *categorical, *locations])
    crossed = x0
    for i in range(config.num_cross_layers):
        crossed = FeatureCross(name=f"feature_cross_{i}")([x0, crossed])
    deep = x0
    for i, units in enumerate(config.hidden_units):
        deep = DenseWithActivation(units, activation="relu", name=f"deep_{i}")(deep)
    combined = tf.keras.layers.Concatenate(name="cross_and_deep")([crossed, deep])
    probability = DenseWithActivation(1, activation="sigmoid", name="big_tipper_probability")(combined)

    model = tf.keras.Model(
        inputs={i.name: i for i in [*numeric_inputs, *categorical_inputs.values(), *location_inputs]},
        outputs=probability, name="big_tipper")
    model.compile(
        optimizer=tf.keras.optimizers.Adam(config.learning_rate),
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=[tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")])
    return model
