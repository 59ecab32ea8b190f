"""The whole pipeline through the CLI on a 3,000-row taxi sample: push, serve raw examples, re-run cached."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2

import models  # noqa: F401  (Keras 2 and the custom layers, for load_model)
from models.raw_examples import column_types, to_tf_examples
from pipeline.cli import main
from pipeline.report import page
from pipeline.run_summary import open_store, summarize
from pipeline.serving import client
from pipeline.summary_view import METRIC_COLUMNS, slice_order, training_line
from tests import report_browser
from tests.conftest import TAXI_SPEC, cli_env, run_cli, write_csv

TYPES = client.serving_column_types(TAXI_SPEC)

pytestmark = pytest.mark.slow

PIPELINE_NAME = "taxi_big_tipper"
MAX_EVAL_EXAMPLES = 500


def _label(row):
    return float(row["tips"]) > 0.2 * float(row["fare"])  # schemas/taxi: tips > 0.2 * fare


def _args(data_root, root):
    return ["--data-root", data_root, "--output-dir", str(root / "out"),
            "--serving-dir", str(root / "serving"), "--train-steps", "300", "--eval-steps", "10",
            # ~600 eval rows: the Evaluator scores a sample (components/capped_evaluator.py).
            "--max-eval-examples", str(MAX_EVAL_EXAMPLES)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, everyday_data_root):
    """Two runs on the same data: the first pushes, the second is cached. Tests only read what these
    left; a test that runs the pipeline again does so on its own copy (`after_runs`)."""
    root = tmp_path_factory.mktemp("e2e")
    args = _args(everyday_data_root, root)
    push_dir = root / "serving" / "big_tipper"
    metadata = str(root / "out" / "metadata.sqlite")
    first = run_cli(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    first_id = summarize(metadata, PIPELINE_NAME).run_id
    versions_first = sorted(os.listdir(push_dir))
    second = run_cli(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    return {"root": root, "first": first, "second": second, "push_dir": push_dir,
            "data_root": everyday_data_root,
            "metadata": metadata, "first_id": first_id,
            "second_id": summarize(metadata, PIPELINE_NAME).run_id,
            "versions_first": versions_first, "versions_second": sorted(os.listdir(push_dir))}


@pytest.fixture
def after_runs(runs, tmp_path, everyday_data_root):
    """The state the two shared runs left, for one test to run the pipeline on: a copy of the
    metadata store (the artifacts it names stay where the shared runs wrote them, and no run
    rewrites an artifact) and of the serving directory."""
    (tmp_path / "out").mkdir()
    shutil.copy(runs["metadata"], tmp_path / "out" / "metadata.sqlite")
    shutil.copytree(runs["root"] / "serving", tmp_path / "serving")
    return {"args": _args(everyday_data_root, tmp_path), "root": tmp_path,
            "push_dir": tmp_path / "serving" / "big_tipper",
            "metadata": str(tmp_path / "out" / "metadata.sqlite")}


@pytest.fixture(scope="module")
def pushed(runs):
    (version,) = runs["versions_first"]
    return str(runs["push_dir"] / version)


@pytest.fixture(scope="module")
def held_out(taxi_rows):
    """Rows the pipeline never saw (the sample is every 5th row; these are the ones after)."""
    _, rows = taxi_rows
    return rows[1::5][:1000]


def test_first_run_pushes_one_servable_version(runs, pushed):
    assert "Model blessed" in runs["first"].stdout and "Pushed" in runs["first"].stdout
    assert "Serving check passed" in runs["first"].stdout
    # The extra column is reported and tolerated, as are the few unseen companies.
    assert "column(s) export_batch are not used by the model" in runs["first"].stderr
    assert os.path.basename(pushed).isdigit()  # TF Serving's <model>/<version>/ layout
    assert os.path.isfile(os.path.join(pushed, "saved_model.pb"))
    assert os.path.isdir(os.path.join(pushed, "assets"))  # the vocabularies travel with the model


def test_pushed_model_scores_raw_tf_examples(pushed, held_out):
    model = tf.saved_model.load(pushed)
    serve = model.signatures["serving_default"]
    examples = tf.constant(to_tf_examples(held_out, column_types(TAXI_SPEC.schema_path, "SERVING")))
    probabilities = serve(examples=examples)["probability"].numpy()
    assert probabilities.shape == (len(held_out),)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    auc = tf.keras.metrics.AUC(num_thresholds=1000)
    auc.update_state([_label(r) for r in held_out], probabilities)
    assert auc.result().numpy() > 0.9


def test_raw_feature_signature_agrees_with_tf_example_signature(pushed, held_out):
    model = tf.saved_model.load(pushed)
    rows = held_out[:200]
    spec = model.signatures["serving_raw"].structured_input_signature[1]
    instances = client.raw_request(rows, TYPES)["instances"]  # empty cells as the missing-value markers
    raw = {column: tf.constant([i[column] for i in instances], s.dtype) for column, s in spec.items()}
    from_raw = model.signatures["serving_raw"](**raw)["probability"].numpy()
    examples = tf.constant(to_tf_examples(rows, column_types(TAXI_SPEC.schema_path, "SERVING")))
    from_examples = model.signatures["serving_default"](examples=examples)[
        "probability"].numpy()
    np.testing.assert_allclose(from_raw, from_examples, atol=1e-5)


def test_transform_features_signature_yields_the_label(pushed, held_out):
    model = tf.saved_model.load(pushed)
    rows = held_out[:50]
    out = model.signatures["transform_features"](
        examples=tf.constant(to_tf_examples(rows, column_types(TAXI_SPEC.schema_path))))
    np.testing.assert_array_equal(out[TAXI_SPEC.transformed_label].numpy(),
                                  [int(_label(r)) for r in rows])


def test_pushed_model_loads_as_a_keras_model(pushed):
    loaded = tf.keras.models.load_model(pushed)
    assert isinstance(loaded, tf.keras.Model)
    assert sorted(loaded.input) == sorted(i.name for i in TAXI_SPEC.model_inputs)


def test_second_run_is_served_from_cache_and_pushes_nothing(runs):
    summary = summarize(runs["metadata"], PIPELINE_NAME, runs["second_id"])
    states = {c.name: c.state for c in summary.components}
    # A resolver has no executor and is never cached: it re-queries MLMD (milliseconds).
    assert states.pop("latest_blessed_model_resolver") == "ran"
    assert states.pop("previous_data_statistics_resolver") == "ran"
    assert len(states) == 12 and all(state == "cached" for state in states.values()), states
    assert runs["versions_second"] == runs["versions_first"]
    assert "nothing new pushed" in runs["second"].stdout


def _records(runs):
    """The run records, by run id."""
    records = [json.loads(p.read_text()) for p in (runs["root"] / "out" / "runs").glob("*.json")]
    return {r["run_id"]: r for r in records}


def test_every_run_leaves_a_record_and_the_runs_command_lists_them(runs):
    records = _records(runs)
    assert set(records) == {runs["first_id"], runs["second_id"]}
    first, second = records[runs["first_id"]], records[runs["second_id"]]
    assert first["blessed"] is True and first["pushed_this_run"] is True
    assert first["data"]["input_fingerprint"] and first["metrics"]["Overall"]["auc"] > 0.85
    # The eval cap applied, and said so.
    assert first["metrics"]["Overall"]["example_count"] == MAX_EVAL_EXAMPLES
    assert first["evaluation_examples"]["evaluated"] == MAX_EVAL_EXAMPLES
    assert first["evaluation_examples"]["split_examples"] > MAX_EVAL_EXAMPLES
    assert (f"Evaluated a sample: {MAX_EVAL_EXAMPLES} of the eval split's "
            f"{first['evaluation_examples']['split_examples']} examples") in runs["first"].stdout
    assert {c["name"] for c in first["components"]} >= {"Transform", "Trainer", "Evaluator"}
    assert second["pushed_this_run"] is False and second["pushed_path"] == first["pushed_path"]
    assert first["error"] is second["error"] is None
    listing = subprocess.run([sys.executable, "-m", "pipeline", "runs", "--output-dir",
                              str(runs["root"] / "out")], capture_output=True, text=True,
                             timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert first["run_id"] in listing.stdout and second["run_id"] in listing.stdout


def test_summary_command_prints_the_latest_or_a_given_run(runs):
    out = str(runs["root"] / "out")
    pushed_path = _records(runs)[runs["first_id"]]["pushed_path"]
    latest = CliRunner().invoke(main, ["summary", "--output-dir", out])
    assert latest.exit_code == 0, latest.output
    assert f"Run {runs['second_id']}" in latest.output
    assert "Nothing changed, nothing new pushed" in latest.output and pushed_path in latest.output
    first = CliRunner().invoke(main, ["summary", "--output-dir", out, "--run-id", runs["first_id"]])
    assert first.exit_code == 0, first.output
    assert f"Run {runs['first_id']}" in first.output
    assert "Evaluation (eval split)" in first.output and "payment_type=Cash" in first.output
    assert "Model blessed" in first.output and "Serving check passed" in first.output
    assert f"Pushed {pushed_path}" in first.output


def _report(root, run_id):
    return page.report_path(str(root / "out"), run_id)


def _section(html, name):
    """One <section> of a report's HTML."""
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


