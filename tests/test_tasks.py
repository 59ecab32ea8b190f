"""Tasks: label targets, heads, served outputs and gates for binary, multiclass and regression."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models import tasks
from models.layers import Rescale
from models.model import build_model
from models.spec import SpecError, from_mapping
from models.trainer import label_statistics
from tests.conftest import TAXI_SPEC


def test_binary_target_matches_the_positive_class_in_any_case_and_integers_written_as_floats():
    yes = tasks.Binary(positive="Yes", negative="No")
    np.testing.assert_array_equal(yes.target(tf.constant(["yes", " YES", "No", "maybe"])).numpy(),
                                  [1, 1, 0, 0])
    one = tasks.Binary(positive="1", negative="0")
    np.testing.assert_array_equal(one.target(tf.constant([1.0, 0.0, 1.0])).numpy(), [1, 0, 1])
    np.testing.assert_array_equal(one.target(tf.constant([1, 0], tf.int64)).numpy(), [1, 0])
    expression = tasks.Binary()
    np.testing.assert_array_equal(expression.target(tf.constant([True, False])).numpy(), [1, 0])
    assert yes.is_known_label("YES") and not yes.is_known_label("maybe")


def test_multiclass_target_is_the_class_index_and_unseen_is_minus_one():
    task = tasks.Multiclass(classes=("Adelie", "Chinstrap", "Gentoo"))
    np.testing.assert_array_equal(
        task.target(tf.constant(["Gentoo", "Adelie ", "Emperor"])).numpy(), [2, 0, -1])
    counts = tasks.Multiclass(classes=(1, 2, 3))
    np.testing.assert_array_equal(counts.target(tf.constant([3.0, 1.0])).numpy(), [2, 0])
    outputs = task.serving_outputs(tf.constant([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    assert outputs["probabilities"].shape == (2, 3)
    assert outputs["classes"].numpy().tolist() == [[b"Adelie", b"Chinstrap", b"Gentoo"]] * 2
    with pytest.raises(ValueError, match=r"two or more distinct values"):
        tasks.Multiclass(classes=("a", "a"))


def _spec(task_values, features=None):
    values = TAXI_SPEC.to_mapping()
    values.update(label=task_values, slices=[], ignored={})
    values.pop("gate", None)
    if features is not None:
        values["features"] = features
    return from_mapping(values, TAXI_SPEC.directory)


FEATURES = {"trip_miles": {"kind": "numeric"}, "payment_type": {"kind": "categorical", "top_k": 5}}


@pytest.mark.parametrize("label, width, activation", [
    ({"column": "company", "task": "multiclass", "classes": ["a", "b", "c"]}, 3, "softmax"),
    ({"column": "tips", "task": "regression"}, 1, "linear"),
    ({"name": "big", "task": "binary", "expression": "tips > 1"}, 1, "sigmoid"),
])
def test_each_task_builds_its_head(label, width, activation):
    spec = _spec(label, FEATURES)
    model = build_model(spec, label_mean=10.0, label_std=4.0)
    head = model.get_layer(f"{spec.label.name}_{spec.task.task}_head")
    assert head.units == width and head.activation.__name__ == activation
    x = {i.name: np.zeros(3, np.float32 if i.num_ids is None else np.int64) for i in spec.model_inputs}
    assert model(x).shape == (3, width)


def test_regression_answers_in_the_label_s_units():
    spec = _spec({"column": "tips", "task": "regression"}, FEATURES)
    model = build_model(spec, label_mean=10.0, label_std=4.0)
    rescale = next(layer for layer in model.layers if isinstance(layer, Rescale))
    assert (rescale.scale, rescale.offset) == (4.0, 10.0)
    head = model.get_layer("tips_regression_head")
    x = {i.name: np.ones(2, np.float32 if i.num_ids is None else np.int64) for i in spec.model_inputs}
    standardized = tf.keras.Model(model.input, head.output)(x).numpy()
    np.testing.assert_allclose(model(x).numpy(), standardized * 4.0 + 10.0, rtol=1e-6)
    assert Rescale.from_config(rescale.get_config()).get_config() == rescale.get_config()


def test_label_statistics_over_the_training_batches():
    labels = np.arange(100, dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(({"x": labels}, labels.reshape(-1, 1))).batch(10)
    mean, std = label_statistics(dataset)
    assert mean == pytest.approx(labels.mean()) and std == pytest.approx(labels.std())


@pytest.mark.parametrize("label, gate, match", [
    ({"name": "big", "task": "binary", "expression": "tips > 1"}, {"threshold": 1.2},
     r"gate: a threshold on auc must be in \[0, 1\], got 1\.2"),
    ({"column": "tips", "task": "regression"}, {"threshold": -1},
     r"gate: a threshold on root_mean_squared_error must be >= 0"),
    ({"column": "tips", "task": "regression"}, {"floor": 1},
     r"gate: unknown key\(s\) floor; allowed: threshold, max_regression \(the metric is the "
     r"task's: root_mean_squared_error\)"),
    ({"column": "company", "task": "multiclass", "classes": ["a"]}, {},
     r"label: classes: \['a'\] must list two or more distinct values"),
    ({"column": "company", "task": "regression", "classes": ["a", "b"]}, {},
     r"label\.classes: is not used by a regression label"),
    ({"name": "x", "task": "regression", "expression": "tips > 1"}, {},
     r"a regression label needs a number"),
])
def test_bad_labels_and_gates_name_the_key(label, gate, match):
    values = TAXI_SPEC.to_mapping()
    values.update(label=label, gate=gate, features=FEATURES, slices=[], ignored={})
    with pytest.raises(SpecError, match=match):
        from_mapping(values, TAXI_SPEC.directory)


def test_the_gate_direction_follows_the_metric():
    assert tasks.Binary().gated_metric.higher_is_better
    assert not tasks.Regression().gated_metric.higher_is_better
    spec = dataclasses.replace(_spec({"column": "tips", "task": "regression"}, FEATURES))
    assert spec.task.prediction_key == "prediction"
