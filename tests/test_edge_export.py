"""Portable exports and their parity check: real conversions of a real SavedModel (conftest's, the
pipeline's export of tf.Transform on taxi rows), run in the TFLite interpreter and in Node with TF.js.

The pipeline runs the check before every push (tests/test_end_to_end.py reads what it pushed).
"""
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components import edge_formats
from components.edge_export import (SKIPPED_REASON, UNSEEN_CATEGORY, FormatResult, ParityResult,
                                    TfjsRunner, columns_of, compare, parity_rows, record,
                                    run_check, saved_model_answers, tfjs_answers, tflite_answers,
                                    verdict)
from components.serving_check import raw_input_spec, serving_requests
from models import missing_values
from models.raw_examples import column_types, to_tf_examples
from tests.conftest import EDGE_TOLERANCES, TAXI_SPEC
from tests.test_serving_check import _examples_artifact


@pytest.fixture(scope="module")
def serialized(edge_rows):
    return to_tf_examples(edge_rows, column_types(TAXI_SPEC.schema_path))


@pytest.fixture(scope="module")
def exported(edge_export, saved_model_dir):
    """conftest's SavedModel through check_model (shared with test_demo, which serves it)."""
    return edge_export(saved_model_dir)


# --- The rows and the comparison: fast --------------------------------------------------------------

def test_parity_rows_add_missing_values_and_unseen_categories(saved_model_dir, serialized):
    spec = raw_input_spec(tf.saved_model.load(saved_model_dir))
    instances, _ = serving_requests(serialized[:3], spec)
    rows, labels = parity_rows(instances, spec)
    names = sorted(spec)
    assert len(rows) == len(labels) == 3 + 3 + 2
    assert rows[:3] == instances and labels[0] == "eval example 0"
    # Eval row i again with column i missing, as its marker.
    assert labels[4] == f"eval example 1 with {names[1]} missing"
    assert rows[4] == {**instances[1], names[1]: missing_values.marker(spec[names[1]].dtype)}
    everything_missing = rows[labels.index("every column missing")]
    assert all(missing_values.missing_mask(tf.constant([v], spec[n].dtype)).numpy()[0]
               for n, v in everything_missing.items())
    unseen = rows[-1]
    assert unseen["company"] == unseen["payment_type"] == UNSEEN_CATEGORY
    assert labels[-1] == "eval example 0 with unseen categories in company, payment_type"


def test_compare_names_the_row_output_and_how_it_was_asked():
    want = {"probability": np.array([[0.1], [0.5], [0.9]])}
    labels = ["row a", "row b", "row c"]
    alone = [{"probability": want["probability"][i:i + 1]} for i in range(3)]
    assert compare(want, dict(want), alone, labels) == (0.0, "row a (in one batch): probability "
                                                             "0.1 vs the SavedModel's 0.1")
    off = [dict(a) for a in alone]
    off[1] = {"probability": np.array([[0.52]])}
    diff, where = compare(want, dict(want), off, labels)
    assert diff == pytest.approx(0.02)
    assert where == "row b (alone): probability 0.52 vs the SavedModel's 0.5"
    # Above 1 the difference is relative (a regression's label units).
    big = {"prediction": np.array([[1000.0]])}
    assert compare(big, {"prediction": np.array([[1001.0]])}, [big], ["r"])[0] == \
        pytest.approx(1e-3)
    classes = {"classes": np.array([["a", "b"]], dtype=object)}
    swapped = {"classes": np.array([["b", "a"]], dtype=object)}
    assert compare(classes, swapped, [classes], ["r"]) == (math.inf, "r (in one batch): classes "
                                                           "'b', 'a' vs the SavedModel's 'a', 'b'")
    nan = {"probability": np.array([[np.nan], [0.5], [0.9]])}
    assert compare(want, nan, alone, labels)[0] == math.inf
    assert "no probability output" in compare(want, {}, alone, labels)[1]


