"""Each custom layer: its math against numpy, shapes, config round trip, save/load, gradients; the
shared layer shares."""
import re

import numpy as np
import pytest
import tensorflow as tf

import models  # noqa: F401  (Keras 2, registered layers)
from models.layers import DenseWithActivation, FeatureCross, SharedEmbedding


def _random(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32"))


LAYERS = [
    (lambda: DenseWithActivation(5, activation="tanh"), lambda: _random((4, 3)), (4, 5)),
    (lambda: FeatureCross(), lambda: _random((4, 6)), (4, 6)),
    (lambda: SharedEmbedding(num_ids=10, embedding_dim=3),
     lambda: tf.constant([0, 3, 9, 3], tf.int64), (4, 3)),
]


@pytest.mark.parametrize("make_layer, make_input, expected_shape", LAYERS)
def test_output_shape_matches_compute_output_shape(make_layer, make_input, expected_shape):
    layer, x = make_layer(), make_input()
    y = layer(x)
    assert tuple(y.shape) == expected_shape
    assert tuple(layer.compute_output_shape(x.shape)) == expected_shape


@pytest.mark.parametrize("make_layer, make_input, expected_shape", LAYERS)
def test_config_round_trip_rebuilds_an_equivalent_layer(make_layer, make_input, expected_shape):
    layer, x = make_layer(), make_input()
    layer(x)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("make_layer, make_input, expected_shape", LAYERS)
def test_gradients_reach_every_weight(make_layer, make_input, expected_shape):
    layer, x = make_layer(), make_input()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x) + 1.0))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert layer.trainable_weights, "the layer has no trainable weights"
    for weight, grad in zip(layer.trainable_weights, grads):
        assert grad is not None, f"no gradient for {weight.name}"
        assert float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(grad)))) > 0, weight.name


def test_model_with_all_layers_saves_and_loads_without_custom_objects(tmp_path):
    numeric = tf.keras.Input(shape=(4,), name="numeric")
    pickup = tf.keras.Input(shape=(), dtype=tf.int64, name="pickup")
    dropoff = tf.keras.Input(shape=(), dtype=tf.int64, name="dropoff")
    locations = SharedEmbedding(10, 2)
    x0 = tf.keras.layers.Concatenate()([numeric, locations(pickup), locations(dropoff)])
    crossed = FeatureCross()([x0, FeatureCross()(x0)])
    output = DenseWithActivation(1, activation="sigmoid")(crossed)
    model = tf.keras.Model([numeric, pickup, dropoff], output)
    inputs = [_random((3, 4)), tf.constant([1, 2, 9], tf.int64), tf.constant([0, 2, 5], tf.int64)]
    expected = model(inputs).numpy()

    model.save(str(tmp_path / "model"), save_format="tf")
    loaded = tf.keras.models.load_model(str(tmp_path / "model"))

    assert [type(l).__name__ for l in loaded.layers if "Cross" in type(l).__name__] == [
        "FeatureCross", "FeatureCross"]
    np.testing.assert_allclose(loaded(inputs).numpy(), expected, rtol=1e-5)


def test_location_embedding_is_one_table_shared_by_pickup_and_dropoff():
    pickup = tf.keras.Input(shape=(), dtype=tf.int64)
    dropoff = tf.keras.Input(shape=(), dtype=tf.int64)
    shared = SharedEmbedding(5, 2, embeddings_initializer="ones")
    model = tf.keras.Model([pickup, dropoff], [shared(pickup), shared(dropoff)])
    assert len(model.trainable_weights) == 1

    shared.embeddings.assign(tf.reshape(tf.range(10, dtype=tf.float32), (5, 2)))
    from_pickup, from_dropoff = model([tf.constant([3], tf.int64), tf.constant([3], tf.int64)])
    np.testing.assert_array_equal(from_pickup.numpy(), from_dropoff.numpy())
    np.testing.assert_array_equal(from_pickup.numpy(), [[6.0, 7.0]])

    with tf.GradientTape() as tape:
        a, b = model([tf.constant([1], tf.int64), tf.constant([4], tf.int64)])
        loss = tf.reduce_sum(a) + tf.reduce_sum(b)
    grad = tf.convert_to_tensor(tape.gradient(loss, shared.embeddings)).numpy()
    # Both ends of the trip train the same table: rows 1 and 4 get gradient, the others none.
    np.testing.assert_array_equal(grad.sum(axis=1), [0, 2, 0, 0, 2])


@pytest.mark.parametrize("two_inputs", [True, False])
def test_feature_cross_is_x0_times_xw_plus_b_plus_x(two_inputs):
    x0 = _random((4, 3), 1)
    x = _random((4, 3), 2) if two_inputs else x0  # called on x0 alone, it crosses x0 with itself
    inputs = [x0, x] if two_inputs else x0
    kernel, bias = _random((3, 3), 3).numpy(), _random((3,), 4).numpy()
    layer = FeatureCross()
    layer(inputs)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    x0, x = x0.numpy(), x.numpy()
    np.testing.assert_allclose(layer(inputs).numpy(), x0 * (x @ kernel + bias) + x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_is_activation_of_xw_plus_b(use_bias):
    x, kernel, bias = _random((4, 3), 1), _random((3, 5), 2).numpy(), _random((5,), 3).numpy()
    layer = DenseWithActivation(5, activation="tanh", use_bias=use_bias)
    layer(x)
    layer.kernel.assign(kernel)
    if use_bias:
        layer.bias.assign(bias)
    assert len(layer.weights) == (2 if use_bias else 1)
    expected = np.tanh(x.numpy() @ kernel + (bias if use_bias else 0))
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_location_embedding_returns_the_table_rows_of_the_ids():
    table = _random((10, 3), 1).numpy()
    ids = tf.constant([[0, 3], [9, 3]], tf.int64)
    layer = SharedEmbedding(num_ids=10, embedding_dim=3)
    layer(ids)
    layer.embeddings.assign(table)
    np.testing.assert_array_equal(layer(ids).numpy(), table[ids.numpy()])


@pytest.mark.parametrize("make, message", [
    (lambda: DenseWithActivation(0), "`units` must be a positive integer, got 0"),
    (lambda: DenseWithActivation(2.5), "`units` must be a positive integer, got 2.5"),
    (lambda: SharedEmbedding(0, 4), "`num_ids` must be a positive integer, got 0"),
    (lambda: SharedEmbedding(10, -1), "`embedding_dim` must be a positive integer, got -1"),
    (lambda: DenseWithActivation(3, activation="no_such_activation"),
     "Unknown activation function 'no_such_activation'"),
])
def test_invalid_arguments_fail_in_init(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_feature_cross_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same known last dimension"):
        FeatureCross()([_random((2, 3)), _random((2, 4))])
