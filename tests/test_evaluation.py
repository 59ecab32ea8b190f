"""The Evaluator's TFMA config on real TFMA: what it computes per example, and the same values as
TFMA's own metrics."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator
from tensorflow_model_analysis.metrics import metric_specs

from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config
from pipeline.summary_view import METRIC_COLUMNS

BINARY = eval_config(PipelineConfig())


def _per_example_combiners(config):
    """The accumulators TFMA fills for every example of every slice, after merging the metrics' shared
    ones, as its evaluator does."""
    # pylint: disable-next=protected-access
    merge = metrics_plots_and_validations_evaluator._filter_and_separate_computations
    computations = merge(metric_specs.to_computations(config.metrics_specs, eval_config=config))
    return sorted(type(c.combiner).__name__ for c in computations.non_derived_computations)


def test_the_binary_metrics_fill_three_accumulators_per_example():
    """The Evaluator's time is mostly these per example and slice (README "Scale"): calibration,
    mean label and mean prediction come from the histogram AUC and the plots fill."""
    assert _per_example_combiners(BINARY) == [
        "_BinaryConfusionMatrixCombiner", "_CalibrationHistogramCombiner", "_ExampleCountCombiner"]


def _with_tfmas_calibration(config):
    """The config with TFMA's own Calibration, MeanLabel and MeanPrediction for the project's."""
    reference = tfma.EvalConfig()
    reference.CopyFrom(config)
    metrics = reference.metrics_specs[0].metrics
    (ours,) = [m for m in metrics if m.class_name == "HistogramCalibration"]
    metrics.remove(ours)
    metrics.extend(tfma.MetricConfig(class_name=name)
                   for name in ("Calibration", "MeanLabel", "MeanPrediction"))
    return reference


def _write_examples(path, rows=3000):
    """Labels and predictions as an evaluated model's, in the spec's slices; one payment type has
    only negatives (calibration divides by zero there)."""
    rng = np.random.default_rng(7)
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(rows):
            payment = rng.choice(["Cash", "Credit Card", "No Charge"])
            prediction = float(np.float32(rng.random()))
            label = 0 if payment == "No Charge" else int(rng.random() < prediction)
            features = {"payment_type": [payment.encode()], "trip_start_hour": [int(rng.integers(24))]}
            example = tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "prediction": tf.train.Feature(float_list=tf.train.FloatList(value=[prediction])),
                "payment_type": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=features["payment_type"])),
                "trip_start_hour": tf.train.Feature(int64_list=tf.train.Int64List(
                    value=features["trip_start_hour"]))}))
            writer.write(example.SerializeToString())


def _evaluate(config, data, output):
    """TFMA on predictions stored with the examples (no model), as the Evaluator computes them."""
    agnostic = tfma.EvalConfig()
    agnostic.CopyFrom(config)
    del agnostic.model_specs[:]
    agnostic.model_specs.add(label_key="label", prediction_key="prediction")
    for metric in agnostic.metrics_specs[0].metrics:
        metric.ClearField("per_slice_thresholds")  # the gate needs a baseline model
    tfma.run_model_analysis(eval_config=agnostic, data_location=data, output_path=output)
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
    tfmas, tfma_plots = _evaluate(_with_tfmas_calibration(BINARY), data, str(tmp_path / "tfma"))
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
