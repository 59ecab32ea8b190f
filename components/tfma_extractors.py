"""TFMA's default extractors for the Evaluator, with each batch cut to what its metrics and slices read
before TFMA splits it into examples.

TFMA splits every batch into one dict per example (`UnbatchExtractor`), every column of it: each raw
and transformed feature and the serialized example, about 37 values per taxi example, converted one at
a time in Python (`util.split_extracts`, a third of the Evaluator's time profiled at 100k rows, README
"Scale"). After the split, the slicer reads only the slicing features, and metrics read the labels,
predictions and weights unless one asks for more (a preprocessor other than TFMA's standard inputs, or
one whose filter includes features or the input). So when no metric asks for more, `_KeepForMetrics`
keeps, of the features and transformed features, only the slicing ones and drops the serialized
example; otherwise the extracts pass whole.

After the split, TFMA's evaluator still handles each example alone: its slice keys, its metric
inputs, one Beam element per example and slice into the combiners. When every metric is one the
project batches (components/tfma_metrics.py), `_SlicedBatches` replaces the split and the slicing: it
groups a batch's rows by the slice keys they fall in (TFMA's own slicer, run once per distinct
combination of the slicing features' values) and emits one extract per group, the group's rows of
labels, predictions and weights, marked with their count (`tfma_metrics.ROWS_KEY`); those metrics'
preprocessor reads them as a block. TFMA's evaluator, fan-out, combining, derived metrics and
validation run as before, on one element per group and slice. A batch holding anything else than
plain arrays to group is split per example, as TFMA's own extractors split it.

TFX's Evaluator executor calls `custom_extractors` from the module named by its `module_path`
(components/capped_evaluator.py sets it).
"""
from typing import Any, Dict, FrozenSet, Iterator, List, Optional

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.api import types
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tensorflow_model_analysis.metrics import metric_specs, metric_types
from tensorflow_model_analysis.utils import util

from components import tfma_metrics

# What TFMA's default inputs hold (labels, predictions, weights...): none of what is cut.
_CUT = frozenset({constants.FEATURES_KEY, constants.TRANSFORMED_FEATURES_KEY, constants.INPUT_KEY})
# Nor these: what a group of rows leaves behind of a batch when every metric takes blocks.
_NOT_METRIC_INPUTS = _CUT | {constants.ARROW_RECORD_BATCH_KEY, constants.SLICE_KEY_TYPES_KEY,
                             constants.SLICE_KEYS_KEY}


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


def metrics_take_blocks(eval_config: tfma.EvalConfig, eval_shared_models=()) -> bool:
    """Whether every metric computed per example reads it through the project's batched
    preprocessor (`tfma_metrics.LabelPredictionWeight`), and TFMA's evaluator does nothing else per
    example: no query key, no confidence intervals (they resample examples), no minimum slice size
    (it counts elements), no SQL slices, no metrics compiled into a Keras model."""
    options = eval_config.options
    if (any(spec.query_key for spec in eval_config.metrics_specs)
            or options.compute_confidence_intervals.value or options.min_slice_size.value > 1
            or any(spec.slice_keys_sql for spec in eval_config.slicing_specs)
            or any(model.include_default_metrics for model in eval_shared_models if model)):
        return False
    computations = metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config)
    # Derived and cross-slice computations read combined results, not examples.
    per_example = [c for c in computations if isinstance(c, metric_types.MetricComputation)]
    return all(len(c.preprocessors or ()) == 1
               and isinstance(c.preprocessors[0], tfma_metrics.LabelPredictionWeight)
               for c in per_example)


def _slice_specs(eval_config: tfma.EvalConfig) -> List[tfma.slicer.SingleSliceSpec]:
    """The slices TFMA's SliceKeyExtractor slices into, in its order."""
    specs = [tfma.slicer.SingleSliceSpec(spec=spec) for spec in eval_config.slicing_specs]
    for cross in eval_config.cross_slicing_specs:
        for spec in (cross.baseline_spec, *cross.slicing_specs):
            single = tfma.slicer.SingleSliceSpec(spec=spec)
            if single not in specs:
                specs.append(single)
    return specs or [tfma.slicer.SingleSliceSpec()]


def _leaves(tree: Any) -> Iterator[Any]:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif tree is not None:
        yield tree


def _row_starts(varlen: "types.VarLenTensorValue", rows: int) -> np.ndarray:
    """Where each row's values start in `varlen.values`, and where the last one ends."""
    return np.searchsorted(varlen.indices[:, 0], np.arange(rows + 1)) if len(varlen.indices) \
        else np.zeros(rows + 1, np.int64)


def _codes(leaf: Any, rows: int) -> Optional[np.ndarray]:
    """Per row of a feature's batch, a number equal for rows of equal values; None for a kind of
    batch this does not read."""
    if isinstance(leaf, types.VarLenTensorValue):
        starts = _row_starts(leaf, rows)
        seen: Dict[tuple, int] = {}
        return np.array([seen.setdefault(tuple(leaf.values[a:b].tolist()), len(seen))
                         for a, b in zip(starts[:-1], starts[1:])], np.int64)
    if not isinstance(leaf, np.ndarray) or leaf.ndim == 0 or len(leaf) != rows:
        return None
    flat = leaf.reshape(rows, -1)
    if flat.shape[1] == 1:
        try:
            return np.unique(flat[:, 0], return_inverse=True)[1].reshape(rows)
        except TypeError:  # objects that do not sort (None beside bytes)
            pass
    seen = {}
    return np.array([seen.setdefault(tuple(row), len(seen)) for row in flat.tolist()], np.int64)


