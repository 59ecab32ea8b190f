"""The Evaluator's TFMA config: the task's metrics, the spec's slices and the blessing thresholds."""
import json
from typing import Optional, Tuple

import tensorflow_model_analysis as tfma

from components import tfma_metrics
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
        # TFMA only calls the model's signatures: loaded as a plain SavedModel rather than as the
        # Keras model the Trainer saves, it predicts the same and loads faster (2.2 s against 3.1 s
        # a model at the taxi's size). Without a type, TFMA would load each model once more only to
        # find one.
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    model_type=tfma.constants.TF_GENERIC,
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
    """TFMA's metric `name` with `config`; TFMA's own and the project's metrics batched
    (components/tfma_metrics.py), Keras metrics as TFMA computes them."""
    if name in tfma_metrics.batchable_metrics():
        config = {"metric": name, **config}
        name, fields["module"] = tfma_metrics.Batched.__name__, tfma_metrics.__name__
    if config:
        fields["config"] = json.dumps(config)
    return tfma.MetricConfig(class_name=name, **fields)


def metric_class(metric: tfma.MetricConfig) -> str:
    """The class name of the metric a MetricConfig computes, batched or not."""
    if metric.class_name == tfma_metrics.Batched.__name__:
        return json.loads(metric.config)["metric"]
    return metric.class_name
