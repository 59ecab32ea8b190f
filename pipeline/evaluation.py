"""The Evaluator's TFMA config: the task's metrics, the spec's slices and the blessing thresholds."""
import json
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram, metric_types, metric_util

from pipeline.config import PipelineConfig


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    spec, gate = config.spec, config.gate
    gated = spec.task.gated_metric
    direction = (tfma.MetricDirection.HIGHER_IS_BETTER if gated.higher_is_better
                 else tfma.MetricDirection.LOWER_IS_BETTER)
    # TFMA needs a bound strictly past zero for "no regression" to let an equal model through.
    tolerance = max(gate.max_regression, 1e-10)
    threshold = tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
        direction=direction, absolute={"value": -tolerance if gated.higher_is_better else tolerance}))
    if gate.threshold is not None:
        bound = "lower_bound" if gated.higher_is_better else "upper_bound"
        threshold.value_threshold.CopyFrom(
            tfma.GenericValueThreshold(**{bound: {"value": gate.threshold}}))
    # Gate on the overall slice only: small slices (a rare category's) have too few examples,
    # or only one class, for a floor to mean anything.
    overall_gate = [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                 threshold=threshold)]
    metrics = [_metric(name, {}, per_slice_thresholds=overall_gate if name == gated.tfma_class else None)
               for name in spec.task.tfma_metrics()]
    metrics += [_metric(name, config) for name, config in spec.task.tfma_configured_metrics()]
    label_range = _label_range(spec) if spec.task.task == "regression" else None
    if label_range:
        # The run report's predicted vs actual on the whole eval split: TFMA's calibration
        # histogram groups the examples by prediction, each bucket with its label and prediction
        # totals (TFMA keeps no per-example predictions).
        metrics.append(_metric("CalibrationPlot", {"num_buckets": REGRESSION_PLOT_BUCKETS,
                                                   "left": label_range[0],
                                                   "right": label_range[1]}))
    metrics_specs = [tfma.MetricsSpec(metrics=metrics)]
    per_class = spec.task.tfma_per_class_metrics()
    if per_class:
        metrics_specs.append(tfma.MetricsSpec(
            metrics=[_metric(name, config) for name, config in per_class],
            binarize=tfma.BinarizationOptions(class_ids={"values": list(range(spec.task.units))})))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    label_key=spec.transformed_label,
                                    prediction_key=spec.task.prediction_key,
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[key])
                                              for key in spec.slices],
        metrics_specs=metrics_specs,
        # The model's compiled Keras metrics would repeat the task's metrics, slower.
        options=tfma.Options(include_default_metrics={"value": False}))


# Fine equal-width prediction buckets over the label's range: a schema's range has headroom (and
# labels outliers), so most predictions may sit in a small part of it; the run report merges them
# into bins of equal examples.
REGRESSION_PLOT_BUCKETS = 1000


def _label_range(spec) -> Optional[Tuple[float, float]]:
    """The label column's range in the curated schema (`init` writes one with headroom); None for
    a label computed by an expression or a column without a range."""
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel

    with open(spec.schema_path, encoding="utf-8") as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    feature = next((f for f in schema.feature if f.name == spec.label.column), None)
    if feature is None:
        return None
    if feature.HasField("float_domain"):
        domain = feature.float_domain
    elif feature.HasField("int_domain"):
        domain = feature.int_domain
    else:
        return None
    if not (domain.HasField("min") and domain.HasField("max")) or domain.max <= domain.min:
        return None
    return float(domain.min), float(domain.max)


def _metric(name: str, config: dict, **fields) -> tfma.MetricConfig:
    if config:
        fields["config"] = json.dumps(config)
    if name in _PROJECT_METRICS:
        fields["module"] = __name__  # where TFMA imports it from (in the Evaluator's process)
    return tfma.MetricConfig(class_name=name, **fields)


class HistogramCalibration(metric_types.Metric):
    """TFMA's Calibration, MeanLabel and MeanPrediction (same names and definitions), derived from the
    calibration histogram TFMA already fills for AUC, PR-AUC and the plots: TFMA would otherwise
    fill a fourth accumulator for them, calling it for every example of every slice in Python."""

    def __init__(self, name: str = "histogram_calibration"):
        super().__init__(metric_util.merge_per_key_computations(_histogram_calibration), name=name)


def _histogram_calibration(name: str, eval_config=None, model_name: str = "", output_name: str = "",
                           sub_key=None, aggregation_type=None, class_weights=None,
                           example_weighted: bool = False) -> metric_types.MetricComputations:
    del name  # its outputs keep the names of TFMA's three metrics
    # The arguments AUC's histogram is made with, so that TFMA keeps one of the two
    # (metrics_plots_and_validations_evaluator._filter_and_separate_computations).
    computations = calibration_histogram.calibration_histogram(
        eval_config=eval_config, model_name=model_name, output_name=output_name, sub_key=sub_key,
        aggregation_type=aggregation_type, class_weights=class_weights,
        example_weighted=example_weighted)
    histogram_key = computations[-1].keys[-1]
    keys = {metric: metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name,
                                           sub_key=sub_key, example_weighted=example_weighted)
            for metric in ("calibration", "mean_label", "mean_prediction")}

    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
        buckets = metrics[histogram_key]
        labels = sum(b.weighted_labels for b in buckets)
        predictions = sum(b.weighted_predictions for b in buckets)
        examples = sum(b.weighted_examples for b in buckets)
        # TFMA's own definitions (metrics/calibration.py), NaN where they divide by zero.
        return {keys["calibration"]: float("nan") if np.isclose(labels, 0.0) else predictions / labels,
                keys["mean_label"]: float("nan") if np.isclose(examples, 0.0) else labels / examples,
                keys["mean_prediction"]: (float("nan") if np.isclose(examples, 0.0)
                                          else predictions / examples)}

    computations.append(metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result))
    return computations


_PROJECT_METRICS = {HistogramCalibration.__name__}