# --- Real exports of a real model ---------------------------------------------------------------------

def test_both_exports_answer_like_the_saved_model(exported):
    _, result = exported
    assert result.blessed, result.reason
    assert result.rows == 30 + 30 + 2
    assert result.formats["tflite"].max_diff <= 1e-5
    assert result.formats["tfjs"].max_diff <= 1e-4
    # Each Select TF op left is one whose reason is known (and in the README).
    assert set(result.select_tf_ops) <= set(edge_formats.SELECT_TF_OPS), result.select_tf_ops
    assert "UpperBound" in result.select_tf_ops and "HashTableV2" not in result.select_tf_ops


def test_exports_sit_beside_the_saved_model_and_take_its_raw_inputs(exported, saved_model_dir):
    output, result = exported
    assert sorted(os.listdir(output)) == sorted(os.listdir(saved_model_dir) + ["tflite", "tfjs"])
    assert result.files[0] == "tflite/model.tflite" and "tfjs/model.json" in result.files
    assert all(os.path.isfile(os.path.join(output, f)) for f in result.files)
    raw_spec = raw_input_spec(tf.saved_model.load(saved_model_dir))
    interpreter = tf.lite.Interpreter(model_path=os.path.join(output, "tflite", "model.tflite"))
    inputs = interpreter.get_signature_runner("serving_raw").get_input_details()
    assert {n: d["dtype"] for n, d in inputs.items()} == {
        n: (np.bytes_ if s.dtype == tf.string else s.dtype.as_numpy_dtype) for n, s in raw_spec.items()}
    with open(os.path.join(output, "tfjs", "model.json"), encoding="utf-8") as f:
        model_json = json.load(f)
    feature_inputs = {name.split(":")[0] for name, i in model_json["signature"]["inputs"].items()
                      if i["dtype"] != "DT_RESOURCE"}  # the tables' handles take no data
    assert feature_inputs == set(raw_spec)
    assert set(model_json["signature"]["outputs"]) == {"probability"}


def test_the_exports_read_no_vocabulary_file(exported, saved_model_dir, serialized, tmp_path):
    """The tables are constants: the TFLite file alone (no assets anywhere) answers the same."""
    output, _ = exported
    alone = tmp_path / "model.tflite"
    shutil.copy(os.path.join(output, "tflite", "model.tflite"), alone)
    model = tf.saved_model.load(saved_model_dir)
    spec = raw_input_spec(model)
    instances, _ = serving_requests(serialized, spec)
    columns = columns_of(instances, spec)
    batch, _ = tflite_answers(str(alone), columns)
    np.testing.assert_allclose(batch["probability"], saved_model_answers(model, columns)["probability"],
                               atol=1e-5)
    with open(os.path.join(output, "tfjs", "model.json"), encoding="utf-8") as f:
        assert "InitializeTableFromTextFile" not in f.read()


def test_an_int64_value_beyond_int32_blocks_the_tfjs_export_and_names_the_row(
        exported, saved_model_dir, serialized, tmp_path):
    """TF.js has no int64: a trip of 3e9 seconds reaches it as a wrapped int32. TFLite keeps int64
    and still matches; the verdict blesses nothing and says which format and row differ."""
    output, _ = exported
    model = tf.saved_model.load(saved_model_dir)
    spec = raw_input_spec(model)
    instances, _ = serving_requests(serialized[:4], spec)
    instances[2]["trip_seconds"] = 3_000_000_000
    rows, labels = parity_rows(instances, spec)
    columns = columns_of(rows, spec)
    expected = saved_model_answers(model, columns)
    results = {
        "tflite": compare(expected, *tflite_answers(os.path.join(output, "tflite", "model.tflite"),
                                                    columns), labels),
        "tfjs": compare(expected, *tfjs_answers(os.path.join(output, "tfjs"), columns, spec), labels)}
    assert results["tflite"][0] <= 1e-5
    blessed, reason = verdict(results, EDGE_TOLERANCES)
    assert not blessed
    assert re.fullmatch(r"the tfjs export differs from the SavedModel by \S+ \(tolerance 0.0001\) on "
                        r"eval example 2.*: probability \S+ vs the SavedModel's \S+", reason), reason
    # What the run summary then reads from the blessing.
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    record(blessing, ParityResult(blessed, reason, rows=len(rows), formats={
        name: FormatResult(diff, where) for name, (diff, where) in results.items()}),
        EDGE_TOLERANCES)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("reason") == reason
    assert float(blessing.get_string_custom_property("tfjs_max_diff")) == pytest.approx(
        results["tfjs"][0], rel=1e-2)
    assert blessing.get_string_custom_property("tfjs_worst_row").startswith("eval example 2")
    assert os.listdir(blessing.uri) == ["INFRA_NOT_BLESSED"]


