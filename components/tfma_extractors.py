"""TFMA's default extractors for the Evaluator, with each batch cut to what its metrics and slices read
before TFMA splits it into examples.

TFMA splits every batch into one dict per example (`UnbatchExtractor`), every column of it: each raw
and transformed feature and the serialized example, about 37 values per taxi example, converted one at
a time in Python (`util.split_extracts`, a third of the Evaluator's time profiled at 100k rows, README
"Scale"). After the split, the slicer reads only the slicing features, and metrics read the labels,
predictions and weights unless one asks for more (a preprocessor other than TFMA's standard inputs, or
one whose filter includes features or the input). So when no metric asks for more, `_KeepForMetrics`
keeps, of the features and transformed features, only the slicing ones and drops the serialized
example; otherwise the extracts pass whole. TFX's Evaluator executor calls `custom_extractors` from
the module named by its `module_path` (components/capped_evaluator.py sets it).
"""
from typing import FrozenSet, List, Optional

import apache_beam as beam
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import unbatch_extractor
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from components import tfma_metrics

# What TFMA's default inputs hold (labels, predictions, weights...): none of what is cut.
_CUT = frozenset({constants.FEATURES_KEY, constants.TRANSFORMED_FEATURES_KEY, constants.INPUT_KEY})


def slicing_features(eval_config: tfma.EvalConfig) -> FrozenSet[str]:
    """The features any slicing or cross-slicing spec reads."""
    specs = list(eval_config.slicing_specs)
    for cross in eval_config.cross_slicing_specs:
        specs += [cross.baseline_spec, *cross.slicing_specs]
    return frozenset(key for spec in specs for key in (*spec.feature_keys, *spec.feature_values))


def metrics_read_only_default_inputs(eval_config: tfma.EvalConfig) -> bool:
    """Whether every metric computation reads only TFMA's default inputs, none of the features or
    the serialized example."""
    computations = metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config)
    for computation in computations:
        for preprocessor in getattr(computation, "preprocessors", None) or []:
            if isinstance(preprocessor, tfma_metrics.LabelPredictionWeight):
                continue
            # pylint: disable-next=unidiomatic-typecheck
            if type(preprocessor) is not metric_types.StandardMetricInputsPreprocessor:
                return False
            if not preprocessor.include_filter or _CUT & set(preprocessor.include_filter):
                return False  # an empty filter passes the whole extracts
    return True


class _KeepForMetrics(beam.DoFn):
    """A batch of extracts with, of its features and transformed features, only `features`, and no
    serialized examples."""

    def __init__(self, features: FrozenSet[str], model_names: List[str]):
        self._features = features
        # Transformed features are keyed by model name when there are several models.
        self._model_names = model_names

    def _keep(self, features):
        return {k: v for k, v in features.items() if k in self._features} if features else features

    def process(self, extracts):
        kept = dict(extracts)
        kept.pop(constants.INPUT_KEY, None)
        if constants.FEATURES_KEY in kept:
            kept[constants.FEATURES_KEY] = self._keep(kept[constants.FEATURES_KEY])
        transformed = kept.get(constants.TRANSFORMED_FEATURES_KEY)
        if transformed:
            if len(self._model_names) > 1:
                kept[constants.TRANSFORMED_FEATURES_KEY] = {
                    name: self._keep(value) if name in self._model_names else value
                    for name, value in transformed.items()}
            else:
                kept[constants.TRANSFORMED_FEATURES_KEY] = self._keep(transformed)
        yield kept


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig,
                      tensor_adapter_config=None) -> Optional[List[tfma.extractors.Extractor]]:
    """TFMA's default extractors, and before the unbatching, `_KeepForMetrics` when the metrics read
    only TFMA's default inputs (None, TFMA's defaults, otherwise)."""
    if not metrics_read_only_default_inputs(eval_config):
        return None
    extractors = tfma.default_extractors(eval_shared_model=eval_shared_model, eval_config=eval_config,
                                         tensor_adapter_config=tensor_adapter_config)
    unbatch = next(i for i, e in enumerate(extractors)
                   if e.stage_name == unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME)
    keep = tfma.extractors.Extractor(
        stage_name="KeepForMetrics",
        ptransform=beam.ParDo(_KeepForMetrics(slicing_features(eval_config),
                                              [spec.name for spec in eval_config.model_specs])))
    return extractors[:unbatch] + [keep] + extractors[unbatch:]
