"""Any table, declared not coded: `init` then `run` on tables the project has never seen, as a user
does it (pandas-written CSVs, no hand edits), for each task; the pushed model answers by task."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import palmerpenguins
import pytest
import tensorflow as tf

from models import spec as spec_lib
from models.raw_examples import column_types, to_tf_examples
from tests import report_browser
from tests.conftest import TAXI_CSV, cli_env, run_cli
from tests.tabular_data import write_flights

pytestmark = pytest.mark.slow


def _init(data, spec, label, *args):
    result = subprocess.run([sys.executable, "-m", "pipeline", "init", "--data-root", str(data),
                             "--label", label, "--spec", str(spec), *args],
                            capture_output=True, text=True, env=cli_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return spec_lib.load(str(spec))


def _run(root, spec):
    # The defaults: training length follows the table's size (models/trainer.py).
    result = run_cli("--spec", str(spec), "--output-dir", str(root / "out"),
                     "--serving-dir", str(root / "serving"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Model blessed" in result.stdout and "Pushed" in result.stdout, result.stdout[-3000:]
    (version,) = os.listdir(root / "serving" / spec_lib.load(str(spec)).label.name)
    model = tf.saved_model.load(str(root / "serving" / spec_lib.load(str(spec)).label.name / version))
    return model, _report(result, root)


def _report(result, root):
    """The run's report, as Chromium shows it offline (`run` prints its path last)."""
    path = result.stdout.rstrip().splitlines()[-1].removeprefix("Report: ")
    assert os.path.dirname(path) == str(root / "out" / "reports"), result.stdout[-500:]
    loaded = report_browser.load(path)
    assert loaded.console_errors == [] and loaded.outside_requests == []
    return loaded


def _curate_label_range(spec, low, high):
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel

    with open(spec.schema_path, encoding="utf-8") as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    label = next(f for f in schema.feature if f.name == spec.label.column)
    label.float_domain.min, label.float_domain.max = low, high
    with open(spec.schema_path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(schema))


def _serve(model, spec, rows):
    examples = to_tf_examples(rows, column_types(spec.schema_path, "SERVING"))
    return model.signatures["serving_default"](examples=tf.constant(examples))


def _rows(frame):
    return frame.fillna("").astype(str).to_dict("records")


def test_binary_flights_with_every_column_kind(tmp_path):
    write_flights(str(tmp_path / "data"))
    spec = _init(tmp_path / "data", tmp_path / "flights", "delayed")
    model, report = _run(tmp_path, tmp_path / "flights")
    assert {"ROC", "Precision-recall", "Calibration", "curve-loss"} <= set(report.figures)
    held_out = pd.read_csv(write_flights(str(tmp_path / "held_out"), rows=200, seed=1) + "/flights.csv")
    probability = _serve(model, spec, _rows(held_out))["probability"].numpy()
    truth = (held_out["delayed"] == "yes").to_numpy()
    assert probability.shape == (200,)
    # The rule behind the label is learnable: far better than chance on rows it never saw.
    assert probability[truth].mean() - probability[~truth].mean() > 0.25
    # "carrier code" cannot name a TensorFlow input: serving_raw takes it as "carrier_code" (the
    # serving check already compared both signatures through the server before the push).
    raw_inputs = model.signatures["serving_raw"].structured_input_signature[1]
    assert "carrier_code" in raw_inputs and "origin" in raw_inputs and "carrier code" not in raw_inputs


def test_multiclass_penguins(tmp_path):
    os.makedirs(tmp_path / "data")
    palmerpenguins.load_penguins().to_csv(tmp_path / "data" / "penguins.csv", index=False)
    spec = _init(tmp_path / "data", tmp_path / "penguins", "species")
    assert spec.task.classes == ("Adelie", "Chinstrap", "Gentoo")
    model, report = _run(tmp_path, tmp_path / "penguins")
    # The report follows the task: a confusion matrix, no binary curves.
    assert "Confusion matrix" in report.figures and "ROC" not in report.figures
    frame = pd.read_csv(tmp_path / "data" / "penguins.csv")
    outputs = _serve(model, spec, _rows(frame))
    probabilities, classes = outputs["probabilities"].numpy(), outputs["classes"].numpy()
    assert probabilities.shape == classes.shape == (len(frame), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    predicted = classes[np.arange(len(frame)), probabilities.argmax(axis=1)].astype(str)
    assert (predicted == frame["species"].to_numpy()).mean() > 0.9


def test_regression_taxi_fare_without_tips_or_payment(tmp_path):
    frame = pd.read_csv(TAXI_CSV).drop(columns=["tips", "payment_type"])
    os.makedirs(tmp_path / "data")
    frame.iloc[::5].to_csv(tmp_path / "data" / "trips.csv", index=False)
    spec = _init(tmp_path / "data", tmp_path / "fares", "fare")
    assert spec.task.task == "regression"
    # `init` leaves the label unconstrained; a curator gives it a range (as they review the schema),
    # over which the Evaluator buckets predictions for the whole eval split's figures.
    _curate_label_range(spec, 0.0, 2 * float(frame["fare"].max()))
    model, report = _run(tmp_path, tmp_path / "fares")
    assert {"Predicted vs actual (whole eval split)", "Residuals (whole eval split)",
            "Predicted vs actual per slice", "Residuals per slice"} <= set(report.figures)
    # The overall figures' prediction buckets hold the whole eval split: their examples add up to
    # TFMA's example count, and weighted, their means to TFMA's mean label and mean prediction.
    _, *buckets = report.tables["prediction-buckets"]
    examples = [float(row[1]) for row in buckets]
    header, overall = report.tables["metrics"][0], report.tables["metrics"][1]
    assert overall[0] == "Overall" and len(buckets) > 3
    assert sum(examples) == float(overall[header.index("examples")])
    for column, label in ((2, "mean label"), (3, "mean prediction")):
        mean = sum(n * float(row[column]) for n, row in zip(examples, buckets)) / sum(examples)
        assert mean == pytest.approx(float(overall[header.index(label)]), rel=2e-3), label
    assert "ROC" not in report.figures and "Confusion matrix" not in report.figures
    held_out = frame.iloc[1::50]
    prediction = _serve(model, spec, _rows(held_out))["prediction"].numpy()
    rmse = float(np.sqrt(np.mean((prediction - held_out["fare"].to_numpy()) ** 2)))
    assert prediction.shape == (len(held_out),)
    assert rmse < 0.6 * held_out["fare"].std()  # well below always answering the mean