# A report must stay small enough to mail; measured ~0.5 MB on this 3,000-row sample (README).
REPORT_BUDGET_BYTES = 2_000_000


def test_each_run_ends_by_printing_its_report(runs):
    for key in ("first", "second"):
        path = _report(runs["root"], runs[f"{key}_id"])
        assert runs[key].stdout.rstrip().splitlines()[-1] == f"Report: {path}"
        assert 0 < os.path.getsize(path) < REPORT_BUDGET_BYTES


def test_the_report_renders_offline_with_the_run_summarys_and_mlmds_numbers(runs, tmp_path):
    """Chromium, networking off: nothing leaves the file, no console error, a drawn page with the
    task's figures; its numbers are the run summary's, the CSV's and the metadata store's."""
    loaded = report_browser.load(_report(runs["root"], runs["first_id"]))
    assert loaded.outside_requests == [] and loaded.console_errors == []
    assert report_browser.distinct_colors(loaded.screenshot) > 200
    assert {"curve-loss", "curve-auc", "ROC", "Precision-recall", "Calibration"} <= set(loaded.figures)
    summary = summarize(runs["metadata"], PIPELINE_NAME, runs["first_id"])
    version = os.path.basename(summary.pushed_path)
    assert loaded.outcome == f"Pushed version {version} to {summary.pushed_path}"
    assert [row[:2] for row in loaded.tables["components"][1:]] == [
        [c.name, c.state] for c in summary.components]
    # Every metric of every slice, as the terminal's table rounds it.
    header, *rows = loaded.tables["metrics"]
    assert [row[0] for row in rows] == sorted(summary.metrics, key=slice_order)
    keys = {label: key for key, label, _ in METRIC_COLUMNS if key in summary.metrics["Overall"]}
    checked = 0
    for row in rows:
        for label, cell in zip(header[1:], row[1:]):
            value = summary.metrics[row[0]].get(keys[label])
            if value is None or value != value:
                assert cell == "-"
            else:
                assert float(cell) == pytest.approx(value, rel=1e-3, abs=5e-4), (row[0], label)
                checked += 1
    assert checked > 100
    # A slice of one class (every "No Charge" trip has no tip) has no AUC to show: "-", not TFMA's 0.
    one_class = [name for name, values in summary.metrics.items()
                 if values.get("mean_label") in (0.0, 1.0)]
    assert one_class and all("auc" not in summary.metrics[name] for name in one_class)
    assert {row[header.index("AUC")] for row in rows if row[0] in one_class} == {"-"}
    # Rows per split add up to the CSV's rows; each column's missing share (train split) is near
    # the CSV's share of empty cells (the train split is a hash-chosen 80% of the rows).
    with open(os.path.join(runs["data_root"], "data.csv"), encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    counts = {r[0]: int(r[1].replace(",", "")) for r in loaded.tables["run-data"]
              if r[0].endswith(" rows")}
    assert sum(counts.values()) == len(csv_rows) and set(counts) == {"train rows", "eval rows"}
    columns = {row[0]: row for row in loaded.tables["columns"][1:]}
    assert set(columns) == set(csv_rows[0])
    for name, row in columns.items():
        empty = sum(1 for r in csv_rows if r[name] == "") / len(csv_rows)
        assert float(row[3].rstrip("%")) / 100 == pytest.approx(empty, abs=0.04), name
    assert any(0.1 < float(row[3].rstrip("%")) < 99 for row in columns.values())  # some, not all
    assert training_line(summary.training) in loaded.text
    assert loaded.tables["serving-check"][1] == ["examples", str(summary.serving_check["examples"])]
    # Serving: the check's largest difference as measured (stored as text: no 6-decimal rounding),
    # and beside it the edge exports' parity per format, as EdgeExport recorded it.
    served = dict(loaded.tables["serving-check"][1:])
    assert served["max difference"] == f"{summary.serving_check['max_abs_diff']:.3g}"
    assert served["p50 latency"] == f"{summary.serving_check['p50_latency_ms']:.1f} ms"
    edge = {row[0]: row[1:] for row in loaded.tables["edge-export"][1:]}
    for name, key in (("TFLite", "tflite"), ("TF.js", "tfjs")):
        max_diff, tolerance, size, _ = edge[name]
        assert max_diff == summary.edge_export[f"{key}_max_diff"], name
        assert tolerance == f"{summary.edge_export[f'{key}_tolerance']:g}", name
        assert size == f"{summary.edge_export[f'{key}_bytes'] / 1024:,.0f} KB", name
    assert f"({summary.edge_export['rows']} rows checked" in loaded.text
    assert f"TFLite's Select TF ops: {summary.edge_export['tflite_select_tf_ops']}" in loaded.text
    assert "UpperBound (tft.bucketize" in summary.edge_export["tflite_select_tf_ops"]
    assert loaded.tables.get("missing") is None and "Missing from disk" not in loaded.text
    # Lineage: per component, the artifacts its execution read and wrote in the store, by id.
    store = open_store(runs["metadata"])
    lineage = {row[0].rsplit(" (", 1)[0]: row for row in loaded.tables["lineage-table"][1:]}
    assert list(lineage) == [c.name for c in summary.components]
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    for component in summary.components:
        events = store.get_events_by_execution_ids([component.execution_id])
        read = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT}
        wrote = {e.artifact_id for e in events if e.type in outputs}
        _, shown_read, shown_wrote = lineage[component.name]
        assert {int(i) for i in re.findall(r"#(\d+)", shown_read)} == read, component.name
        assert {int(i) for i in re.findall(r"#(\d+)", shown_wrote)} == wrote, component.name
    assert "examples #" in lineage["Trainer"][1] and "from Transform" in lineage["Trainer"][1]


