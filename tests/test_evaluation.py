"""The Evaluator's TFMA config on real TFMA: what it computes per example, and the same values as
TFMA's own metrics."""
import json
import math
import types

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format, text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import tensor_adapter, tf_example_record
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tensorflow_model_analysis.metrics import metric_specs
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components import tfma_extractors, tfma_metrics
from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config, metric_class
from pipeline.summary_view import METRIC_COLUMNS
from tests.conftest import close, task_spec

BINARY = eval_config(PipelineConfig())


def _per_example_combiners(config):
    """The accumulators TFMA fills for every example of every slice, after merging the metrics' shared
    ones, as its evaluator does: (combiner, the TFMA combiner it batches or None)."""
    # pylint: disable-next=protected-access
    merge = metrics_plots_and_validations_evaluator._filter_and_separate_computations
    computations = merge(metric_specs.to_computations(config.metrics_specs, eval_config=config))
    # pylint: disable-next=protected-access
    return sorted((type(c.combiner).__name__, type(getattr(c.combiner, "_combiner", None)).__name__)
                  for c in computations.non_derived_computations)


def test_the_binary_metrics_fill_three_batched_accumulators_per_example():
    """The Evaluator's time is mostly these per example and slice (README "Scale"): calibration,
    mean label and mean prediction come from the histogram AUC and the plots fill, and each of the
    three is filled a batch at a time."""
    assert _per_example_combiners(BINARY) == [
        ("_BatchedCombiner", "_BinaryConfusionMatrixCombiner"),
        ("_BatchedCombiner", "_CalibrationHistogramCombiner"),
        ("_BatchedCombiner", "_ExampleCountCombiner")]


def test_the_regression_errors_count_each_accumulator_once():
    """TFMA 0.47's mean regression errors merge their first accumulator into itself when Beam hands
    them a tuple of accumulators (TFMA's own tuple combiner does): the first bundle counted twice.
    The regression task's mean absolute error, as the Evaluator computes it, counts each once."""
    config = types.SimpleNamespace(spec=task_spec({"column": "tips", "task": "regression"}),
                                   gate=PipelineConfig().gate)
    evaluation = eval_config(config)
    (mae,) = [c for c in metric_specs.to_computations(evaluation.metrics_specs, eval_config=evaluation)
              if any(k.name == "mean_absolute_error" for k in getattr(c, "keys", ()))
              and getattr(c, "combiner", None)]
    rng = np.random.default_rng(3)
    bundles = [rng.random((n, 2)) * 10 for n in (5, 40, 7)]

    def merged(combiner):
        accumulators = []
        for bundle in bundles:
            accumulator = combiner.create_accumulator()
            for label, prediction in bundle:
                accumulator = combiner.add_input(accumulator, tfma.metrics.StandardMetricInputs(
                    labels=np.array([label]), predictions=np.array([prediction])))
            accumulators.append(accumulator)
        (value,) = combiner.extract_output(combiner.merge_accumulators(tuple(accumulators))).values()
        return value

    rows = np.concatenate(bundles)
    assert merged(mae.combiner) == pytest.approx(np.mean(np.abs(rows[:, 0] - rows[:, 1])), rel=1e-12)
    # TFMA's own combiner, for the record: when this fails, TFMA is fixed and _MergedOnce can go.
    assert merged(mae.combiner._combiner) != pytest.approx(  # pylint: disable=protected-access
        np.mean(np.abs(rows[:, 0] - rows[:, 1])), rel=1e-6)


def _tfmas_own(config):
    """The config with TFMA's own metrics, unbatched, and TFMA's Calibration, MeanLabel and
    MeanPrediction for the project's HistogramCalibration."""
    reference = tfma.EvalConfig()
    reference.CopyFrom(config)
    metrics = reference.metrics_specs[0].metrics
    own = []
    for metric in metrics:
        name = metric_class(metric)
        if name == "HistogramCalibration":
            own += [tfma.MetricConfig(class_name=n) for n in ("Calibration", "MeanLabel", "MeanPrediction")]
            continue
        config = {k: v for k, v in json.loads(metric.config or "{}").items() if k != "metric"}
        own.append(tfma.MetricConfig(class_name=name, config=json.dumps(config) if config else "",
                                     per_slice_thresholds=metric.per_slice_thresholds))
    del metrics[:]
    metrics.extend(own)
    assert _per_example_combiners(reference) == [
        ("_BinaryConfusionMatrixCombiner", "NoneType"), ("_CalibrationHistogramCombiner", "NoneType"),
        ("_ExampleCountCombiner", "NoneType"), ("_WeightedLabelsPredictionsExamplesCombiner", "NoneType")]
    return reference


