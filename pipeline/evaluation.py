"""The Evaluator's TFMA config: metrics, slices and the blessing thresholds."""
import tensorflow_model_analysis as tfma

from models import features
from pipeline.config import PipelineConfig

METRICS = ("ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall",
           "Calibration", "MeanLabel", "MeanPrediction")


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.auc_floor}),
        # TFMA needs a strictly negative bound for "no regression" to let an equal model through.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(config.max_auc_regression, 1e-10)}))
    # Gate on the overall slice only: small slices (e.g. payment_type=Dispute) have too few examples,
    # or only one class, for an AUC floor to mean anything.
    overall_auc_gate = [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                     threshold=auc_threshold)]
    metrics = [tfma.MetricConfig(class_name=name,
                                 per_slice_thresholds=overall_auc_gate if name == "AUC" else None)
               for name in METRICS]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    label_key=features.TRANSFORMED_LABEL_KEY,
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[key])
                                              for key in features.SLICE_FEATURES],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        # The model's compiled Keras metrics would repeat AUC and accuracy, slower.
        options=tfma.Options(include_default_metrics={"value": False}))
