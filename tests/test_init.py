"""`python -m pipeline init`: the decisions it makes from a table, and the spec and schema it writes."""
import os
import tempfile

import pandas as pd
import pytest
from click.testing import CliRunner
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from models import kinds, spec as spec_lib
from pipeline import cli, init_spec
from tests.conftest import TAXI_CSV
from tests.tabular_data import write_flights


@pytest.fixture(scope="module")
def flights_spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("flights")
    write_flights(str(root / "data"))
    spec, decisions = init_spec.write(str(root / "spec"), str(root / "data"), "delayed")
    return spec, {d.column: d for d in decisions}


def test_every_column_kind_is_decided_with_its_reason(flights_spec):
    spec, decisions = flights_spec
    features = {f.name: f for f in spec.features}
    assert spec.task.task == "binary" and spec.task.positive == "yes" and spec.task.negative == "no"
    assert spec.ignored["flight_id"] == "unique per row (an identifier)"
    assert spec.ignored["source"] == "constant ('ops-export')"
    assert spec.ignored["remarks"].startswith("almost always missing")
    # pandas wrote the hour as 8.0 (the column has gaps): still a category of whole numbers
    assert isinstance(features["dep_hour"], kinds.CategoricalInt)
    assert (features["dep_hour"].min, features["dep_hour"].max) == (0, 23)
    assert features["distance_miles"].scale == "log"  # a heavy right tail
    assert features["temperature_c"].scale == "linear"  # negative values: no log
    assert isinstance(features["carrier code"], kinds.Categorical)
    assert features["gate"] == kinds.Coordinates(name="gate", latitude="gate_latitude",
                                                 longitude="gate_longitude", buckets=10)
    assert features["origin"].share == features["dest"].share == "origin_dest"
    assert "overlap" in decisions["origin"].reason or decisions["dest"].use.startswith("shares")
    assert spec.gate.threshold == 0.6


def test_the_written_files_load_and_the_schema_is_curated(flights_spec):
    spec, _ = flights_spec
    again = spec_lib.load(spec.directory)  # validated, and checked against the schema
    assert again.to_mapping() == spec.to_mapping()
    with open(spec.spec_path, encoding="utf-8") as f:
        text = f.read()
    assert "# init: unique per row" not in text  # ignored columns carry their reason as the value
    assert "distance_miles: {kind: numeric, scale: log, buckets: 10}  # init: numbers, heavy" in text
    schema = io_utils.SchemaReader().read(spec.schema_path)
    by_name = {f.name: f for f in schema.feature}
    assert list(by_name["delayed"].not_in_environment) == ["SERVING"]
    assert set(schema.default_environment) == {"TRAINING", "SERVING"}
    assert by_name["carrier code"].value_count.min == 0  # it has gaps
    assert by_name["origin"].value_count.min == 1 and by_name["origin"].presence.min_fraction == 1.0
    assert by_name["origin"].drift_comparator.infinity_norm.threshold == 0.25
    js = by_name["distance_miles"].drift_comparator.jensen_shannon_divergence
    assert js.source.type == schema_pb2.HistogramSelection.QUANTILES
    assert by_name["distance_miles"].float_domain.min == 0.0  # headroom stops at zero
    assert not by_name["remarks"].HasField("presence")  # ignored: unconstrained


def _table(tmp_path, frame):
    os.makedirs(tmp_path / "data", exist_ok=True)
    frame.to_csv(tmp_path / "data" / "t.csv", index=False)
    return str(tmp_path / "data")