def _write_examples(path, rows=3000):
    """Labels and predictions as an evaluated model's, in the spec's slices; one payment type has
    only negatives (calibration divides by zero there). Some predictions sit on the confusion
    matrix's threshold and the histogram's ends, and some labels are fractional (0.5), which take
    TFMA's own per-example path."""
    rng = np.random.default_rng(7)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(rows):
            payment = rng.choice(["Cash", "Credit Card", "No Charge"])
            prediction = float(np.float32(rng.random())) if i % 50 else [0.0, 0.5, 1.0][i % 3]
            label = 0.0 if payment == "No Charge" else float(rng.random() < prediction)
            if i % 97 == 0 and payment != "No Charge":
                label = 0.5
            features = {"payment_type": [payment.encode()], "trip_start_hour": [int(rng.integers(24))]}
            example = tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
                "prediction": tf.train.Feature(float_list=tf.train.FloatList(value=[prediction])),
                "payment_type": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=features["payment_type"])),
                "trip_start_hour": tf.train.Feature(int64_list=tf.train.Int64List(
                    value=features["trip_start_hour"]))}))
            writer.write(example.SerializeToString())


def _model_agnostic(config):
    """The config for predictions stored with the examples (no model)."""
    agnostic = tfma.EvalConfig()
    agnostic.CopyFrom(config)
    del agnostic.model_specs[:]
    agnostic.model_specs.add(label_key="label", prediction_key="prediction")
    for metric in agnostic.metrics_specs[0].metrics:
        metric.ClearField("per_slice_thresholds")  # the gate needs a baseline model
    return agnostic


def _evaluate(config, data, output, **kwargs):
    """TFMA on predictions stored with the examples (no model), as the Evaluator computes them."""
    tfma.run_model_analysis(eval_config=_model_agnostic(config), data_location=data,
                            output_path=output, **kwargs)
    metrics = {slice_key: values[""][""]
               for slice_key, values in tfma.load_eval_result(output).slicing_metrics}
    # Bytes: the plots hold NaNs (precision where nothing is predicted positive).
    plots = {p.slice_key.SerializeToString(): p.SerializeToString(deterministic=True)
             for p in tfma.load_plots(output)}
    return metrics, plots


def test_the_binary_metrics_are_tfmas_own_in_every_slice(tmp_path):
    data = str(tmp_path / "examples.tfrecord")
    _write_examples(data)
    ours, our_plots = _evaluate(BINARY, data, str(tmp_path / "ours"))
    tfmas, tfma_plots = _evaluate(_tfmas_own(BINARY), data, str(tmp_path / "tfma"))
    assert len(ours) == 1 + 3 + 24 and set(ours) == set(tfmas)
    shown = {key for key, _, _ in METRIC_COLUMNS}
    for slice_key, expected in tfmas.items():
        got = ours[slice_key]
        assert set(got) == set(expected)
        # The summary's and the report's columns, in every slice.
        assert {"example_count", "auc", "auc_precision_recall", "binary_accuracy", "precision",
                "recall", "calibration"} <= set(got) & shown
        for name, value in expected.items():
            a, b = float(got[name]["doubleValue"]), float(value["doubleValue"])  # NaN: "NaN"
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0), \
                (slice_key, name)
    assert math.isnan(float(ours[(("payment_type", "No Charge"),)]["calibration"]["doubleValue"]))
    # The report's ROC, precision-recall and calibration figures: the plots, unchanged.
    assert our_plots == tfma_plots