def test_a_model_the_serving_check_refused_is_not_exported(tmp_path, serialized):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "no_such_model")
    infra_blessing = standard_artifacts.InfraBlessing()
    infra_blessing.set_int_custom_property("blessed", 0)
    exported_model, blessing = standard_artifacts.Model(), standard_artifacts.InfraBlessing()
    exported_model.uri, blessing.uri = str(tmp_path / "exported"), str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    result = run_check(model, _examples_artifact(tmp_path / "examples", serialized), infra_blessing,
                       exported_model, blessing, 10, EDGE_TOLERANCES)
    assert not result.blessed and result.reason == SKIPPED_REASON
    assert blessing.get_string_custom_property("reason") == SKIPPED_REASON
    assert not os.path.exists(exported_model.uri)


# --- The converter and Node run while this process works ---------------------------------------------

@pytest.fixture(scope="module")
def constant_tables(tmp_path_factory, saved_model_dir):
    output = str(tmp_path_factory.mktemp("constant_tables") / "model")
    edge_formats.constant_table_model(tf.saved_model.load(saved_model_dir), output)
    return output


def test_the_converter_converts_after_start_returns_and_wait_returns_the_written_model(
        constant_tables, tmp_path):
    """`start` hands over the model and returns (the TFLite work goes on meanwhile); the converter
    takes seconds (TensorFlow's import alone), so a model.json there at once would mean it waited."""
    output = tmp_path / "tfjs"
    with edge_formats.TfjsConverter() as converter:
        converter.start(constant_tables, str(output))
        assert not (output / "model.json").exists()
        converter.wait()
    with open(output / "model.json", encoding="utf-8") as f:
        assert set(json.load(f)["signature"]["outputs"]) == {"probability"}


def test_a_converter_failure_or_timeout_says_so_with_its_own_message(tmp_path):
    with edge_formats.TfjsConverter() as converter:
        converter.start(str(tmp_path / "no_such_model"), str(tmp_path / "tfjs"))
        with pytest.raises(edge_formats.ExportError, match=r"(?s)TensorFlow.js converter failed: .*"
                                                           r"SavedModel file does not exist at: .*no_such_model"):
            converter.wait()
    with edge_formats.TfjsConverter() as converter:
        converter.start(str(tmp_path / "no_such_model"), str(tmp_path / "tfjs"))
        with pytest.raises(edge_formats.ExportError, match=r"TensorFlow.js converter took over 0.01 s"):
            converter.wait(timeout_s=0.01)


