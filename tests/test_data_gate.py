"""DataValidationGate's executor on the anomalies TFX's ExampleValidator finds in real TFDV statistics of
taxi rows, checked against the curated schema."""
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as example_validator
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.data_gate import DataValidationError, DataValidationGate
from tests.conftest import TAXI_SPEC
from tests.validation_helpers import curated_schema, run_component, statistics


@pytest.fixture(scope="module")
def clean_rows(taxi_rows):
    """Rows with every column the schema requires filled. TFDV's CSV reader counts an empty cell as
    absent, where CsvExampleGen writes a present feature with no value (see the schema's header)."""
    fieldnames, rows = taxi_rows
    schema = io_utils.SchemaReader().read(TAXI_SPEC.schema_path)
    required = [f.name for f in schema.feature if f.presence.min_fraction == 1.0]
    return fieldnames, [r for r in rows if all(r[name] for name in required)][:900]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    return curated_schema(tmp_path_factory.mktemp("schema") / "schema")


@pytest.fixture
def validate(schema, tmp_path):
    """Statistics of each split's rows -> ExampleValidator's anomalies artifact, as in the pipeline."""
    def run(fieldnames, rows_by_split):
        stats = statistics(tmp_path / "statistics", fieldnames, rows_by_split)
        anomalies = standard_artifacts.ExampleAnomalies()
        anomalies.uri = str(tmp_path / "anomalies")
        example_validator.Executor().Do({"statistics": [stats], "schema": [schema]},
                                        {"anomalies": [anomalies]}, {"exclude_splits": "[]"})
        return anomalies
    return run


def _split_anomalies(artifact, split):
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(f"{artifact.uri}/Split-{split}/SchemaDiff.pb"))
    return anomalies


def test_clean_data_passes(validate, clean_rows):
    fieldnames, rows = clean_rows
    anomalies = validate(fieldnames, {"train": rows[:600], "eval": rows[600:]})
    assert not any(_split_anomalies(anomalies, split).anomaly_info for split in ("train", "eval"))
    run_component(DataValidationGate, {"anomalies": [anomalies]}, schema_file=TAXI_SPEC.schema_path)


def test_a_column_the_schema_does_not_know_is_tolerated(validate, clean_rows):
    """Exports grow columns the model does not read; the input checks warn about them."""
    fieldnames, rows = clean_rows
    rows = [dict(r, export_batch="2026-11") for r in rows]
    anomalies = validate(fieldnames + ["export_batch"], {"train": rows[:600], "eval": rows[600:]})
    (reason,) = _split_anomalies(anomalies, "train").anomaly_info["export_batch"].reason
    assert reason.type == anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN
    run_component(DataValidationGate, {"anomalies": [anomalies]}, schema_file=TAXI_SPEC.schema_path)


def test_out_of_range_values_in_one_split_block_the_run_naming_split_and_column(validate, clean_rows):
    """Hours written 1-24 instead of 0-23 in the eval split only."""
    fieldnames, rows = clean_rows
    shifted = [dict(r, trip_start_hour=str(int(r["trip_start_hour"]) or 24)) for r in rows[600:]]
    anomalies = validate(fieldnames, {"train": rows[:600], "eval": shifted})
    with pytest.raises(DataValidationError, match=r"\[eval\] column 'trip_start_hour': Out-of-range") as error:
        run_component(DataValidationGate, {"anomalies": [anomalies]}, schema_file=TAXI_SPEC.schema_path)
    message = str(error.value)
    assert "[train]" not in message and len(message.splitlines()) == 3, message
    assert TAXI_SPEC.schema_path in message  # where to fix it if the change is intended


def test_a_missing_column_blocks_the_run(validate, clean_rows):
    fieldnames, rows = clean_rows
    without_fare = [name for name in fieldnames if name != "fare"]
    rows = [{name: r[name] for name in without_fare} for r in rows]
    anomalies = validate(without_fare, {"train": rows[:600], "eval": rows[600:]})
    with pytest.raises(DataValidationError, match=r"\[train\] column 'fare': Column dropped") as error:
        run_component(DataValidationGate, {"anomalies": [anomalies]}, schema_file=TAXI_SPEC.schema_path)
    assert "[eval] column 'fare': Column dropped" in str(error.value)