def test_a_cached_reruns_report_is_the_reused_run_plus_its_own_record(runs):
    first = open(_report(runs["root"], runs["first_id"]), encoding="utf-8").read()
    second = open(_report(runs["root"], runs["second_id"]), encoding="utf-8").read()
    for name in ("data", "training", "evaluation", "serving"):
        assert _section(first, name) == _section(second, name), name
    loaded = report_browser.load(_report(runs["root"], runs["second_id"]))
    assert loaded.outcome.startswith("Nothing changed, nothing new pushed")
    assert "Missing from disk" not in loaded.text  # the reused artifacts are all there
    assert {row[1] for row in loaded.tables["components"][1:]} == {"cached", "ran"}
    history = loaded.tables["history-table"][1:]
    assert [row[0] for row in history] == [f"{runs['second_id']} (this run)", runs["first_id"]]
    auc = summarize(runs["metadata"], PIPELINE_NAME).metrics["Overall"]["auc"]
    assert history[0][2] == history[1][2] == f"{auc:.4f}"


def test_the_report_command_rewrites_any_past_runs_report(runs, tmp_path):
    """From a copy of the store and the run records: the same page the run wrote."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(runs["metadata"], out / "metadata.sqlite")
    shutil.copytree(runs["root"] / "out" / "runs", out / "runs")
    for args, run_id in ((["--run-id", runs["first_id"]], runs["first_id"]), ([], runs["second_id"])):
        result = CliRunner().invoke(main, ["report", "--output-dir", str(out), *args])
        assert result.exit_code == 0, result.output
        path = page.report_path(str(out), run_id)
        assert f"Report: {path}" in result.output
        with open(path, encoding="utf-8") as rewritten, \
                open(_report(runs["root"], run_id), encoding="utf-8") as written:
            assert rewritten.read() == written.read()
    result = CliRunner().invoke(main, ["report", "--output-dir", str(out), "--run-id", "no-such-run"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert f"No run of pipeline '{PIPELINE_NAME}' with id 'no-such-run'" in result.output
    assert "`python -m pipeline runs` lists the runs" in result.output
    # --open hands the file to the user's browser ($BROWSER, as Python's webbrowser reads it).
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened"}\n')
    browser.chmod(0o755)
    result = CliRunner(env={"BROWSER": str(browser)}).invoke(
        main, ["report", "--output-dir", str(out), "--open"])
    assert result.exit_code == 0, result.output
    opened = (tmp_path / "opened").read_text().strip()
    assert opened == "file://" + page.report_path(str(out), runs["second_id"])


def test_a_report_of_a_run_whose_artifacts_were_deleted_shows_what_ml_metadata_has(runs, tmp_path):
    """The run's statistics and TFMA results are gone from disk (on a copy of the store, their URIs
    name deleted directories): the report still renders from ML Metadata and the run record, lists
    what is missing, and the sections that needed it say so."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(runs["metadata"], out / "metadata.sqlite")
    shutil.copytree(runs["root"] / "out" / "runs", out / "runs")
    summary = summarize(runs["metadata"], PIPELINE_NAME, runs["first_id"])
    store = open_store(str(out / "metadata.sqlite"), read_only=False)
    gone = []
    for component, key in (("StatisticsGen", "statistics"), ("Evaluator", "evaluation")):
        (artifact,) = store.get_artifacts_by_id([summary.component(component).outputs[key][0].id])
        artifact.uri = str(tmp_path / "deleted" / component)
        store.put_artifacts([artifact])
        gone.append(f"{component}'s {key} #{artifact.id}: {artifact.uri}")
    del store
    result = CliRunner().invoke(main, ["report", "--output-dir", str(out), "--run-id", runs["first_id"]])
    assert result.exit_code == 0, result.output
    path = page.report_path(str(out), runs["first_id"])
    loaded = report_browser.load(path)
    assert loaded.outside_requests == [] and loaded.console_errors == []
    assert all(line in loaded.text for line in gone), loaded.text[:3000]
    assert ("Not shown: The Evaluator's TFMA results is missing from disk: "
            f"{tmp_path / 'deleted' / 'Evaluator'}") in loaded.text
    with open(path, encoding="utf-8") as f:
        data = _section(f.read(), "data")
    assert 'id="data-unreadable"' in data and str(tmp_path / "deleted" / "StatisticsGen") in data
    # What ML Metadata and the run record hold still shows: components, blessing, serving, lineage.
    assert loaded.outcome == f"Pushed version {os.path.basename(summary.pushed_path)} to " \
                             f"{summary.pushed_path}"
    assert [row[:2] for row in loaded.tables["components"][1:]] == [
        [c.name, c.state] for c in summary.components]
    assert "curve-loss" in loaded.figures and "ROC" not in loaded.figures
    assert loaded.tables["serving-check"][1] == ["examples", str(summary.serving_check["examples"])]
    assert len(loaded.tables["lineage-table"]) == len(summary.components) + 1


