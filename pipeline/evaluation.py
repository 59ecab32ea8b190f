"""The Evaluator's TFMA config: the task's metrics, the spec's slices and the blessing thresholds."""
import json

import tensorflow_model_analysis as tfma

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
    metrics = [tfma.MetricConfig(class_name=name,
                                 per_slice_thresholds=overall_gate if name == gated.tfma_class else None)
               for name in spec.task.tfma_metrics()]
    metrics += [_metric(name, config) for name, config in spec.task.tfma_configured_metrics()]
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


def _metric(name: str, config: dict) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=name, **({"config": json.dumps(config)} if config else {}))
