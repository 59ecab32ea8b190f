"""preprocessing_fn on a handful of real taxi rows, through tf.Transform's analyzers on Beam."""
import tempfile

import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from models import kinds
from models.preprocessing import SPEC_KEY, preprocessing_fn
from tests.conftest import TAXI_SPEC
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

ROWS = 40
CUSTOM_CONFIG = {SPEC_KEY: TAXI_SPEC.to_json()}  # what the pipeline passes Transform
NUMERIC_FEATURES = [f.name for f in TAXI_SPEC.features_of_kind(kinds.Numeric)]


def _preprocessing_fn(inputs):
    return preprocessing_fn(inputs, CUSTOM_CONFIG)


def _raw_instances(taxi_rows, schema, count=ROWS):
    """CSV rows as tf.Transform instance dicts: one-element lists, empty lists for empty cells."""
    _, rows = taxi_rows
    types = {f.name: f.type for f in schema.feature}
    convert = {schema_pb2.INT: lambda v: int(float(v)), schema_pb2.FLOAT: float,
               schema_pb2.BYTES: lambda v: v.encode()}
    return [{name: ([convert[types[name]](row[name])] if row[name] != "" else [])
             for name in types} for row in rows[:count]]


@pytest.fixture(scope="module")
def transformed(taxi_rows):
    schema = io_utils.SchemaReader().read(TAXI_SPEC.schema_path)
    raw = _raw_instances(taxi_rows, schema)
    # Row 0 has no coordinates in the taxi data; make row 1 lose its dropoff too, row 2 have an
    # out-of-range hour and row 3 lose its miles and seconds, so every path is exercised whatever the
    # sample holds.
    raw[1]["dropoff_latitude"], raw[1]["dropoff_longitude"] = [], []
    raw[2]["trip_start_hour"] = [99]
    raw[3]["trip_miles"], raw[3]["trip_seconds"] = [], []
    metadata = dataset_metadata.DatasetMetadata(schema)
    with tempfile.TemporaryDirectory() as temp, tft_beam.Context(temp_dir=temp, force_tf_compat_v1=True):
        (outputs, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            _preprocessing_fn, output_record_batches=False)
    return raw, outputs


def test_every_model_input_and_the_label_are_produced(transformed):
    _, outputs = transformed
    assert len(outputs) == ROWS
    assert {i.name for i in TAXI_SPEC.model_inputs} | {TAXI_SPEC.transformed_label} <= set(outputs[0])


def test_label_is_big_tipper(transformed):
    raw, outputs = transformed
    for row, out in zip(raw, outputs):
        expected = int(row["tips"][0] > 0.2 * row["fare"][0])  # schemas/taxi: tips > 0.2 * fare
        assert out[TAXI_SPEC.transformed_label] == expected


def test_numeric_features_are_z_scores_of_log1p(transformed):
    """(log1p(v) - mean) / std over the analyzed rows; a missing v is the mean of the present values."""
    raw, outputs = transformed
    for key in NUMERIC_FEATURES:
        values = np.array([r[key][0] if r[key] else np.nan for r in raw])
        imputed = np.where(np.isnan(values), np.nanmean(values), values)
        logs = np.log1p(np.maximum(imputed, 0.0))
        expected = (logs - logs.mean()) / logs.std()
        actual = np.array([o[kinds.transformed_name(key)] for o in outputs])
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4, err_msg=key)


def test_categorical_ids_are_in_range(transformed):
    _, outputs = transformed
    for model_input in TAXI_SPEC.model_inputs:
        if model_input.num_ids is None:
            continue
        ids = [o[model_input.name] for o in outputs]
        assert min(ids) >= 0 and max(ids) < model_input.num_ids, model_input.name


def test_hour_id_is_its_offset_from_min_and_out_of_range_maps_to_zero(transformed):
    raw, outputs = transformed
    hour = kinds.transformed_name("trip_start_hour")  # categorical_int, min 0
    assert outputs[2][hour] == 0
    for row, out in list(zip(raw, outputs))[3:]:
        assert out[hour] == row["trip_start_hour"][0] + 1


def test_vocabulary_gives_equal_strings_equal_ids(transformed):
    raw, outputs = transformed
    key = kinds.transformed_name("payment_type")
    ids = {}
    for row, out in zip(raw, outputs):
        ids.setdefault(row["payment_type"][0], set()).add(out[key])
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == len(ids)


def test_missing_coordinates_get_the_unknown_location(transformed):
    raw, outputs = transformed
    (coordinates,) = [f for f in TAXI_SPEC.features_of_kind(kinds.Coordinates) if f.name == "dropoff"]
    dropoff, unknown = kinds.transformed_name("dropoff"), coordinates.num_ids - 1
    assert outputs[1][dropoff] == unknown
    for row, out in zip(raw, outputs):
        has_coordinates = bool(row["dropoff_latitude"]) and bool(row["dropoff_longitude"])
        assert (out[dropoff] == unknown) != has_coordinates
        assert 0 <= out[dropoff] < coordinates.num_ids



@pytest.mark.slow
def test_a_row_gets_the_same_bucket_alone_or_in_a_batch(taxi_rows):
    """The server batches requests, so a row's features must not depend on the other rows. 0.8 miles
    is common, so it becomes a quantile boundary; TF's log1p differs in the last bit between its
    vectorized kernel (runs of 8+ values) and its scalar one, which moved such rows across it."""
    schema = io_utils.SchemaReader().read(TAXI_SPEC.schema_path)
    raw = _raw_instances(taxi_rows, schema)
    for i, row in enumerate(raw):
        row["trip_miles"] = [0.8] if i % 2 else [0.5 + i / 10]
    metadata = dataset_metadata.DatasetMetadata(schema)
    bucket = kinds.bucket_name("trip_miles")
    with tempfile.TemporaryDirectory() as temp, tft_beam.Context(
            temp_dir=temp, force_tf_compat_v1=True, desired_batch_size=ROWS):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(_preprocessing_fn)
        buckets = {}
        for size in (1, 16):
            rows = [raw[1]] * size
            (out, _) = ((rows, metadata), transform_fn) | tft_beam.TransformDataset(
                output_record_batches=False)
            buckets[size] = {o[bucket] for o in out}
    assert buckets[1] == buckets[16] and len(buckets[16]) == 1, buckets


def test_strings_are_stripped_exactly_as_tf_strings_strip_does():
    """The regex that stands in for StringStrip (which TF.js lacks) drops the same characters: ASCII
    whitespace at either end, nothing inside, nothing non-ASCII."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    values = tf.constant([" Cash ", "\tCredit Card\r\n", "\v\fNo  Charge\v", "   ", "", "a b",
                          "\u00a0Unicode space\u00a0", "x\n\ny", " \n"])
    np.testing.assert_array_equal(kinds.strip_whitespace(values).numpy(),
                                  tf.strings.strip(values).numpy())