# The columns _write_examples writes, dense but for the hour, which may be missing (a list per row).
SCHEMA = text_format.Parse("""
    feature { name: "label" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
    feature { name: "prediction" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
    feature { name: "payment_type" type: BYTES presence { min_fraction: 1 } shape { dim { size: 1 } } }
    feature { name: "trip_start_hour" type: INT value_count { min: 0 max: 1 } }
""", schema_pb2.Schema())


def _only_groups(extracts):
    assert tfma_metrics.ROWS_KEY in extracts, "a batch was split per example"
    return extracts


def test_rows_grouped_by_their_slices_give_tfmas_own_metrics(tmp_path):
    """The Evaluator's extractors when every metric takes blocks (components/tfma_extractors.py):
    each batch's rows grouped by the slices they fall in, not split per example, and TFMA's own
    values in every slice, the fractional labels' rows included (TFMA's per-example path)."""
    data = str(tmp_path / "examples.tfrecord")
    _write_examples(data)
    config = _model_agnostic(BINARY)
    assert tfma_extractors.metrics_take_blocks(config)
    source = tf_example_record.TFExampleRecord(file_pattern=data, schema=SCHEMA)
    adapter = tensor_adapter.TensorAdapterConfig(arrow_schema=source.ArrowSchema(),
                                                 tensor_representations=source.TensorRepresentations())
    extractors = tfma_extractors.custom_extractors(None, config, adapter)
    stage = extractors[-1]
    extractors[-1] = tfma.extractors.Extractor(
        stage_name=stage.stage_name, ptransform=stage.ptransform | beam.Map(_only_groups))
    ours, our_plots = _evaluate(BINARY, data, str(tmp_path / "ours"), schema=SCHEMA,
                                extractors=extractors)
    tfmas, tfma_plots = _evaluate(_tfmas_own(BINARY), data, str(tmp_path / "tfma"), schema=SCHEMA)
    assert len(ours) == 1 + 3 + 24 and set(ours) == set(tfmas)
    for slice_key, expected in tfmas.items():
        assert set(ours[slice_key]) == set(expected)
        for name, value in expected.items():
            a, b = float(ours[slice_key][name]["doubleValue"]), float(value["doubleValue"])
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0), \
                (slice_key, name)
    assert our_plots.keys() == tfma_plots.keys()
    for key, plot in tfma_plots.items():  # float sums added in another order
        assert close(json_format.MessageToDict(plot_pb(our_plots[key])),
                     json_format.MessageToDict(plot_pb(plot)), rel=1e-12)


def plot_pb(serialized):
    return metrics_for_slice_pb2.PlotsForSlice.FromString(serialized)


def test_a_batch_is_grouped_by_the_slices_tfma_gives_each_row():
    """Rows land in one group with the slice keys TFMA's own slicer gives each of them (a feature
    that may be missing, one with several values, a cross of two), with their own labels and
    predictions."""
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["hour"]),
                       tfma.SlicingSpec(feature_keys=["hour", "payment"]),
                       tfma.SlicingSpec(feature_values={"tags": "b"})])
    rows = 12
    hours = [np.array([h], np.int64) if h is not None else np.array([], np.int64)
             for h in [3, 4, None, 3, 4, 3, None, 5, 3, 4, 3, 3]]
    batch = {
        "features": {
            "hour": tfma.types.VarLenTensorValue.from_dense_rows(hours),
            "payment": np.array([[b"Cash"], [b"Card"]] * 6, object),
            "tags": np.array([[b"a", b"b"], [b"b", b"b"], [b"a", b"a"]] * 4, object),
            "fare": np.arange(rows, dtype=np.float32).reshape(rows, 1)},
        "labels": np.arange(rows) % 2,
        "predictions": np.linspace(0, 1, rows, dtype=np.float32)}
    # pylint: disable=protected-access
    grouped = tfma_extractors._SlicedBatches(config)
    grouped.setup()
    groups = _same_slices_as_tfmas_own(grouped, batch, rows)
    assert 1 < len(groups) < rows
    assert {key for g in groups for key in g["_slice_key_types"]} >= {
        (), (("hour", 3),), (("hour", 3), ("payment", "Card")), (("tags", "b"),)}
    # The only slicing feature missing in every row of a batch (TFMA's split makes no row of it):
    # every row in the overall slice alone.
    batch["features"] = {"hour": tfma.types.VarLenTensorValue.from_dense_rows(
        [np.array([], np.int64)] * rows)}
    assert [g["_slice_key_types"].tolist() for g in _same_slices_as_tfmas_own(grouped, batch, rows)
            ] == [[()]]