def test_serving_check_served_the_candidate_before_the_push(runs):
    """The first run's candidate went through `pipeline serve` and matched its in-process answers."""
    first = _records(runs)[runs["first_id"]]
    check = first["serving_check"]
    assert check["blessed"] == 1 and check["reason"] == "", check
    assert check["examples"] == 100 and check["max_abs_diff"] <= 1e-5
    assert 0 < check["p50_latency_ms"] <= check["max_p50_latency_ms"]
    order = [c["name"] for c in first["components"]]
    assert order.index("Evaluator") < order.index("ServingCheck") < order.index("Pusher")


def test_the_push_carries_tflite_and_tfjs_exports_that_answer_like_the_saved_model(
        runs, pushed, held_out):
    """EdgeExport checked both exports before the push; the record lists the pushed files, and the
    pushed TFLite file answers rows the pipeline never saw (gaps as markers) as the SavedModel does."""
    first = _records(runs)[runs["first_id"]]
    check = first["edge_export"]
    assert check["blessed"] == 1 and check["reason"] == "", check
    assert float(check["tflite_max_diff"]) <= 1e-5 and float(check["tfjs_max_diff"]) <= 1e-4
    assert check["rows"] == 50 + 50 + 2  # eval examples, each with a column missing, and 2 more
    # The Select TF ops the TFLite model keeps, each with why (components/edge_formats.py).
    assert "UpperBound (tft.bucketize's quantile lookup" in check["tflite_select_tf_ops"]
    assert "not expected" not in check["tflite_select_tf_ops"]
    assert "TFLite and TF.js exports match the SavedModel on 102 rows" in runs["first"].stdout
    order = [c["name"] for c in first["components"]]
    assert order.index("ServingCheck") < order.index("EdgeExport") < order.index("Pusher")
    assert {"tflite/model.tflite", "tfjs/model.json"} <= set(first["pushed_exports"])
    assert all(os.path.isfile(os.path.join(pushed, f)) for f in first["pushed_exports"])
    model = tf.saved_model.load(pushed)
    spec = model.signatures["serving_raw"].structured_input_signature[1]
    instances = client.raw_request(held_out[:200], TYPES)["instances"]
    columns = {n: np.array([i[n] for i in instances],
                           dtype=object if s.dtype == tf.string else s.dtype.as_numpy_dtype)
               for n, s in spec.items()}
    interpreter = tf.lite.Interpreter(model_path=os.path.join(pushed, "tflite", "model.tflite"))
    tflite = interpreter.get_signature_runner("serving_raw")(**columns)["probability"]
    saved_model = model.signatures["serving_raw"](
        **{n: tf.constant(v, spec[n].dtype) for n, v in columns.items()})["probability"].numpy()
    np.testing.assert_allclose(tflite, saved_model, atol=1e-5)


