"""TF Serving's JSON formats on their own: parsing into typed arrays, strictness, response shapes."""
import base64
import math

import numpy as np
import pytest
import tensorflow as tf

from models.missing_values import MISSING_INT
from pipeline.serving import tensors
from pipeline.serving.servable import InputSpec, Signature


def signature(**inputs):
    return Signature("sig", {k: InputSpec(k, dtype, shape) for k, (dtype, shape) in inputs.items()},
                     ("out",), function=None)


RAW = signature(fare=(tf.float32, ()), hour=(tf.int64, ()), payment=(tf.string, ()))
EXAMPLES = signature(examples=(tf.string, ()))


def test_row_and_columnar_give_the_same_tensors():
    rows = tensors.predict_inputs({"instances": [{"fare": 1.5, "hour": 3, "payment": "Cash"},
                                                 {"fare": 2, "hour": -1, "payment": ""}]}, RAW)
    columns = tensors.predict_inputs({"inputs": {"fare": [1.5, 2], "hour": [3, -1],
                                                 "payment": ["Cash", ""]}}, RAW)
    assert not rows.columnar and columns.columnar
    for name in ("fare", "hour", "payment"):
        np.testing.assert_array_equal(rows.tensors[name], columns.tensors[name])
    assert rows.tensors["fare"].dtype == np.float32 and rows.tensors["hour"].dtype == np.int64
    assert list(rows.tensors["payment"]) == [b"Cash", b""]


def test_b64_values_are_decoded_for_a_single_string_input():
    payload = b"\x0a\x00binary"
    encoded = {"b64": base64.b64encode(payload).decode()}
    for doc in ({"instances": [encoded]}, {"instances": [{"examples": encoded}]}, {"inputs": [encoded]}):
        assert list(tensors.predict_inputs(doc, EXAMPLES).tensors["examples"]) == [payload]


def test_nan_is_a_float_value():
    doc = tensors.parse_json(b'{"instances": [{"fare": NaN, "hour": 1, "payment": "x"}]}')
    assert math.isnan(tensors.predict_inputs(doc, RAW).tensors["fare"][0])


def test_null_is_the_inputs_missing_marker():
    rows = tensors.predict_inputs({"instances": [{"fare": None, "hour": None, "payment": None}]}, RAW)
    columns = tensors.predict_inputs({"inputs": {"fare": [None], "hour": [None], "payment": [None]}}, RAW)
    for parsed in (rows, columns):
        assert math.isnan(parsed.tensors["fare"][0])
        assert parsed.tensors["hour"].tolist() == [MISSING_INT] and parsed.tensors["hour"].dtype == np.int64
        assert list(parsed.tensors["payment"]) == [b""]
    # Only an item of a batch can be missing, and a bool has no marker.
    with pytest.raises(tensors.RequestError, match="'inputs' key: fare.*null means missing only"):
        tensors.predict_inputs({"inputs": {"fare": None, "hour": [1], "payment": ["x"]}}, RAW)
    with pytest.raises(tensors.RequestError, match="expected type: bool.*null means missing only"):
        tensors.predict_inputs({"instances": [None]}, signature(flag=(tf.bool, ())))


@pytest.mark.parametrize("instance, fragments", [
    ({"fare": "1", "hour": 1, "payment": "x"}, ("element: 0", "'instances' key: fare", "float")),
    ({"fare": 1.0, "hour": 1.5, "payment": "x"}, ("hour", "int64", "whole number")),
    ({"fare": 1.0, "hour": True, "payment": "x"}, ("hour", "int64")),
    ({"fare": 1.0, "hour": 1, "payment": 7}, ("payment", "string")),
    ({"fare": 1.0, "payment": "x"}, ("missing hour",)),
    ({"fare": 1.0, "hour": 1, "payment": "x", "tips": 2.0}, ("unexpected tips",)),
    ({"fare": [1.0], "hour": 1, "payment": "x"}, ("fare", "shape")),
])
def test_bad_instances_name_the_input_and_the_problem(instance, fragments):
    with pytest.raises(tensors.RequestError) as error:
        tensors.predict_inputs({"instances": [instance]}, RAW)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_parse_errors():
    for body, fragment in ((b"", "empty"), (b"{", "JSON Parse error"), (b"[]", "Is not object"),
                           (b'{"a": "\xc3\x28"}', "UTF-8")):
        with pytest.raises(tensors.RequestError, match=fragment):
            tensors.parse_json(body)
    with pytest.raises(tensors.RequestError, match="signature_name"):
        tensors.signature_name({"signature_name": 3})


