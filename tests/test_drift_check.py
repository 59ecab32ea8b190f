"""DriftCheck's executor on real TFDV statistics of taxi samples, against the curated schema's drift
thresholds (L-infinity for payment_type and company, Jensen-Shannon for fare, miles, seconds)."""
import logging

import pytest

from components.data_gate import DataValidationError
from components.drift_check import DriftCheck
from tests.validation_helpers import curated_schema, run_component, statistics
from tests.conftest import TAXI_SPEC


@pytest.fixture(scope="module")
def samples(taxi_rows):
    """Older and newer halves of the trips by time (every 5th row, as the continuous-training test)."""
    fieldnames, rows = taxi_rows
    by_time = sorted(rows, key=lambda r: int(r["trip_start_timestamp"]))
    half = len(by_time) // 2
    return fieldnames, {"older": by_time[:half][::5], "older_other": by_time[:half][3::5],
                        "newer": by_time[half:][::5],
                        "card_only": [r for r in by_time[half:][::5] if r["payment_type"] == "Credit Card"]}


@pytest.fixture(scope="module")
def artifacts(samples, tmp_path_factory):
    fieldnames, rows = samples
    root = tmp_path_factory.mktemp("drift")
    # DriftCheck compares the train splits only.
    stats = {name: statistics(root / name, fieldnames, {"train": sample})
             for name, sample in rows.items()}
    return curated_schema(root / "schema"), stats


def _check(artifacts, current, previous, accept_drift=False):
    schema, stats = artifacts
    inputs = {"statistics": [stats[current]], "schema": [schema],
              "previous_statistics": [stats[previous]] if previous else []}
    run_component(DriftCheck, inputs, accept_drift=accept_drift, schema_file=TAXI_SPEC.schema_path)


def test_newer_trips_drifted_in_miles_stop_the_run_naming_only_the_drifted_column(artifacts):
    """The newer trips record far fewer zero-mile trips: trip_miles' approximate Jensen-Shannon
    divergence is 0.22 here, above its 0.2 threshold."""
    with pytest.raises(DataValidationError, match="drifted from the previous run's data") as error:
        _check(artifacts, "newer", previous="older")
    message = str(error.value)
    assert "[train] column 'trip_miles'" in message and "above the threshold 0.2" in message
    # Only drift is this check's business: the schema anomalies of the same statistics (TFDV's CSV
    # reader counts company's empty cells as absent, 34% of rows) are the validation gate's.
    assert "company" not in message and len(message.splitlines()) == 3, message
    assert "drift thresholds in the curated schema" in message and TAXI_SPEC.schema_path in message


def test_a_changed_category_mix_stops_the_run_on_the_l_infinity_threshold(artifacts):
    """An export with only card payments: payment_type's mix moves far beyond its 0.2 threshold."""
    with pytest.raises(DataValidationError, match="column 'payment_type': High Linfty distance"):
        _check(artifacts, "card_only", previous="newer")


def test_data_within_every_threshold_passes(artifacts):
    """Another sample of the older trips: every comparator stays below its threshold here (largest
    trip_seconds, Jensen-Shannon 0.05)."""
    _check(artifacts, "older_other", previous="older")


def test_the_first_run_has_no_previous_data_and_passes(artifacts):
    _check(artifacts, "newer", previous=None)


def test_an_accepted_drift_is_logged_and_the_run_goes_on(artifacts, caplog):
    with caplog.at_level(logging.WARNING):
        _check(artifacts, "newer", previous="older", accept_drift=True)
    (warning,) = [r.getMessage() for r in caplog.records if "Drift accepted" in r.getMessage()]
    assert "column 'trip_miles'" in warning
