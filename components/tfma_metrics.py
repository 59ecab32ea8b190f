"""The project's TFMA metrics, which TFMA imports by module name inside the Evaluator.

- `HistogramCalibration`: TFMA's Calibration, MeanLabel and MeanPrediction from the calibration
  histogram AUC already fills.
- `Batched`: any TFMA metric, with its per-example accumulators filled a batch at a time (and TFMA's
  mean regression errors merged correctly, `_MergedOnce`).

TFMA 0.47 feeds each of its combiners one (example, slice) at a time, and each combiner unpacks the
example's label, prediction and weight again in Python (`to_label_prediction_example_weight`, ~50 us a
call): 12 unpacks per example for the binary task's two models and three slices, most of the
Evaluator's time (README "Scale"). `Batched(metric=...)` is that metric, with the same names, keys,
thresholds and derived computations, whose calibration histogram, binary confusion matrices and
example count are filled by `_BatchedCombiner`: a preprocessor unpacks each example once per
computation, before the fan-out to slices; the combiner buffers the rows and adds them with numpy, in
the order TFMA would (`np.add.at` adds in order), then hands TFMA's own accumulator to TFMA's own
merge and extract. When the Evaluator's extractors hand TFMA groups of rows rather than examples
(`ROWS_KEY`, components/tfma_extractors.py), the preprocessor unpacks a group's columns at once and
the combiner takes them as one block. Rows outside the simple case (a label other than 0 or 1,
several values, a zero or non-finite weight, a non-finite prediction) take TFMA's own per-example
path. This reads private
parts of TFMA (pinned in requirements-3.X.lock); tests/test_evaluation.py compares every slice's
values and plots with TFMA's own metrics.
"""
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.contrib.aggregates import binary_confusion_matrices as bcm_aggregates
from tensorflow_model_analysis.metrics import (binary_confusion_matrices, calibration_histogram,
                                               example_count, mean_regression_error, metric_types,
                                               metric_util)
from tensorflow_model_analysis.utils import util

# Rows buffered per accumulator before they are added (memory: 24 bytes and a tuple each).
FLUSH_ROWS = 4096
# In an extract holding a group of rows rather than one example (components/tfma_extractors.py):
# how many.
ROWS_KEY = "_project_rows"


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


PROJECT_METRICS = {"HistogramCalibration": HistogramCalibration}


def batchable_metrics() -> Dict[str, type]:
    """The metrics `Batched` wraps, by class name: TFMA's registered ones and the project's."""
    return {**metric_types.registered_metrics(), **PROJECT_METRICS}


class Batched(metric_types.Metric):
    """`metric` (a TFMA metric's class name, or one of PROJECT_METRICS) with its `config`, its
    per-example accumulators filled in batches; its name, keys and results are the metric's own."""

    def __init__(self, metric: str, **config):
        classes = batchable_metrics()
        if metric not in classes:
            raise ValueError(f"Batched: no TFMA metric named {metric!r}")
        self._metric, self._inner = metric, classes[metric](**config)
        super().__init__(self._inner.create_computations_fn, **self._inner.kwargs)
        self.name = self._inner.name

    def get_config(self) -> Dict[str, Any]:
        return {"metric": self._metric, **self._inner.get_config()}

    @property
    def compute_confidence_interval(self) -> bool:
        return self._inner.compute_confidence_interval

    def computations(self, *args, **kwargs) -> metric_types.MetricComputations:
        return [_batched(c) for c in self._inner.computations(*args, **kwargs)]


class _Kind:
    """How to fill one type of TFMA combiner's accumulator from rows of (label, prediction, weight)."""
    combiner_type: type

    def applies(self, combiner) -> bool:
        """Whether every row the combiner sees is one (label, prediction, weight)."""
        return (getattr(combiner, "_aggregation_type", None) is None
                and not getattr(combiner, "_class_weights", None)
                and getattr(self.key(combiner), "sub_key", None) is None)

    def key(self, combiner):
        return combiner._key  # pylint: disable=protected-access

    def unpacking(self, combiner) -> "LabelPredictionWeight":
        key = self.key(combiner)
        return LabelPredictionWeight(key.model_name, key.output_name, bool(key.example_weighted),
                                      combiner._eval_config)  # pylint: disable=protected-access

    def empty(self, combiner) -> np.ndarray:
        raise NotImplementedError

    def add(self, combiner, state: np.ndarray, rows: np.ndarray) -> None:
        """Adds rows (n x 3: label, prediction, weight) to `state` in place, in order."""
        raise NotImplementedError

    def to_tfma(self, combiner, state: np.ndarray) -> Any:
        """TFMA's accumulator holding what `state` holds."""
        raise NotImplementedError