def test_responses_have_tf_servings_shapes():
    outputs = {"p": np.array([0.2, 0.7], dtype=np.float32)}
    # float32 written in its shortest form, as TF Serving writes it (0.2, not 0.2000000029802...).
    assert tensors.predict_response(outputs, columnar=False) == {"predictions": [0.2, 0.7]}
    assert tensors.predict_response(outputs, columnar=True) == {"outputs": [0.2, 0.7]}
    two = dict(outputs, q=np.array([1, 2]))
    assert tensors.predict_response(two, columnar=False) == {
        "predictions": [{"p": 0.2, "q": 1}, {"p": 0.7, "q": 2}]}
    assert tensors.predict_response(two, columnar=True) == {"outputs": {"p": [0.2, 0.7], "q": [1, 2]}}
    assert tensors.classify_response(tensors.class_scores({"p": np.array([0.25])}, 1, "s")) == {
        "results": [[["0", 0.75], ["1", 0.25]]]}
    assert tensors.dumps({"v": float("nan")}) == b'{"v":NaN}'


def test_classify_examples_become_tf_examples_with_context():
    doc = {"context": {"company": "Flash Cab"},
           "examples": [{"fare": 1.5, "hour": 3, "payment": "Cash", "img": {"b64": "AAE="}}]}
    (serialized,) = tensors.examples_from_classify(doc)
    feature = tf.train.Example.FromString(serialized).features.feature
    assert feature["fare"].float_list.value == [1.5] and feature["hour"].int64_list.value == [3]
    assert feature["payment"].bytes_list.value == [b"Cash"] and feature["img"].bytes_list.value == [b"\0\1"]
    assert feature["company"].bytes_list.value == [b"Flash Cab"]
    with pytest.raises(tensors.RequestError, match="mixes"):
        tensors.examples_from_classify({"examples": [{"x": [1, "a"]}]})


def test_model_errors_read_as_one_line():
    spec = {"fare": tf.io.FixedLenFeature([], tf.float32)}
    parse = tf.function(lambda examples: tf.io.parse_example(examples, spec))
    (wrong_type,) = tensors.examples_from_classify({"examples": [{"fare": 12}]})  # int64, not float
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        parse(tf.constant([wrong_type]))
    message = tensors.model_error(error.value)
    assert message.startswith("The model rejected the input: ") and "Key: fare" in message
    assert "\n" not in message and "[Op:" not in message and "Detected at node" not in message


def test_classify_answers_a_multiclass_model_s_classes_with_their_probabilities():
    outputs = {"classes": np.array([[b"Adelie", b"Chinstrap", b"Gentoo"]] * 2),
               "probabilities": np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)}
    scores = tensors.class_scores(outputs, 2, "serving_default")
    assert [[label for label, _ in row] for row in scores] == [["Adelie", "Chinstrap", "Gentoo"]] * 2
    np.testing.assert_allclose([[s for _, s in row] for row in scores], outputs["probabilities"])
    assert tensors.classify_response(scores)["results"][1][2][0] == "Gentoo"


def test_classify_of_one_probability_is_the_two_classes_and_regress_needs_one_value():
    (row,) = tensors.class_scores({"probability": np.array([0.25], np.float32)}, 1, "s")
    assert row == [("0", 0.75), ("1", 0.25)]
    with pytest.raises(tensors.RequestError, match=r"returns 3 values per example; regress here needs one"):
        tensors.single_values({"probabilities": np.zeros((2, 3))}, 2, "s", "regress")
    with pytest.raises(tensors.RequestError, match=r"has outputs a, b: classify here needs a single"):
        tensors.class_scores({"a": np.zeros(2), "b": np.zeros(2)}, 2, "s")
