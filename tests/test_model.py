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


def test_output_is_the_sigmoid_of_the_last_layer_over_cross_and_deep():
    tf.keras.utils.set_random_seed(0)
    model = build_model()
    last = model.get_layer("big_tipper_probability")
    last.bias.assign([0.7])  # zeros at initialisation; a known value makes the bias count
    x, _ = _batch(7)
    combined = tf.keras.Model(model.input, model.get_layer("cross_and_deep").output)(x).numpy()
    logits = combined @ last.kernel.numpy() + last.bias.numpy()
    probabilities = model(x).numpy()
    assert probabilities.shape == (7, 1)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    # Each example gets its own answer: the output follows the inputs.
    assert len(np.unique(probabilities.round(6))) == 7


def test_one_location_embedding_serves_pickup_and_dropoff():
    model = build_model()
    shared = [l for l in model.layers if isinstance(l, LocationEmbedding)]
    assert len(shared) == 1
    assert len(shared[0].inbound_nodes) == len(features.LOCATION_INPUTS) == 2


def test_pickup_and_dropoff_read_rows_of_the_same_table():
    tf.keras.utils.set_random_seed(0)
    model = build_model()
    table = next(l for l in model.layers if isinstance(l, LocationEmbedding)).embeddings
    pickup, dropoff = features.LOCATION_INPUTS
    x, _ = _batch(4)
    x[pickup], x[dropoff] = np.full(4, 5), np.full(4, 7)
    before = model(x).numpy()

    def changed_by_moving_row(row):
        original = table.numpy()
        table.assign(original + np.eye(len(original))[row][:, None])
        try:
            return not np.allclose(model(x).numpy(), before)
        finally:
            table.assign(original)

    assert changed_by_moving_row(5), "pickup does not read the location table"
    assert changed_by_moving_row(7), "dropoff does not read the location table"
    assert not changed_by_moving_row(9)


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