def test_the_model_server_loads_the_version_with_its_exports_beside_it(runs, held_out):
    """The exports' directories inside the version do not disturb the serving runtime."""
    from tests.serving_helpers import serving  # pylint: disable=import-outside-toplevel

    instances = client.raw_request(held_out[:3], TYPES)["instances"]
    with serving(runs["root"] / "serving", grpc=False) as server:
        predictions, _ = server.predict("serving_raw", instances)
    assert len(predictions) == 3 and all(0 <= p <= 1 for p in predictions)


def test_serving_check_blocks_the_push_when_serving_is_too_slow(runs, after_runs):
    """An impossible latency bound (10 microseconds over HTTP): the model is blessed and serves the
    right answers, the check blocks the push and says why; the run itself succeeds."""
    result = run_cli(*after_runs["args"], "--serving-check-max-p50-ms", "0.01")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Model blessed" in result.stdout
    assert "Push blocked by the serving check" in result.stdout
    assert "over the limit of 0.01 ms" in result.stdout
    assert sorted(os.listdir(after_runs["push_dir"])) == runs["versions_first"]
    summary = summarize(after_runs["metadata"], PIPELINE_NAME)
    states = {c.name: c.state for c in summary.components}
    assert states["ServingCheck"] == "ran" and states["Trainer"] == "cached"
    assert summary.serving_check["blessed"] == 0 and summary.pushed_path is None
    path = page.report_path(str(after_runs["root"] / "out"), summary.run_id)
    outcome = report_browser.load(path).outcome
    assert outcome.startswith("The serving check blocked the push:") and "0.01 ms" in outcome


