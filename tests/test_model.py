"""The model builder: inputs from the feature definitions, the shared location layer, it learns."""
import numpy as np
import tensorflow as tf

from models import features
from models.layers import DenseWithActivation, FeatureCross, LocationEmbedding
from models.model import ModelConfig, build_model


def _batch(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = {k: rng.normal(size=n).astype("float32") for k in features.NUMERIC_INPUTS}
    x.update({k: rng.integers(0, v, size=n) for k, v in features.CATEGORICAL_INPUTS.items()})
    x.update({k: rng.integers(0, features.NUM_LOCATION_IDS, size=n) for k in features.LOCATION_INPUTS})
    # A learnable rule: big tippers have a high first numeric feature.
    y = (x[features.NUMERIC_INPUTS[0]] > 0.5).astype("float32").reshape(-1, 1)
    return x, y


def test_inputs_are_exactly_the_transformed_model_features():
    model = build_model()
    assert sorted(model.input) == sorted(features.MODEL_INPUTS)
    assert model.input[features.LOCATION_INPUTS[0]].dtype == tf.int64


def test_outputs_a_probability_per_example():
    x, _ = _batch(7)
    probabilities = build_model()(x).numpy()
    assert probabilities.shape == (7, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_one_location_embedding_serves_pickup_and_dropoff():
    model = build_model()
    shared = [l for l in model.layers if isinstance(l, LocationEmbedding)]
    assert len(shared) == 1
    assert len(shared[0].inbound_nodes) == len(features.LOCATION_INPUTS) == 2


def test_built_from_the_custom_layers():
    config = ModelConfig(hidden_units=(16, 8), num_cross_layers=3)
    model = build_model(config)
    assert sum(isinstance(l, FeatureCross) for l in model.layers) == 3
    # Two hidden layers plus the output layer.
    assert sum(isinstance(l, DenseWithActivation) for l in model.layers) == 3


def test_learns_a_simple_rule():
    tf.keras.utils.set_random_seed(0)
    model = build_model()
    x, y = _batch(2048)
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=5, batch_size=128, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] * 0.6
    assert after["auc"] > 0.95


def test_model_config_from_trainer_custom_config_ignores_unknown_keys():
    config = ModelConfig.from_dict({"hidden_units": [8], "learning_rate": 0.01, "batch_size": 64})
    assert config.hidden_units == (8,) and config.learning_rate == 0.01