class _Histogram(_Kind):
    combiner_type = calibration_histogram._CalibrationHistogramCombiner  # pylint: disable=protected-access

    def empty(self, combiner):
        return np.zeros((4, combiner._num_buckets + 2))  # pylint: disable=protected-access

    def add(self, combiner, state, rows):
        # pylint: disable=protected-access
        labels, predictions, weights = rows.T
        values = predictions if combiner._prediction_based_bucketing else labels
        # _CalibrationHistogramCombiner._bucket_index, element-wise: the same float operations.
        index = (values - combiner._left) / combiner._range * combiner._num_buckets + 1
        buckets = np.where(index < 0, 0, np.where(index >= combiner._num_buckets + 1,
                                                  combiner._num_buckets + 1, np.floor(index)))
        buckets = buckets.astype(np.int64)
        np.add.at(state[0], buckets, labels * weights)
        np.add.at(state[1], buckets, predictions * weights)
        np.add.at(state[2], buckets, weights)
        np.add.at(state[3], buckets, 1)

    def to_tfma(self, combiner, state):
        return {int(i): calibration_histogram.Bucket(int(i), float(state[0, i]), float(state[1, i]),
                                                     float(state[2, i]))
                for i in np.flatnonzero(state[3])}


class _ConfusionMatrices(_Kind):
    combiner_type = binary_confusion_matrices._BinaryConfusionMatrixCombiner  # pylint: disable=protected-access

    def applies(self, combiner):
        # pylint: disable=protected-access
        return (super().applies(combiner) and not combiner._example_id_key and
                combiner._extract_label_prediction_and_weight
                is metric_util.to_label_prediction_example_weight)

    @staticmethod
    def _thresholds(combiner) -> List[float]:
        return combiner._binary_confusion_matrices._thresholds  # pylint: disable=protected-access

    def empty(self, combiner):
        return np.zeros((len(self._thresholds(combiner)), 4))  # tp, tn, fp, fn per threshold

    def add(self, combiner, state, rows):
        labels, predictions, weights = rows.T
        fractional = combiner._enable_fractional_labels  # pylint: disable=protected-access
        for i, threshold in enumerate(self._thresholds(combiner)):
            # BinaryConfusionMatrices.add_input's cases, element-wise.
            positive = labels == 1.0 if fractional else labels > threshold
            predicted = predictions > threshold
            cell = np.where(positive, np.where(predicted, 0, 3), np.where(predicted, 2, 1))
            np.add.at(state[i], cell, weights)

    def to_tfma(self, combiner, state):
        return {threshold: bcm_aggregates._ThresholdEntry(  # pylint: disable=protected-access
                    bcm_aggregates.Matrix(*(float(v) for v in state[i])), [], [], [], [])
                for i, threshold in enumerate(self._thresholds(combiner))}


class _ExampleCount(_Kind):
    combiner_type = example_count._ExampleCountCombiner  # pylint: disable=protected-access

    def applies(self, combiner):
        return True

    def unpacking(self, combiner):
        # pylint: disable=protected-access
        return LabelPredictionWeight(combiner._model_name, combiner._output_name,
                                      bool(combiner._example_weighted), None, weight_only=True)

    def empty(self, combiner):
        return np.zeros(1)

    def add(self, combiner, state, rows):
        np.add.at(state, np.zeros(len(rows), np.int64), rows[:, 2])

    def to_tfma(self, combiner, state):
        return float(state[0])


_KINDS = (_Histogram(), _ConfusionMatrices(), _ExampleCount())


def _kind(combiner) -> Optional[_Kind]:
    for kind in _KINDS:
        if type(combiner) is kind.combiner_type and kind.applies(combiner):  # pylint: disable=unidiomatic-typecheck
            return kind
    return None


def _batched(computation):
    """The computation with a batched combiner, if it is one of TFMA's that _KINDS fill (TFMA's mean
    regression errors: merged once, `_MergedOnce`)."""
    if not isinstance(computation, metric_types.MetricComputation) or not _standard_inputs(computation):
        return computation
    # pylint: disable-next=protected-access
    if isinstance(computation.combiner, mean_regression_error._MeanRegressionErrorCombiner):
        return metric_types.MetricComputation(keys=computation.keys,
                                              preprocessors=computation.preprocessors,
                                              combiner=_MergedOnce(computation.combiner))
    kind = _kind(computation.combiner)
    if kind is None:
        return computation
    return metric_types.MetricComputation(keys=computation.keys,
                                          preprocessors=[kind.unpacking(computation.combiner)],
                                          combiner=_BatchedCombiner(computation.combiner))


