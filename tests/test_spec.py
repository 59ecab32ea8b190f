"""The dataset spec: loading, validation errors that name the key and the fix, label expressions."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import yaml

from models import expression, kinds, names
from models import spec as spec_lib
from pipeline.config import DEFAULT_SPEC_DIR

TAXI = spec_lib.load(DEFAULT_SPEC_DIR)


def _write(tmp_path, values, schema=False):
    directory = tmp_path / "spec"
    directory.mkdir(exist_ok=True)
    (directory / spec_lib.SPEC_FILE).write_text(yaml.safe_dump(values, sort_keys=False))
    if schema:
        shutil.copy(TAXI.schema_path, directory / spec_lib.SCHEMA_FILE)
    return str(directory)


def _taxi_values():
    return TAXI.to_mapping()


def test_taxi_spec_declares_the_taxi_model():
    assert TAXI.label.name == "big_tipper" and TAXI.task.task == "binary"
    assert TAXI.label_source_columns == ("tips",)  # fare is a feature too
    assert set(TAXI.serving_columns) == {
        "fare", "trip_miles", "trip_seconds", "payment_type", "company", "trip_start_hour",
        "trip_start_day", "trip_start_month", "pickup_community_area", "dropoff_community_area",
        "pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"}
    pickup, dropoff = TAXI.features_of_kind(kinds.Coordinates)
    assert pickup.share == dropoff.share == "place"
    assert TAXI.resolved_data_root().endswith("chicago_taxi_pipeline/data/simple")


def test_round_trip_keeps_every_declaration(tmp_path):
    again = spec_lib.load(_write(tmp_path, _taxi_values(), schema=True))
    assert again.to_mapping() == TAXI.to_mapping()
    assert again.to_json() == TAXI.to_json()
    assert spec_lib.from_json(TAXI.to_json()).to_mapping() == TAXI.to_mapping()


@pytest.mark.parametrize("edit, match", [
    (lambda v: v.update(colour="red"), r"colour: unknown key; allowed: name, data_root"),
    (lambda v: v["features"].update(fare={"kind": "money"}),
     r"features\.fare: kind: 'money' is unknown; allowed: numeric, categorical"),
    (lambda v: v["features"].update(fare={"kind": "numeric", "scale": "cube"}),
     r"features\.fare: scale: 'cube' is not one of linear, log"),
    (lambda v: v["features"].update(fare={"kind": "numeric", "top_k": 3}),
     r"features\.fare: unknown key\(s\) top_k for kind numeric; allowed: scale, buckets"),
    (lambda v: v["label"].update(expression="tips > 0.2 * price"),
     r"has no column 'price'"),
    (lambda v: v["label"].update(expression="__import__('os')"),
     r"label\.expression: .* uses Call, which label expressions do not allow"),
    (lambda v: v["label"].update(expression="tips + fare"),
     r"label\.expression: 'tips \+ fare' is a number; a binary label from an expression needs a "
     r"comparison"),
    (lambda v: v["label"].update(task="ranking"),
     r"label\.task: 'ranking' is not a task; allowed: binary, multiclass, regression"),
    (lambda v: v.update(label={"column": "fare", "task": "binary", "positive": "1"}),
     r"label\.column: 'fare' is also a feature"),
    (lambda v: v.update(label={"column": "tips", "task": "binary"}),
     r"label\.positive: a binary label column needs its positive class"),
    (lambda v: v["features"]["dropoff"].update(buckets=10),
     r"features\.(pickup|dropoff)\.share: 'place' is shared with (dropoff|pickup), which has "
     r"different settings"),
    (lambda v: v.update(slices=["weather"]), r"slices: 'weather' is not a column of this spec"),
    (lambda v: v.update(model={"hidden_units": [0]}), r"model: hidden_units: \[0\] must be"),
    (lambda v: v.update(model={"dropout": 0.1}), r"model: .*dropout.*allowed: hidden_units"),
    (lambda v: v.update(training={"max_epochs": 0}), r"training: max_epochs: 0 must be a positive integer"),
    (lambda v: v.update(training={"batch_size": 3.5}), r"training: batch_size: 3.5 must be a positive"),
    (lambda v: v.update(training={"steps": 100}), r"training: .*steps.*allowed: batch_size, max_epochs, "
                                                   r"patience"),
])
def test_bad_specs_name_the_key_and_the_fix(tmp_path, edit, match):
    values = _taxi_values()
    edit(values)
    with pytest.raises(spec_lib.SpecError, match=match):
        spec_lib.load(_write(tmp_path, values, schema=True))


def test_every_spec_error_names_the_file(tmp_path):
    values = _taxi_values()
    values["features"]["fare"] = {"kind": "money"}
    directory = _write(tmp_path, values)
    with pytest.raises(spec_lib.SpecError, match=os.path.join(directory, "dataset.yaml")):
        spec_lib.load(directory)


def test_spec_and_schema_must_agree(tmp_path):
    values = _taxi_values()
    values["features"]["payment_type"] = {"kind": "numeric"}  # a string column in the schema
    with pytest.raises(spec_lib.SpecError, match=r"'payment_type' is a string \(BYTES\)"):
        spec_lib.load(_write(tmp_path, values, schema=True))


def test_missing_spec_says_how_to_write_one(tmp_path):
    with pytest.raises(spec_lib.SpecError, match=r"No dataset spec at .*python -m pipeline init"):
        spec_lib.load(str(tmp_path))


def _evaluate(text, **columns):
    values = {k: tf.constant(v, tf.float32) for k, v in columns.items()}
    return expression.parse(text).evaluate(values).numpy()


def test_expressions_compute_what_they_say():
    tips = [0.0, 3.0, 1.0, float("nan")]
    fare = [10.0, 10.0, 5.0, 10.0]
    np.testing.assert_array_equal(_evaluate("tips > 0.2 * fare", tips=tips, fare=fare),
                                  [False, True, False, False])  # missing compares false
    np.testing.assert_allclose(_evaluate("(tips - 1) / fare", tips=tips[:3], fare=fare[:3]),
                               [-0.1, 0.2, 0.0])
    np.testing.assert_array_equal(_evaluate("tips > 0 and not fare > 8", tips=tips, fare=fare),
                                  [False, False, True, False])
    np.testing.assert_array_equal(_evaluate("0 < tips <= 1", tips=tips, fare=fare),
                                  [False, False, True, False])
    assert expression.parse("tips > 0.2 * fare").columns == {"tips", "fare"}


@pytest.mark.parametrize("text, match", [
    ("tips > 'x'", r"only numbers may appear as constants"),
    ("tips.real > 1", r"uses Attribute"),
    ("[tips][0] > 1", r"uses (Subscript|List)"),
    ("lambda: 1", r"uses Lambda"),
    ("tips >", r"is not a formula"),
    ("3 > 2", r"names no column"),
])
def test_expressions_outside_the_whitelist_are_refused(text, match):
    with pytest.raises(expression.ExpressionError, match=match):
        expression.parse(text)


def test_column_names_tensorflow_cannot_hold_are_made_safe_and_collisions_refused():
    assert names.safe_name("mean radius") == "mean_radius"
    assert names.safe_name("od280/od315") == "od280_od315"
    assert names.safe_name("_id") == "x_id"
    # Serving inputs keep every name TensorFlow accepts, so clients of existing models keep working.
    assert [names.raw_input_name(c) for c in ("fare", "od280/od315", "mean radius", "_id")] == [
        "fare", "od280/od315", "mean_radius", "x_id"]
    assert kinds.transformed_name("mean radius") == "mean_radius_xf"
    values = _taxi_values()
    values["features"]["trip miles"] = dict(values["features"]["trip_miles"])
    with pytest.raises(spec_lib.SpecError, match=r"features.trip miles: 'trip miles' and 'trip_miles' "
                                                 r"are the same name to TensorFlow"):
        spec_lib.from_mapping(values, TAXI.directory)