def test_a_weaker_model_than_the_blessed_one_is_not_pushed(runs, after_runs):
    """One training step after a good model: the summary names the failed metric and slice."""
    result = run_cli(*after_runs["args"], "--train-steps", "1", "--max-epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Model not blessed" in result.stdout
    assert "auc change vs baseline on Overall" in result.stdout
    assert "no-regression check" in result.stdout
    assert sorted(os.listdir(after_runs["push_dir"])) == runs["versions_first"]
    # The report puts the candidate beside the blessed baseline: worse, and the gate says so.
    run_id = summarize(after_runs["metadata"], PIPELINE_NAME).run_id
    loaded = report_browser.load(page.report_path(str(after_runs["root"] / "out"), run_id))
    assert loaded.console_errors == [] and loaded.outside_requests == []
    auc = next(row for row in loaded.tables["comparison"] if row[0] == "AUC")
    assert float(auc[3]) < 0 and float(auc[1]) - float(auc[2]) == pytest.approx(float(auc[3]), abs=2e-4)
    assert auc[4] == "fails the gate"
    assert loaded.outcome.startswith("The Evaluator's gate did not bless the model")


def test_unblessed_model_is_a_normal_outcome(runs, after_runs):
    """An impossible AUC floor: the Evaluator refuses, nothing is pushed, and the run still succeeds."""
    result = run_cli(*after_runs["args"], "--auc-floor", "0.999")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Model not blessed" in result.stdout and "auc on Overall" in result.stdout
    assert "serving check" not in result.stdout.lower()  # skipped: nothing to serve
    assert sorted(os.listdir(after_runs["push_dir"])) == runs["versions_first"]


BAD_INPUTS = {
    # case: (what the message must say, how to break a 20-row file)
    "missing_dir": ("does not exist", None),
    "empty_file": ("is empty", lambda path, fields, rows: open(path, "w").close()),
    "header_only": ("has a header but no data rows",
                    lambda path, fields, rows: write_csv(path, fields, [])),
    "missing_column": ("missing required column(s): company",
                       lambda path, fields, rows: write_csv(
                           path, [f for f in fields if f != "company"],
                           [{k: v for k, v in r.items() if k != "company"} for r in rows])),
    "label_missing": ("missing required column(s): tips",
                      lambda path, fields, rows: write_csv(
                          path, [f for f in fields if f != "tips"],
                          [{k: v for k, v in r.items() if k != "tips"} for r in rows])),
    "text_in_number": ("line 9, column 'trip_miles': 'n/a' is not a finite number",
                       lambda path, fields, rows: write_csv(
                           path, fields, [dict(r, trip_miles="n/a") if i == 7 else r
                                          for i, r in enumerate(rows)])),
    "nan_storm": ("column 'fare': 'nan' is not a finite number",
                  lambda path, fields, rows: write_csv(path, fields,
                                                       [dict(r, fare="nan") for r in rows])),
    "malformed_row": ("fields where the header has 18",
                      lambda path, fields, rows: (write_csv(path, fields, rows),
                                                  open(path, "a").write('1,"2,3\n'))),
    "not_utf8": ("is not UTF-8",
                 lambda path, fields, rows: (write_csv(path, fields, rows),
                                             open(path, "ab").write(b"\xff\xfe\n"))),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_non_zero_with_file_and_column(tmp_path, taxi_rows, case):
    fieldnames, rows = taxi_rows
    data = tmp_path / "data"
    expected, make = BAD_INPUTS[case]
    if make is not None:
        data.mkdir()
        make(str(data / "trips.csv"), fieldnames, [dict(r) for r in rows[:20]])
    result = run_cli("--data-root", str(data), "--output-dir", str(tmp_path / "out"),
                     "--serving-dir", str(tmp_path / "serving"), timeout=300)
    assert result.returncode == 2
    assert expected in result.stderr
    assert str(data / "trips.csv" if make else data) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "serving").exists()


def test_schema_anomalies_stop_the_run_before_training(tmp_path, taxi_rows):
    fieldnames, rows = taxi_rows
    bad = [dict(r, trip_start_hour="30") for r in rows[:400]]  # hours are 0-23 in the schema
    write_csv(str(tmp_path / "data" / "trips.csv"), fieldnames, bad)
    result = run_cli("--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
                     "--serving-dir", str(tmp_path / "serving"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "column 'trip_start_hour'" in result.stderr and "schemas/taxi/schema.pbtxt" in result.stderr
    summary = summarize(str(tmp_path / "out" / "metadata.sqlite"), PIPELINE_NAME)
    ran = {c.name for c in summary.components}
    assert "DataValidationGate" in ran and not ran & {"Transform", "Trainer", "Pusher"}
    assert not (tmp_path / "serving").exists()


def test_an_unseen_category_in_most_rows_stops_the_run(tmp_path, taxi_rows):
    fieldnames, rows = taxi_rows
    data = [dict(r, payment_type="Crypto") if i % 5 else dict(r) for i, r in enumerate(rows[:500])]
    write_csv(str(tmp_path / "data" / "trips.csv"), fieldnames, data)
    result = run_cli("--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
                     "--serving-dir", str(tmp_path / "serving"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "column 'payment_type'" in result.stderr and "Crypto" in result.stderr
    assert not (tmp_path / "serving").exists()


def test_drift_from_the_previous_data_stops_the_run(runs, after_runs, tmp_path, everyday_data_root):
    """Same output directory, new data: every trip paid in cash moves payment_type far past the
    schema's L-infinity threshold, though each value is valid on its own."""
    with open(os.path.join(everyday_data_root, "data.csv"), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fieldnames, rows = reader.fieldnames, [dict(r, payment_type="Cash") for r in reader]
    write_csv(str(tmp_path / "drifted" / "data.csv"), fieldnames, rows)
    args = list(after_runs["args"])
    args[args.index("--data-root") + 1] = str(tmp_path / "drifted")
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "drifted from the previous run's data" in result.stderr
    assert "column 'payment_type'" in result.stderr
    assert sorted(os.listdir(after_runs["push_dir"])) == runs["versions_first"]
    # The stopped run's report says which gate stopped it and shows the measured drift.
    run_id = summarize(after_runs["metadata"], PIPELINE_NAME).run_id
    loaded = report_browser.load(page.report_path(str(after_runs["root"] / "out"), run_id))
    assert loaded.outcome.startswith("The drift check stopped the run")
    drift = {row[0]: row for row in loaded.tables["drift"][1:]}
    assert drift["payment_type"][1] == "L-infinity distance" and drift["payment_type"][4] == "drifted"
    assert float(drift["payment_type"][2]) > float(drift["payment_type"][3])


def _get(url, timeout=60.0):
    """GET once TensorBoard has read the logs (it loads them in the background after starting)."""
    import requests  # pylint: disable=import-outside-toplevel

    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = requests.get(url, timeout=10)
            if reply.ok and reply.content not in (b"{}", b"[]"):
                return reply
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"TensorBoard did not answer {url}"
        time.sleep(0.5)


def test_tensorboard_shows_curves_graph_and_labelled_embeddings(runs):
    """`pipeline tensorboard` on the latest run (cached: its Trainer's logs are the first run's),
    checked through TensorBoard's own HTTP data API against what the run wrote and pushed."""
    from components.serving_runtime import free_ports  # pylint: disable=import-outside-toplevel

    port = free_ports(1)[0]
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "pipeline", "tensorboard", "--output-dir", str(runs["root"] / "out"),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cli_env())
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        trainer = summarize(runs["metadata"], PIPELINE_NAME).component("Trainer")
        assert trainer.state == "cached"
        with open(os.path.join(trainer.outputs["model_run"][0].uri, "training_history.json"),
                  encoding="utf-8") as f:
            history = json.load(f)["history"]

        # Curves: a point per epoch, the values the Trainer recorded, for train and eval.
        tags = _get(f"{base}/scalars/tags").json()
        for run, key in (("train", "loss"), ("validation", "val_loss")):
            assert "epoch_loss" in tags[run], tags
            points = _get(f"{base}/scalars/scalars?run={run}&tag=epoch_loss").json()
            assert [p[2] for p in points] == pytest.approx(history[key], rel=1e-6)
        # The Keras model's graph: its layers and how the inputs flow through them.
        assert _get(f"{base}/graphs/info").json()["train"]["tags"]["keras"]["conceptual_graph"] is True

        # Embeddings: every table of the model, each row labelled, the values the pushed model holds.
        info = _get(f"{base}/projector/info?run=.").json()
        names = {e["tensorName"]: e for e in info["embeddings"]}
        place, company = ("place_embedding/.ATTRIBUTES/VARIABLE_VALUE",
                          "company_xf_embedding/.ATTRIBUTES/VARIABLE_VALUE")
        assert {place, company} <= set(names), sorted(names)
        place_labels = _get(f"{base}/projector/metadata?run=.&name={place}").text.splitlines()
        assert len(place_labels) == 12 * 12 + 1 and place_labels[-1] == "(missing coordinates)"
        assert place_labels[1] == "latitude 1/12, longitude 2/12"
        transform = summarize(runs["metadata"], PIPELINE_NAME).component("Transform")
        with open(os.path.join(transform.outputs["transform_graph"][0].uri, "transform_fn", "assets",
                               "company"), encoding="utf-8") as f:
            vocabulary = f.read().splitlines()
        company_labels = _get(f"{base}/projector/metadata?run=.&name={company}").text.splitlines()
        assert company_labels[:len(vocabulary)] == vocabulary
        assert company_labels[len(vocabulary)] == "(other values, bucket 1)"
        assert len(company_labels) == 100 + 10  # the spec's top_k + oov_buckets

        model = tf.keras.models.load_model(str(runs["push_dir"] / runs["versions_first"][0]))
        rows = np.frombuffer(_get(f"{base}/projector/tensor?run=.&name={place}").content, np.float32)
        np.testing.assert_allclose(
            rows, model.get_layer("place_embedding").embeddings.numpy().reshape(-1), rtol=0, atol=0)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output and "(cached)" in output, output