def _standard_inputs(computation) -> bool:
    """Whether TFMA gives the computation's combiner its standard inputs (labels, predictions and
    example weights, or a part of them)."""
    return all(type(p) is metric_types.StandardMetricInputsPreprocessor  # pylint: disable=unidiomatic-typecheck
               for p in computation.preprocessors)


def _lookup(value: Any, key: str) -> Any:
    """metric_util's optionally_get_by_keys for one key."""
    if key and isinstance(value, Mapping) and key in value:
        return value[key]
    return value


def _scalar(value: Any) -> Optional[float]:
    """A one-value array's value as a float; None for anything else."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiub":
        return float(value.reshape(()))
    return None


class LabelPredictionWeight(metric_types.Preprocessor):
    """Each example's (label, prediction, weight) for one model and output, as
    to_label_prediction_example_weight yields it in the simple case: one label of 0 or 1, one finite
    prediction, a finite positive weight (1 unless example-weighted). Any other example: TFMA's
    StandardMetricInputs, for TFMA's own per-example path."""

    def __init__(self, model_name: str, output_name: str, example_weighted: bool, eval_config,
                 weight_only: bool = False):
        self._model_name, self._output_name = model_name, output_name
        self._example_weighted, self._weight_only = example_weighted, weight_only
        # to_label_prediction_example_weight's lookup of the model's label and prediction keys.
        self._label_key = self._prediction_key = ""
        specs = eval_config.model_specs if eval_config else []
        for spec in specs:
            if (spec.name if len(specs) > 1 else "") == model_name:
                self._label_key, self._prediction_key = spec.label_key, spec.prediction_key
                break
        super().__init__(name=f"_label_prediction_weight[{model_name}|{output_name}|"
                              f"{example_weighted}|{self._label_key}|{self._prediction_key}|"
                              f"{weight_only}]")

    def _weight(self, extracts) -> Any:
        return _lookup(_lookup(extracts.get(constants.EXAMPLE_WEIGHTS_KEY), self._model_name),
                       self._output_name)

    def _label_and_prediction(self, extracts) -> Tuple[Any, Any]:
        """The model's label and prediction values (one example's, or a group's); a prediction of
        None when the model or its prediction key has none."""
        label = _lookup(_lookup(_lookup(extracts.get(constants.LABELS_KEY), self._label_key),
                                self._model_name), self._output_name)
        prediction = extracts.get(constants.PREDICTIONS_KEY)
        if self._model_name:
            prediction = (prediction.get(self._model_name) if isinstance(prediction, Mapping)
                          else None)
        prediction = _lookup(prediction, self._output_name)
        if isinstance(prediction, Mapping):
            prediction = prediction.get(self._prediction_key) if self._prediction_key else None
        return label, prediction

    def _row(self, extracts) -> Optional[Tuple[float, float, float]]:
        weight = 1.0
        if self._example_weighted:
            weight = _scalar(self._weight(extracts))
            if weight is None or not (math.isfinite(weight) and weight > 0):
                return None
        if self._weight_only:
            return (0.0, 0.0, weight)
        label, prediction = (_scalar(v) for v in self._label_and_prediction(extracts))
        if label not in (0.0, 1.0) or prediction is None or not math.isfinite(prediction):
            return None
        return (label, prediction, weight)

    def _column(self, value: Any, rows: int) -> Optional[np.ndarray]:
        """A group's one number per row, as floats; None for anything else."""
        if (isinstance(value, np.ndarray) and value.ndim and len(value) == rows
                and value.size == rows and value.dtype.kind in "fiub"):
            return value.reshape(rows).astype(np.float64)
        return None

    def _block(self, extracts, rows: int) -> Tuple[np.ndarray, np.ndarray]:
        """`_row` for a group of rows at once: which rows are simple, and theirs (n x 3)."""
        simple, weight = np.ones(rows, bool), np.ones(rows)
        if self._example_weighted:
            weight = self._column(self._weight(extracts), rows)
            if weight is None:
                return np.zeros(rows, bool), np.zeros((0, 3))
            with np.errstate(invalid="ignore"):
                simple &= np.isfinite(weight) & (weight > 0)
        label = prediction = np.zeros(rows)
        if not self._weight_only:
            label, prediction = (self._column(v, rows) for v in self._label_and_prediction(extracts))
            if label is None or prediction is None:
                return np.zeros(rows, bool), np.zeros((0, 3))
            simple &= ((label == 0.0) | (label == 1.0)) & np.isfinite(prediction)
        return simple, np.stack([label, prediction, weight], axis=1)[simple]

    def process(self, extracts):
        rows = extracts.get(ROWS_KEY)
        if rows is not None:  # a group of rows: the simple ones as a block, the others one by one
            simple, block = self._block(extracts, rows)
            if len(block):
                yield block
            if not simple.all():
                examples = util.split_extracts({key: value for key, value in extracts.items()
                                                if key not in (ROWS_KEY, constants.SLICE_KEY_TYPES_KEY)})
                for i in np.flatnonzero(~simple):
                    yield from self.process(examples[i])
            return
        row = self._row(extracts)
        if row is None:
            row = metric_util.to_standard_metric_inputs(
                extracts, include_labels=not self._weight_only,
                include_predictions=not self._weight_only)
        yield row


