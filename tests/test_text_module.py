"""Free text through a TF Hub-format text-embedding module (models/kinds.Text, models/layers.py) and the
trained model's feature encoder exported as a TF Hub-format module (models/encoder.py)."""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import rich.console
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import yaml
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.types import standard_artifacts

from components import edge_formats
from components.edge_export import check_model, record

from models import encoder, kinds, layers, preprocessing
from models import spec as spec_lib
from models.model import build_model
from models.signatures import make_signatures
from pipeline.config import PipelineConfig
from pipeline.run_summary import RunSummary
from pipeline.summary_view import render_edge_export
from pipeline.pipeline import create_pipeline
from tests import tabular_data, text_module
from tests.conftest import cli_env, run_cli
from tests.test_setup import imported_modules

SPEC = {"name": "reviews", "label": {"column": "liked", "task": "binary", "positive": "yes"},
        "features": {"review": {"kind": "text", "module": "text_module"},
                     "price": {"kind": "numeric", "buckets": 0}},
        "model": {"hidden_units": [8], "cross_layers": 1}}


def _schema():
    schema = schema_pb2.Schema()
    for name, kind in (("review", schema_pb2.BYTES), ("price", schema_pb2.FLOAT),
                       ("liked", schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind)
    return schema


def _instances(frame):
    return [{"review": [] if row.review is None else [row.review.encode()], "price": [row.price],
             "liked": [row.liked.encode()]} for row in frame.itertuples()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A spec with a text column, a real tf.Transform over synthetic reviews, a model trained on the
    transformed rows and saved with the pipeline's signatures; then the module directory is deleted."""
    root = tmp_path_factory.mktemp("text")
    text_module.build(str(root / "spec" / "text_module"))
    spec = spec_lib.from_mapping(SPEC, str(root / "spec"))
    frame = tabular_data.reviews(300)
    transform_dir = str(root / "transform")
    metadata = dataset_metadata.DatasetMetadata(_schema())
    with tempfile.TemporaryDirectory() as temp, tft_beam.Context(temp_dir=temp, force_tf_compat_v1=True):
        (rows, _), transform_fn = ((_instances(frame), metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.transform(inputs, spec), output_record_batches=False))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    metadata_io.write_metadata(metadata, os.path.join(transform_dir,
                                                      tft.TFTransformOutput.RAW_METADATA_DIR))
    tf.keras.utils.set_random_seed(0)
    model = build_model(spec)
    names = [i.name for i in spec.model_inputs]
    features = {n: np.array([r[n] for r in rows]) for n in names}
    model.fit(features, np.array([r[spec.transformed_label] for r in rows]).reshape(-1, 1),
              epochs=60, batch_size=32, verbose=0)
    model_dir = str(root / "model")
    model.save(model_dir, save_format="tf",
               signatures=make_signatures(model, tft.TFTransformOutput(transform_dir), spec))
    shutil.rmtree(root / "spec" / "text_module")
    return spec, model, model_dir, features, frame


def test_no_project_code_imports_tensorflow_hub_whose_version_tfx_pins_cannot_import():
    """Why the module is loaded with tf.saved_model.load (README "TF Hub"): tfx 1.16 pins tensorflow-hub
    below 0.16, and that version fails to import with TensorFlow 2.16. If this fails after an upgrade,
    revisit the choice."""
    assert "tensorflow_hub" not in imported_modules()
    (pin,) = [r for r in importlib.metadata.requires("tfx") if r.startswith("tensorflow-hub")]
    assert "<0.16" in pin.replace(" ", "")
    result = subprocess.run([sys.executable, "-c", "import tensorflow_hub"], capture_output=True,
                            text=True, env=cli_env(), timeout=300)
    assert result.returncode != 0 and "cannot import name 'estimator'" in result.stderr


def test_the_spec_declares_a_text_column_read_by_the_module_relative_to_the_spec(tmp_path):
    text_module.build(str(tmp_path / "text_module"))
    spec = spec_lib.from_mapping(SPEC, str(tmp_path))
    review = spec.features_of_kind(kinds.Text)[0]
    assert review.module == str(tmp_path / "text_module")
    assert [i.dtype for i in review.model_inputs()] == [tf.string]
    assert review.missing_files() == []
    # A missing module stops a run before it starts (clients read the spec without the module).
    elsewhere = spec_lib.from_mapping({**SPEC, "features": {"review": {"kind": "text",
                                                                       "module": "elsewhere"}}},
                                      str(tmp_path))
    assert elsewhere.features[0].missing_files() == [
        f"features.review: module: {tmp_path / 'elsewhere'} has no saved_model.pb; a TF Hub-format "
        "module is a TF2 SavedModel directory"]
    with pytest.raises(spec_lib.SpecError, match=r"is a web handle; download the module once"):
        spec_lib.from_mapping({**SPEC, "features": {"review": {
            "kind": "text", "module": "https://tfhub.dev/google/nnlm-en-dim50/2"}}}, str(tmp_path))


def test_the_transform_passes_the_text_through_cleaned():
    with tf.Graph().as_default():
        column = tf.SparseTensor([[0, 0], [2, 0]], [b"  Great food \n", b"cold"], [3, 1])
        cleaned = kinds.Text("review", module="m").transform({"review": column}, None)
        with tf.compat.v1.Session() as session:
            assert list(session.run(cleaned["review_xf"])) == [b"Great food", b"", b"cold"]


def test_the_model_embeds_the_text_with_the_module_and_answers_without_its_directory(trained):
    spec, model, model_dir, _, frame = trained
    assert isinstance(model.get_layer("review_text_embedding"), layers.TextModuleEmbedding)
    raw = {"review": tf.constant(["the food was delicious", "the food was cold", ""]),
           "price": tf.constant([20.0, 20.0, float("nan")])}
    transformed = model.tft_layer({
        "review": tf.sparse.from_dense(tf.reshape(raw["review"], [-1, 1])),
        "price": tf.sparse.from_dense(tf.reshape(raw["price"], [-1, 1]))})
    live = model({i.name: transformed[i.name] for i in spec.model_inputs}).numpy().ravel()
    assert not os.path.exists(spec.features[0].module)  # deleted by the fixture
    served = tf.saved_model.load(model_dir).signatures["serving_raw"](**raw)["probability"].numpy()
    np.testing.assert_allclose(served, live, atol=1e-6)
    assert served[0] - served[1] > 0.5  # the words carry the label, and the model read them


def test_the_exported_encoder_loads_as_a_module_in_a_new_keras_model_with_the_same_vectors(trained,
                                                                                             tmp_path):
    spec, model, model_dir, features, frame = trained
    out = str(tmp_path / "encoder")
    encoder.export(model_dir, out)
    # Only the module: the training-time objects are gone, the module directory too.
    raw_inputs = {"review": tf.keras.Input(shape=(), dtype=tf.string, name="review"),
                  "price": tf.keras.Input(shape=(), dtype=tf.float32, name="price")}
    vectors = HubModule(out)(raw_inputs)
    reuser = tf.keras.Model(raw_inputs, tf.keras.layers.Dense(1)(vectors))
    assert isinstance(reuser.layers[-2], HubModule)
    raw = {"review": np.array([r or "" for r in frame.review[:50]], dtype=object),
           "price": frame.price[:50].to_numpy(np.float32)}
    got = tf.keras.Model(raw_inputs, vectors)(raw).numpy()
    want = encoder.encoder_model(model)({k: v[:50] for k, v in features.items()}).numpy()
    assert got.shape == (50, model.get_layer("cross_and_deep").output.shape[-1])
    np.testing.assert_allclose(got, want, atol=1e-5)
    loaded = tf.saved_model.load(out)
    assert {v.name for v in loaded.trainable_variables} == {
        v.name for v in encoder.encoder_model(model).trainable_variables}
    assert len(loaded.variables) > len(loaded.trainable_variables)  # the frozen text module's too


def _export_encoder(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", "export-encoder", *args],
                          capture_output=True, text=True, env=cli_env(), timeout=600)


def test_export_encoder_writes_the_module_of_a_saved_model_and_refuses_what_has_none(trained, tmp_path):
    _, model, model_dir, _, _ = trained
    width = model.get_layer("cross_and_deep").output.shape[-1]
    result = _export_encoder("--model-dir", model_dir, "--out", str(tmp_path / "encoder"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"The feature encoder of the SavedModel {model_dir} -> {tmp_path / 'encoder'}: raw features" \
        f" (the inputs of serving_raw) to {width} floats per example" in " ".join(result.stdout.split())
    served = tf.saved_model.load(model_dir).encoder({"review": tf.constant(["the food was cold"]),
                                                     "price": tf.constant([9.5])})
    exported = tf.saved_model.load(str(tmp_path / "encoder"))({"review": tf.constant(["the food was cold"]),
                                                               "price": tf.constant([9.5])})
    np.testing.assert_array_equal(exported.numpy(), served.numpy())
    again = _export_encoder("--model-dir", model_dir, "--out", str(tmp_path / "encoder"))
    assert again.returncode == 2 and "is not empty; name a new directory" in again.stderr
    tf.saved_model.save(tf.Module(), str(tmp_path / "other"))
    none = _export_encoder("--model-dir", str(tmp_path / "other"), "--out", str(tmp_path / "e2"))
    assert none.returncode == 1 and "has no feature encoder" in " ".join(none.stderr.split())


def _spec_dir(directory):
    os.makedirs(directory)
    with open(directory / "dataset.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(SPEC, f)
    schema = _schema()
    schema.feature[2].not_in_environment.append("SERVING")  # the label
    (directory / "schema.pbtxt").write_text(str(schema))
    return directory


def test_a_run_whose_text_module_is_missing_stops_before_it_starts(tmp_path):
    spec_dir = _spec_dir(tmp_path / "spec")
    data = tabular_data.write_reviews(str(tmp_path / "data"), rows=50)
    result = run_cli("--spec", str(spec_dir), "--data-root", data, "--output-dir", str(tmp_path / "out"),
                     timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert (f"Bad dataset spec: {spec_dir / 'dataset.yaml'}: features.review: module: "
            f"{spec_dir / 'text_module'} has no saved_model.pb") in " ".join(result.stderr.split())
    assert not os.path.exists(tmp_path / "out")


def test_the_module_s_content_keys_the_trainer_and_edge_export_knows_why_a_format_may_not_convert(
        tmp_path):
    spec_dir = _spec_dir(tmp_path / "spec")
    text_module.build(str(spec_dir / "text_module"))

    def parameters():  # each component's exec properties: with its inputs, TFX's cache key
        config = PipelineConfig(data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out"),
                                spec_dir=str(spec_dir))
        return {c.id: c.exec_properties for c in create_pipeline(config).components}

    before = parameters()
    assert before["EdgeExport"]["unconvertible"] == (
        "the model embeds text with a TF Hub module (features: review)")
    shutil.rmtree(spec_dir / "text_module")
    text_module.build(str(spec_dir / "text_module"), seed=8)  # another module, at the same path
    after = parameters()
    assert {c for c in before if before[c] != after[c]} == {"Trainer"}


def _tf_examples(frame):
    def example(row):
        features = {"price": tf.train.Feature(float_list=tf.train.FloatList(value=[row.price]))}
        if row.review is not None:
            features["review"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[row.review.encode()]))
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
    return [example(row) for row in frame.itertuples()]


def test_a_format_that_cannot_run_the_text_module_is_skipped_with_the_reason_and_the_model_pushes(
        trained, tmp_path):
    _, _, model_dir, _, frame = trained
    serialized = _tf_examples(frame[:10])
    tolerances = {"tflite": 1e-5, "tfjs": 1e-4}
    reason = "the model embeds text with a TF Hub module (features: review)"
    result = check_model(model_dir, str(tmp_path / "exported"), serialized, tolerances, reason)
    # TF.js has no kernels for the module's string ops: skipped, saying why and which ops.
    assert re.fullmatch(re.escape(reason) + r"; the tfjs converter failed: ValueError: Unsupported Ops"
                        r" .*StringSplitV2.*", result.formats["tfjs"].skipped)
    # TFLite runs them as Select TF ops, and still answers as the SavedModel does on every row.
    assert {"StringSplitV2", "StringLower"} <= set(result.select_tf_ops)
    assert result.formats["tflite"].max_diff <= 1e-5 and not result.formats["tflite"].skipped
    assert result.blessed, result.reason
    assert result.files == ["tflite/model.tflite"]
    assert not os.path.exists(tmp_path / "exported" / "tfjs")
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    record(blessing, result, tolerances)
    assert blessing.get_string_custom_property("tfjs_skipped") == result.formats["tfjs"].skipped
    assert blessing.get_int_custom_property("blessed") == 1
    # Without the reason (a spec with no text module) a failed conversion is an error, not a skip.
    with pytest.raises(edge_formats.ExportError,
                       match=r"(?s)TensorFlow.js converter failed.*Unsupported Ops"):
        check_model(model_dir, str(tmp_path / "strict"), serialized, tolerances)


def test_the_summary_says_which_format_was_skipped_and_why_and_that_the_model_is_pushed():
    why = "the model embeds text with a TF Hub module (features: review); the tfjs converter failed: x"
    summary = RunSummary(run_id="r", components=[], edge_export={
        "blessed": 1, "reason": "", "rows": 12, "tflite_max_diff": "1.2e-07", "tfjs_skipped": why})
    console = rich.console.Console(record=True, width=300)
    render_edge_export(summary, console)
    assert console.export_text().splitlines() == [
        f"TF.js export skipped: {why}",
        "The SavedModel is pushed; the TFLite export matches it on 12 rows (max difference 1.2e-07)."]


class HubModule(tf.keras.layers.Layer):
    """What a reusing model does with a TF Hub module (hub.KerasLayer's core): load, call."""

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.module = tf.saved_model.load(path)

    def call(self, features):
        return self.module(features)


@pytest.mark.slow
def test_a_table_with_free_text_trains_pushes_and_serves_through_the_pipeline(tmp_path):
    """`init` on a table whose label is in its free text, the review declared `kind: text` with a module,
    then `run`: the model is checked by the serving check, pushed without TF.js (and says why), answers
    by the words after the module's directory is gone, and its encoder exports as a module."""
    tabular_data.write_reviews(str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "pipeline", "init", "--data-root",
                             str(tmp_path / "data"), "--label", "liked", "--spec", str(tmp_path / "spec")],
                            capture_output=True, text=True, env=cli_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "spec" / "dataset.yaml", encoding="utf-8") as f:
        declared = yaml.safe_load(f)
    assert "review" in declared["ignored"]  # init takes free text for an identifier: unique per row
    del declared["ignored"]["review"]
    declared["features"]["review"] = {"kind": "text", "module": "text_module"}
    with open(tmp_path / "spec" / "dataset.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(declared, f, sort_keys=False)
    text_module.build(str(tmp_path / "spec" / "text_module"))

    result = run_cli("--spec", str(tmp_path / "spec"), "--output-dir", str(tmp_path / "out"),
                     "--serving-dir", str(tmp_path / "serving"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert "Model blessed" in out and "Pushed" in out, out[-3000:]
    assert "TF.js export skipped: the model embeds text with a TF Hub module (features: review)" in out
    assert "Unsupported Ops" in out and "the TFLite export matches it" in out, out[-3000:]
    (version,) = os.listdir(tmp_path / "serving" / "liked")
    pushed = tmp_path / "serving" / "liked" / version
    assert sorted(os.listdir(pushed / "tflite")) == ["model.tflite"] and not (pushed / "tfjs").exists()

    shutil.rmtree(tmp_path / "spec" / "text_module")  # serving needs no module directory
    serve = tf.saved_model.load(str(pushed)).signatures["serving_raw"]
    texts = ["our dinner was delicious", "our dinner was cold", "the food was wonderful and fresh",
             "the service was rude and slow"]
    probability = serve(review=tf.constant(texts), price=tf.constant([20.0] * 4))["probability"].numpy()
    assert min(probability[[0, 2]]) - max(probability[[1, 3]]) > 0.5, probability

    exported = subprocess.run([sys.executable, "-m", "pipeline", "export-encoder", "--spec",
                               str(tmp_path / "spec"), "--output-dir", str(tmp_path / "out"), "--out",
                               str(tmp_path / "encoder")],
                              capture_output=True, text=True, env=cli_env(), timeout=600)
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-2000:]
    assert "floats per example" in exported.stdout
    vectors = tf.saved_model.load(str(tmp_path / "encoder"))(
        {"review": tf.constant(texts), "price": tf.constant([20.0] * 4)}).numpy()
    assert vectors.shape[0] == 4 and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])  # the words reach the representation