@pytest.mark.parametrize("label, expected", [
    (["a", "b", "a", "c"] * 10, ("multiclass", None)),
    ([0, 1] * 20, ("binary", "1")),
    (["True", "False", "False"] * 10, ("binary", "True")),
    (["cat", "dog", "dog"] * 10, ("binary", "cat")),  # no yes/true/1: the minority class
    (list(range(300)), ("regression", None)),  # a count spanning hundreds of values
    ([0.5, 1.25, 3.0, 7.5] * 10, ("regression", None)),
])
def test_the_task_and_positive_class_follow_the_label(tmp_path, label, expected):
    frame = pd.DataFrame({"x": range(len(label)), "y": [i % 3 for i in range(len(label))],
                          "label": label})
    mapping, _, _ = init_spec.infer(_table(tmp_path, frame), "label")
    assert (mapping["label"]["task"], mapping["label"].get("positive")) == expected


def test_refuses_to_overwrite_and_names_a_missing_label(tmp_path):
    root = _table(tmp_path, pd.DataFrame({"x": [1.5, 2.5] * 20, "y": ["a", "b"] * 20}))
    with pytest.raises(init_spec.InitError, match=r"--label 'price' is not a column of .*; columns: x, y"):
        init_spec.write(str(tmp_path / "spec"), root, "price")
    init_spec.write(str(tmp_path / "spec"), root, "y")
    with pytest.raises(init_spec.InitError, match=r"dataset\.yaml, .*schema\.pbtxt already exist"):
        init_spec.write(str(tmp_path / "spec"), root, "y")
    init_spec.write(str(tmp_path / "spec"), root, "y", force=True)


def test_a_label_with_one_value_is_refused(tmp_path):
    root = _table(tmp_path, pd.DataFrame({"x": range(30), "label": ["same"] * 30}))
    with pytest.raises(init_spec.InitError, match=r"label column 'label' has 1 distinct value"):
        init_spec.infer(root, "label")


def test_cli_prints_each_decision_and_the_next_command(tmp_path):
    os.makedirs(tmp_path / "data")
    with open(TAXI_CSV, encoding="utf-8") as f:
        lines = f.readlines()[:400]
    (tmp_path / "data" / "trips.csv").write_text("".join(lines))
    result = CliRunner().invoke(cli.main, ["init", "--data-root", str(tmp_path / "data"),
                                           "--label", "payment_type", "--spec",
                                           str(tmp_path / "trips"), "--task", "multiclass"])
    assert result.exit_code == 0, result.output
    assert "coordinates 'pickup'" in result.output and "python -m pipeline run --spec" in result.output
    result = CliRunner().invoke(cli.main, ["init", "--data-root", str(tmp_path / "data"),
                                           "--label", "payment_type", "--spec", str(tmp_path / "trips")])
    assert result.exit_code == 2 and "--force" in result.output


def test_init_leaves_nothing_in_the_temporary_directory(tmp_path, monkeypatch):
    """TFDV writes the statistics it infers the schema from to a file, by default in a new directory
    under /tmp that it leaves behind."""
    os.makedirs(tmp_path / "data")
    os.makedirs(tmp_path / "tmp")
    with open(TAXI_CSV, encoding="utf-8") as f:
        (tmp_path / "data" / "trips.csv").write_text("".join(f.readlines()[:200]))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    init_spec.write(str(tmp_path / "spec"), str(tmp_path / "data"), "payment_type")
    assert os.listdir(tmp_path / "tmp") == []


def test_unknown_and_missing_labels_are_refused_with_file_and_line(flights_spec, tmp_path):
    from pipeline.data_checks import InputDataError, check_data_root  # pylint: disable=import-outside-toplevel

    spec, _ = flights_spec
    frame = pd.read_csv(os.path.join(spec.resolved_data_root(), "flights.csv")).iloc[:20]
    frame.loc[3, "delayed"] = "maybe"
    frame.loc[7, "delayed"] = None
    frame.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(InputDataError) as raised:
        check_data_root(str(tmp_path), spec)
    message = str(raised.value)
    assert "new.csv" in message
    assert "line 5, column 'delayed': label 'maybe' is not one of the spec's classes (no, yes)" in message
    assert "line 9, column 'delayed': the label is empty" in message