class _MergedOnce(beam.CombineFn):
    """TFMA's mean regression error combiner (MeanAbsoluteError, MeanSquaredError...), with each
    accumulator merged once: TFMA 0.47's own `merge_accumulators` takes the first accumulator and
    then merges every accumulator into it, the first included, when Beam hands it a list or tuple,
    so the first bundle's errors and weights counted twice."""

    def __init__(self, combiner: beam.CombineFn):
        self._combiner = combiner

    def setup(self, *args, **kwargs):
        self._combiner.setup(*args, **kwargs)

    def teardown(self, *args, **kwargs):
        self._combiner.teardown(*args, **kwargs)

    def create_accumulator(self):
        return self._combiner.create_accumulator()

    def add_input(self, accumulator, element):
        return self._combiner.add_input(accumulator, element)

    def merge_accumulators(self, accumulators):
        # An iterator: TFMA's loop then starts after the first, which it took as the result.
        return self._combiner.merge_accumulators(iter(accumulators))

    def compact(self, accumulator):
        return self._combiner.compact(accumulator)

    def extract_output(self, accumulator):
        return self._combiner.extract_output(accumulator)


class _Accumulator:
    __slots__ = ("rows", "blocks", "pending", "state", "tfma")

    def __init__(self, state: np.ndarray):
        self.rows: List[Tuple[float, float, float]] = []
        self.blocks: List[np.ndarray] = []  # in the order they came, the rows before each included
        self.pending = 0  # rows in both
        self.state = state
        self.tfma = None  # TFMA's accumulator of the examples outside the simple case


class _BatchedCombiner(beam.CombineFn):
    """One of TFMA's per-example combiners, fed rows of (label, prediction, weight) in batches."""

    def __init__(self, combiner: beam.CombineFn):
        self._combiner = combiner
        self._kind = _kind(combiner)

    def setup(self, *args, **kwargs):
        self._combiner.setup(*args, **kwargs)

    def teardown(self, *args, **kwargs):
        self._combiner.teardown(*args, **kwargs)

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self._kind.empty(self._combiner))

    def add_input(self, accumulator: _Accumulator, element) -> _Accumulator:
        if isinstance(element, tuple):
            accumulator.rows.append(element)
            accumulator.pending += 1
        elif isinstance(element, np.ndarray):  # a group's rows (LabelPredictionWeight._block)
            accumulator.blocks += self._rows_as_block(accumulator) + [element]
            accumulator.pending += len(element)
        else:
            if accumulator.tfma is None:
                accumulator.tfma = self._combiner.create_accumulator()
            accumulator.tfma = self._combiner.add_input(accumulator.tfma, element)
            return accumulator
        if accumulator.pending >= FLUSH_ROWS:
            self._flush(accumulator)
        return accumulator

    @staticmethod
    def _rows_as_block(accumulator: _Accumulator) -> List[np.ndarray]:
        """The buffered single rows as one block (none if none), taken out of the buffer."""
        rows, accumulator.rows = accumulator.rows, []
        return [np.array(rows, np.float64)] if rows else []

    def _flush(self, accumulator: _Accumulator) -> _Accumulator:
        accumulator.blocks += self._rows_as_block(accumulator)
        if accumulator.blocks:
            self._kind.add(self._combiner, accumulator.state, np.concatenate(accumulator.blocks))
        accumulator.rows, accumulator.blocks, accumulator.pending = [], [], 0
        return accumulator

    def compact(self, accumulator: _Accumulator) -> _Accumulator:
        return self._flush(accumulator)

    def merge_accumulators(self, accumulators) -> _Accumulator:
        accumulators = [self._flush(a) for a in accumulators]
        result = accumulators[0]
        for other in accumulators[1:]:
            result.state += other.state
        tfma = [a.tfma for a in accumulators if a.tfma is not None]
        result.tfma = self._combiner.merge_accumulators(tfma) if tfma else None
        return result

    def extract_output(self, accumulator: _Accumulator):
        self._flush(accumulator)
        tfma = self._kind.to_tfma(self._combiner, accumulator.state)
        if accumulator.tfma is not None:
            tfma = self._combiner.merge_accumulators([tfma, accumulator.tfma])
        return self._combiner.extract_output(tfma)

