"""The input checks name the file, the column and the fix."""
import os

import pytest
import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils

from models.preprocessing import SPEC_KEY, preprocessing_fn
from models.raw_examples import column_types
from pipeline.data_checks import InputDataError, check_data_root
from tests.conftest import TAXI_SPEC, write_csv


@pytest.fixture
def sample(taxi_rows):
    fieldnames, rows = taxi_rows
    return fieldnames, [dict(r) for r in rows[:50]]


def test_the_taxi_sample_passes_and_rows_are_counted(tmp_path, sample):
    fieldnames, rows = sample
    write_csv(str(tmp_path / "a.csv"), fieldnames, rows[:30])
    write_csv(str(tmp_path / "b.csv"), fieldnames, rows[30:])
    check = check_data_root(str(tmp_path), TAXI_SPEC)
    assert check.rows == len(rows) and check.warnings == []


def test_unknown_columns_are_allowed_with_a_warning(tmp_path, sample):
    fieldnames, rows = sample
    for row in rows:
        row["driver_rating"] = "5"
    write_csv(str(tmp_path / "data.csv"), fieldnames + ["driver_rating"], rows)
    check = check_data_root(str(tmp_path), TAXI_SPEC)
    assert check.rows == len(rows)
    assert check.warnings == [f"{tmp_path / 'data.csv'}: column(s) driver_rating are not used by the "
                              "model and are ignored."]


def test_missing_directory(tmp_path):
    with pytest.raises(InputDataError, match="does not exist.*--data-root"):
        check_data_root(str(tmp_path / "nowhere"), TAXI_SPEC)


def test_empty_directory(tmp_path):
    with pytest.raises(InputDataError, match="has no files"):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_a_file_instead_of_a_directory(tmp_path, sample):
    path = write_csv(str(tmp_path / "data.csv"), *sample)
    with pytest.raises(InputDataError, match="is a file.*--data-root " + str(tmp_path)):
        check_data_root(path, TAXI_SPEC)


def test_empty_file(tmp_path):
    (tmp_path / "data.csv").write_text("")
    with pytest.raises(InputDataError, match=r"data\.csv is empty"):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_header_only(tmp_path, sample):
    write_csv(str(tmp_path / "data.csv"), sample[0], [])
    with pytest.raises(InputDataError, match=r"data\.csv has a header but no data rows"):
        check_data_root(str(tmp_path), TAXI_SPEC)


@pytest.mark.parametrize("column", ["payment_type", "tips", "pickup_latitude"])
def test_missing_required_column(tmp_path, sample, column):
    fieldnames, rows = sample
    kept = [f for f in fieldnames if f != column]
    write_csv(str(tmp_path / "data.csv"), kept, [{k: r[k] for k in kept} for r in rows])
    with pytest.raises(InputDataError, match=rf"data\.csv is missing required column\(s\): {column} \(declared in "):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_text_in_a_numeric_column_names_line_and_column(tmp_path, sample):
    fieldnames, rows = sample
    rows[3]["fare"] = "twelve dollars"
    write_csv(str(tmp_path / "data.csv"), fieldnames, rows)
    with pytest.raises(InputDataError) as error:
        check_data_root(str(tmp_path), TAXI_SPEC)
    message = str(error.value)
    assert "data.csv" in message and "line 5, column 'fare': 'twelve dollars'" in message
    assert "leave the cell empty" in message


def test_empty_numeric_cells_are_allowed(tmp_path, sample):
    fieldnames, rows = sample
    for row in rows:
        row["trip_seconds"] = ""
    write_csv(str(tmp_path / "data.csv"), fieldnames, rows)
    assert check_data_root(str(tmp_path), TAXI_SPEC).rows == len(rows)


def test_non_utf8_bytes(tmp_path, sample):
    path = write_csv(str(tmp_path / "data.csv"), *sample)
    with open(path, "ab") as f:
        f.write(b"\xff\xfe,broken\n")
    with pytest.raises(InputDataError, match="not UTF-8"):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_exactly_the_columns_preprocessing_reads_are_required(tmp_path, sample):
    """What preprocessing_fn reads, as tf.Transform traces it, not the feature lists the check uses."""
    spec = schema_utils.schema_as_feature_spec(
        io_utils.SchemaReader().read(TAXI_SPEC.schema_path)).feature_spec

    def traced_fn(inputs):
        return preprocessing_fn(inputs, {SPEC_KEY: TAXI_SPEC.to_json()})

    # Traced in compat.v1 mode, as the pipeline's Transform runs it.
    read = set(tft.get_analyze_input_columns(traced_fn, spec, force_tf_compat_v1=True)) | set(
        tft.get_transform_input_columns(traced_fn, spec, force_tf_compat_v1=True))
    assert {"tips", "payment_type", "pickup_latitude"} <= read  # the tracing sees columns
    fieldnames, rows = sample
    needed = [c for c in fieldnames if c in read]
    assert len(needed) == len(read)

    # Those columns alone are enough...
    write_csv(str(tmp_path / "exact" / "data.csv"), needed, [{c: r[c] for c in needed} for r in rows])
    assert check_data_root(str(tmp_path / "exact"), TAXI_SPEC).rows == len(rows)
    # ...and each one is needed.
    for column in needed:
        kept = [c for c in needed if c != column]
        write_csv(str(tmp_path / column / "data.csv"), kept, [{c: r[c] for c in kept} for r in rows])
        with pytest.raises(InputDataError, match=rf"missing required column\(s\): {column} \(declared in "):
            check_data_root(str(tmp_path / column), TAXI_SPEC)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity"])
def test_nan_and_inf_are_rejected(tmp_path, sample, value):
    fieldnames, rows = sample
    for row in rows[:30]:  # a storm, not a single cell
        row["trip_miles"] = value
    write_csv(str(tmp_path / "data.csv"), fieldnames, rows)
    with pytest.raises(InputDataError, match=rf"line 2, column 'trip_miles': '{value}' is not a finite"):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_rows_with_the_wrong_number_of_fields(tmp_path, sample):
    path = write_csv(str(tmp_path / "data.csv"), *sample)
    with open(path, "a", encoding="utf-8") as f:
        f.write('1,2,"unbalanced quote,3\n')
    with pytest.raises(InputDataError, match=r"line 52: \d+ fields where the header has 18"):
        check_data_root(str(tmp_path), TAXI_SPEC)


def test_every_column_in_the_schema_is_known():
    assert set(column_types(TAXI_SPEC.schema_path)) == set(TAXI_SPEC.known_columns)