def _same_slices_as_tfmas_own(grouped, batch, rows):
    """The batch's groups, once checked: every row in one group, with the slice keys TFMA's own
    split and slicing give it."""
    groups = list(grouped.process(dict(batch)))
    assert all(tfma_metrics.ROWS_KEY in g for g in groups)
    expected = list(grouped._per_example(dict(batch)))  # pylint: disable=protected-access
    seen = []
    for group in groups:
        assert set(group) == {"labels", "predictions", "_slice_key_types", tfma_metrics.ROWS_KEY}
        assert group[tfma_metrics.ROWS_KEY] == len(group["labels"])
        for label, prediction in zip(group["labels"], group["predictions"]):
            row = next(i for i, e in enumerate(expected) if i not in seen and
                       e["labels"] == label and e["predictions"] == prediction)
            seen.append(row)
            assert set(group["_slice_key_types"]) == set(expected[row]["_slice_key_types"])
    assert sorted(seen) == list(range(rows))
    return groups


TWO_MODELS = tfma.EvalConfig(model_specs=[
    tfma.ModelSpec(name="candidate", label_key="label", prediction_key="probabilities"),
    tfma.ModelSpec(name="baseline", label_key="label", prediction_key="probabilities",
                   is_baseline=True)])


@pytest.mark.parametrize("label, prediction, weighted, weight, fast", [
    (np.array([1]), np.array([0.25], np.float32), False, None, True),
    (np.array([[0.0]]), np.array([[1.0]], np.float32), True, np.array([2.5]), True),
    (np.array([0.5]), np.array([0.25], np.float32), False, None, False),  # a fractional label
    (np.array([1]), np.array([0.25, 0.75], np.float32), False, None, False),  # two values
    (np.array([1]), np.array([np.nan], np.float32), False, None, False),
    (np.array([1]), np.array([0.25], np.float32), True, np.array([0.0]), False),  # a zero weight
])
def test_an_example_is_unpacked_once_as_tfma_unpacks_it(label, prediction, weighted, weight, fast):
    """What Batched's preprocessor gives the combiners for one model of two (the candidate and its
    baseline, as the Evaluator runs them): TFMA's own (label, prediction, weight) in the simple case,
    TFMA's own per-example inputs otherwise."""
    extracts = {"labels": label, "example_weights": weight,
                "predictions": {"candidate": {"probabilities": prediction},
                                "baseline": {"probabilities": np.array([0.5], np.float32)}}}
    unpack = tfma_metrics.LabelPredictionWeight("candidate", "", weighted, TWO_MODELS)
    (row,) = unpack.process(dict(extracts))
    inputs = tfma.metrics.StandardMetricInputs(extracts)
    if not fast:
        assert isinstance(row, tfma.metrics.StandardMetricInputs) and row.label is label
        return
    (expected,) = tfma.metrics.to_label_prediction_example_weight(
        inputs, eval_config=TWO_MODELS, model_name="candidate", example_weighted=weighted,
        fractional_labels=True)
    assert row == tuple(float(v) for v in expected)


@pytest.mark.parametrize("label, blocks", [
    (None, True),  # the taxi spec's binary label: every metric batched
    ({"column": "payment_type", "task": "multiclass", "classes": ["Cash", "Credit Card", "Unknown"]},
     False),
    ({"column": "tips", "task": "regression"}, False)])
