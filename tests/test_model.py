"""The model builder: inputs from the dataset spec, the shared embedding layer, it learns."""
import dataclasses

import numpy as np
import tensorflow as tf

from models import kinds
from models.layers import DenseWithActivation, FeatureCross, SharedEmbedding
from models.model import build_model
from models.spec import ModelSettings
from tests.conftest import TAXI_SPEC

FLOAT_INPUTS = [i.name for i in TAXI_SPEC.model_inputs if i.num_ids is None]
LOCATION_INPUTS = [kinds.transformed_name(f.name)
                   for f in TAXI_SPEC.features_of_kind(kinds.Coordinates)]


def _batch(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = {i.name: (rng.normal(size=n).astype("float32") if i.num_ids is None
                  else rng.integers(0, i.num_ids, size=n)) for i in TAXI_SPEC.model_inputs}
    # A learnable rule: big tippers have a high first numeric feature.
    y = (x[FLOAT_INPUTS[0]] > 0.5).astype("float32").reshape(-1, 1)
    return x, y


def build(**settings):
    return build_model(dataclasses.replace(TAXI_SPEC, model=ModelSettings(**settings))
                       if settings else TAXI_SPEC)


def test_inputs_are_exactly_the_transformed_model_features():
    model = build()
    assert sorted(model.input) == sorted(i.name for i in TAXI_SPEC.model_inputs)
    assert model.input[LOCATION_INPUTS[0]].dtype == tf.int64
    assert model.input[FLOAT_INPUTS[0]].dtype == tf.float32


def test_output_is_the_sigmoid_of_the_last_layer_over_cross_and_deep():
    tf.keras.utils.set_random_seed(0)
    model = build()
    last = model.get_layer("big_tipper_binary_head")
    last.bias.assign([0.7])  # zeros at initialisation; a known value makes the bias count
    x, _ = _batch(7)
    combined = tf.keras.Model(model.input, model.get_layer("cross_and_deep").output)(x).numpy()
    logits = combined @ last.kernel.numpy() + last.bias.numpy()
    probabilities = model(x).numpy()
    assert probabilities.shape == (7, 1)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    # Each example gets its own answer: the output follows the inputs.
    assert len(np.unique(probabilities.round(6))) == 7


def test_one_shared_embedding_serves_pickup_and_dropoff():
    model = build()
    shared = [l for l in model.layers if isinstance(l, SharedEmbedding)]
    assert len(shared) == 1
    assert len(shared[0].inbound_nodes) == len(LOCATION_INPUTS) == 2


def test_pickup_and_dropoff_read_rows_of_the_same_table():
    tf.keras.utils.set_random_seed(0)
    model = build()
    table = next(l for l in model.layers if isinstance(l, SharedEmbedding)).embeddings
    pickup, dropoff = LOCATION_INPUTS
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
    model = build(hidden_units=(16, 8), cross_layers=3)
    assert sum(isinstance(l, FeatureCross) for l in model.layers) == 3
    # Two hidden layers plus the output layer.
    assert sum(isinstance(l, DenseWithActivation) for l in model.layers) == 3


def test_learns_a_simple_rule():
    tf.keras.utils.set_random_seed(0)
    model = build()
    x, y = _batch(2048)
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=5, batch_size=128, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] * 0.6
    assert after["auc"] > 0.95