def _take(tree: Any, index: np.ndarray, rows: int) -> Any:
    """The rows `index` of a batch's (nested) values; raises TypeError for a kind it cannot take."""
    if isinstance(tree, dict):
        return {key: _take(value, index, rows) for key, value in tree.items()}
    if tree is None:
        return None
    if isinstance(tree, types.VarLenTensorValue):
        starts = _row_starts(tree, rows)
        return types.VarLenTensorValue.from_dense_rows(
            [tree.values[starts[i]:starts[i + 1]] for i in index])
    if isinstance(tree, np.ndarray) and tree.ndim and len(tree) == rows:
        return tree[index]
    raise TypeError(f"cannot take rows of a {type(tree).__name__}")


_GROUP = "_project_group"


class _SlicedBatches(beam.DoFn):
    """Each batch as one extract per group of its rows that fall in the same slices: the group's
    metric inputs (labels, predictions, weights), its slice keys and its row count."""

    def __init__(self, eval_config: tfma.EvalConfig):
        self._eval_config = eval_config
        self._keep = _KeepForMetrics(slicing_features(eval_config),
                                     [spec.name for spec in eval_config.model_specs])

    def setup(self):
        self._specs = _slice_specs(self._eval_config)
        self._slicer = slice_key_extractor.ExtractSliceKeysFn(self._eval_config, materialize=False)

    def _per_example(self, batch):
        """TFMA's own split and slicing, an example at a time."""
        # pylint: disable-next=protected-access
        for extracts in unbatch_extractor._extract_unbatched_inputs(batch):
            yield from self._slicer.process(extracts, self._specs)

    def process(self, batch):
        (cut,) = self._keep.process(batch)
        slicing = {key: cut[key] for key in (constants.FEATURES_KEY, constants.TRANSFORMED_FEATURES_KEY)
                   if key in cut}
        inputs = {key: value for key, value in cut.items() if key not in _NOT_METRIC_INPUTS}
        record_batch = batch.get(constants.ARROW_RECORD_BATCH_KEY)
        rows = record_batch.num_rows if record_batch is not None else next(
            (len(leaf) for leaf in _leaves(inputs) if isinstance(leaf, np.ndarray) and leaf.ndim), None)
        codes = [_codes(leaf, rows) for leaf in _leaves(slicing)] if rows else [None]
        if any(c is None for c in codes):
            yield from self._per_example(cut)
            return
        group = (np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)[1].reshape(rows)
                 if codes else np.zeros(rows, np.int64))
        order = np.argsort(group, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(group[order])) + 1)
        try:
            parts = [_take(inputs, index, rows) for index in groups]
            firsts = _take(slicing, np.array([index[0] for index in groups]), rows)
        except TypeError:
            yield from self._per_example(cut)
            return
        # Each group's first row, as TFMA's split gives it to TFMA's slicer. The split makes no rows
        # of a feature that is empty in every row, so the group number makes one per group.
        firsts = util.split_extracts({**firsts, _GROUP: np.arange(len(groups))})
        for part, first, index in zip(parts, firsts, groups):
            (sliced,) = self._slicer.process(first, self._specs)
            part[constants.SLICE_KEY_TYPES_KEY] = sliced[constants.SLICE_KEY_TYPES_KEY]
            part[tfma_metrics.ROWS_KEY] = len(index)
            yield part


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig,
                      tensor_adapter_config=None) -> Optional[List[tfma.extractors.Extractor]]:
    """TFMA's default extractors, then: when every metric takes blocks of rows, `_SlicedBatches` in
    place of the split and the slicing; otherwise, when the metrics read only TFMA's default inputs,
    `_KeepForMetrics` before the split; otherwise None (TFMA's defaults)."""
    models = eval_shared_model if isinstance(eval_shared_model, list) else [eval_shared_model]
    sliced = metrics_take_blocks(eval_config, models)
    if not sliced and not metrics_read_only_default_inputs(eval_config):
        return None
    extractors = tfma.default_extractors(eval_shared_model=eval_shared_model, eval_config=eval_config,
                                         tensor_adapter_config=tensor_adapter_config)
    stages = [e.stage_name for e in extractors]
    unbatch = stages.index(unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME)
    if sliced:
        slicing = stages.index(slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME)
        # TFMA's evaluator runs after the stage of that name.
        stage = tfma.extractors.Extractor(stage_name=slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME,
                                          ptransform=beam.ParDo(_SlicedBatches(eval_config)))
        return extractors[:unbatch] + [stage] + extractors[slicing + 1:]
    keep = tfma.extractors.Extractor(
        stage_name="KeepForMetrics",
        ptransform=beam.ParDo(_KeepForMetrics(slicing_features(eval_config),
                                              [spec.name for spec in eval_config.model_specs])))
    return extractors[:unbatch] + [keep] + extractors[unbatch:]