def test_node_started_before_the_model_exists_answers_once_it_is_written(
        exported, saved_model_dir, serialized, tmp_path):
    """check_model starts Node while the model converts: predict.js reads the model only after the
    request, and answers as a Node started afterwards does."""
    output, _ = exported
    spec = raw_input_spec(tf.saved_model.load(saved_model_dir))
    instances, _ = serving_requests(serialized[:5], spec)
    columns = columns_of(instances, spec)
    later = tmp_path / "tfjs"
    with TfjsRunner(str(later)) as runner:
        shutil.copytree(os.path.join(output, "tfjs"), later)
        batch, rows = runner.answers(columns, spec, rows_alone=2)
    want_batch, want_rows = tfjs_answers(os.path.join(output, "tfjs"), columns, spec, rows_alone=2)
    np.testing.assert_array_equal(batch["probability"], want_batch["probability"])
    assert len(rows) == 2
    np.testing.assert_array_equal(rows[1]["probability"], want_rows[1]["probability"])
    with TfjsRunner(str(tmp_path / "never_written")) as runner:
        with pytest.raises(edge_formats.ExportError, match=r"TF.js in Node failed: .*ENOENT.*never_written"):
            runner.answers(columns, spec)


# --- The tools: pinned, installed from the project's own files ----------------------------------------

def test_the_converter_venv_holds_exactly_its_lock():
    """`make tfjs` installs components/tfjs/requirements.lock with --no-deps: every dependency must
    be in it."""
    python = os.path.join(edge_formats.TFJS_VENV, "bin", "python")
    freeze = subprocess.run([python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout
    with open(os.path.join(edge_formats.TFJS_TOOLS, "requirements.lock"), encoding="utf-8") as f:
        lock = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    # pip (the Makefile pins it) and setuptools come with the venv.
    assert {p for p in freeze.split() if not p.startswith(("pip==", "setuptools=="))} == lock
    check = subprocess.run([python, "-m", "pip", "check", "--disable-pip-version-check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    assert "tensorflowjs==4.22.0" in lock


def test_the_node_packages_are_pinned_by_the_lockfile():
    tools = edge_formats.TFJS_TOOLS
    with open(os.path.join(tools, "package-lock.json"), encoding="utf-8") as f:
        lock = json.load(f)["packages"]
    assert lock["node_modules/@tensorflow/tfjs"]["version"] == "4.22.0"
    assert all(p.get("integrity") for name, p in lock.items() if name)  # each pinned by its hash
    assert not any("tfjs-node" in name for name in lock)  # no native binary downloaded at install
    with open(os.path.join(tools, "node_modules", "@tensorflow", "tfjs", "package.json"),
              encoding="utf-8") as f:
        assert json.load(f)["version"] == "4.22.0"
    with open(os.path.join(tools, "package.json"), encoding="utf-8") as f:
        assert json.load(f)["dependencies"] == {"@tensorflow/tfjs": "4.22.0"}


def test_a_missing_converter_venv_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(edge_formats, "TFJS_VENV", str(tmp_path / "no_venv"))
    with pytest.raises(edge_formats.ExportError, match=r"venv .*no_venv is missing: run `make tfjs`"):
        edge_formats.TfjsConverter()


# --- Every task ---------------------------------------------------------------------------------------

@pytest.mark.slow  # a tf.Transform analysis on Beam and both conversions per task: ~50 s each
@pytest.mark.parametrize("label, outputs", [
    ({"column": "payment_type", "task": "multiclass", "classes": ["Cash", "Credit Card", "Unknown"]},
     {"probabilities", "classes"}),
    ({"column": "tips", "task": "regression"}, {"prediction"}),
])
def test_every_task_exports_with_parity(label, outputs, task_saved_model, edge_export):
    output, result = edge_export(task_saved_model(label))
    assert result.blessed, result.reason
    assert result.formats["tflite"].max_diff <= 1e-5 and result.formats["tfjs"].max_diff <= 1e-4
    with open(os.path.join(output, "tfjs", "model.json"), encoding="utf-8") as f:
        assert set(json.load(f)["signature"]["outputs"]) == outputs
    interpreter = tf.lite.Interpreter(model_path=os.path.join(output, "tflite", "model.tflite"))
    assert set(interpreter.get_signature_list()["serving_raw"]["outputs"]) == outputs