def test_every_tasks_metrics_read_only_labels_predictions_and_weights(label, blocks, saved_model_dir):
    """So the Evaluator cuts every batch to its slicing features before TFMA splits it, or, when
    every metric takes blocks of rows, groups each batch's rows by their slices instead of splitting."""
    config = PipelineConfig()
    if label:
        config = types.SimpleNamespace(spec=task_spec(label), gate=config.gate)
    # As TFX's Evaluator executor passes it, with the candidate's baseline.
    evaluation = tfma.utils.update_eval_config_with_defaults(eval_config(config), has_baseline=True,
                                                             rubber_stamp=True)
    assert tfma_extractors.metrics_read_only_default_inputs(evaluation)
    models = [tfma.default_eval_shared_model(saved_model_dir, model_name=spec.name,
                                             eval_config=evaluation)
              for spec in evaluation.model_specs]
    assert tfma_extractors.metrics_take_blocks(evaluation, models) == blocks
    stages = [e.stage_name for e in tfma_extractors.custom_extractors(models, evaluation)]
    if blocks:
        assert "ExtractUnbatchedInputs" not in stages and stages[-1] == "ExtractSliceKeys"
    else:
        assert stages.index("KeepForMetrics") == stages.index("ExtractUnbatchedInputs") - 1


def test_a_metric_that_reads_features_gets_whole_extracts():
    ranking = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="label")], metrics_specs=[
        tfma.MetricsSpec(query_key="query", metrics=[
            tfma.MetricConfig(class_name="MinLabelPosition", config='{"label_key": "relevance"}')])])
    assert not tfma_extractors.metrics_read_only_default_inputs(ranking)
    assert tfma_extractors.custom_extractors(None, ranking) is None  # TFMA's default extractors


def test_a_cut_batch_slices_as_the_whole_batch_does():
    """The slicer looks a feature up in each model's transformed features first, then in the raw
    features: both keep the slicing features, and nothing else is left to split."""
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name="candidate"), tfma.ModelSpec(name="baseline", is_baseline=True)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["hour"])],
        cross_slicing_specs=[tfma.CrossSlicingSpec(
            baseline_spec=tfma.SlicingSpec(feature_keys=["payment"]),
            slicing_specs=[tfma.SlicingSpec(feature_values={"company": "A"})])])
    assert tfma_extractors.slicing_features(config) == {"hour", "payment", "company"}
    batch = {
        "input": np.array([b"x", b"y"], object),
        "features": {"hour": np.array([[3], [4]]), "payment": np.array([[b"Cash"], [b"Card"]]),
                     "company": np.array([[b"A"], [b"B"]]), "fare": np.array([[1.0], [2.0]])},
        "transformed_features": {
            name: {"hour": np.array([[30], [40]]), "fare_xf": np.array([[0.1], [0.2]])}
            for name in ("candidate", "baseline")},
        "labels": np.array([[1.0], [0.0]]),
        "predictions": {"candidate": np.array([[0.7], [0.2]]), "baseline": np.array([[0.6], [0.1]])}}
    # pylint: disable-next=protected-access
    keep = tfma_extractors._KeepForMetrics(tfma_extractors.slicing_features(config),
                                           ["candidate", "baseline"])
    (cut,) = keep.process(dict(batch))
    assert set(cut) == {"features", "transformed_features", "labels", "predictions"}
    assert set(cut["features"]) == {"hour", "payment", "company"}
    assert {n: set(f) for n, f in cut["transformed_features"].items()} == {
        "candidate": {"hour"}, "baseline": {"hour"}}
    slicer = slice_key_extractor.ExtractSliceKeysFn(eval_config=config, materialize=False)
    specs = [tfma.slicer.SingleSliceSpec(spec=s) for s in config.slicing_specs]
    # pylint: disable-next=protected-access
    unbatch = unbatch_extractor._extract_unbatched_inputs
    hours = []
    for whole, kept in zip(unbatch(batch), unbatch(cut)):
        np.testing.assert_equal([kept["labels"], kept["predictions"]],
                                [whole["labels"], whole["predictions"]])
        (sliced_whole,), (sliced_kept,) = slicer.process(whole, specs), slicer.process(kept, specs)
        assert list(sliced_kept["_slice_key_types"]) == list(sliced_whole["_slice_key_types"])
        hours += [key for key in sliced_kept["_slice_key_types"] if key]
    assert sorted(hours) == [(("hour", 30),), (("hour", 40),)]  # the transformed values
