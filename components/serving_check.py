"""Serving check before push: the candidate model, served by the serving runtime, answers correctly.

Between Evaluator and Pusher. It serves the candidate with `python -m pipeline serve` from a temporary
`<tmp>/<model_name>/1/` directory, sends real eval-split examples through TF Serving's REST API (raw
JSON features to `serving_raw`, base64 tf.Examples to `serving_default`; one example per request, then
all in one request), and compares the answers with the same SavedModel's in-process predictions. It
writes an InfraBlessing (custom property `blessed` 1/0, as TFX's InfraValidator does), which TFX's
Pusher requires before it pushes, with the measured figures and, when not blessed, the reason.
"""
import base64
import dataclasses
import math
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model, ModelBlessing
from tfx.utils import io_utils, path_utils

from components.serving_runtime import LocalServer, ServingRuntimeError
from models import missing_values
from models.names import raw_input_name

SPLIT = "eval"
RAW_SIGNATURE = "serving_raw"
EXAMPLES_SIGNATURE = "serving_default"
SKIPPED_REASON = "skipped: the Evaluator did not bless the model"
# Files beside the blessing, like TFX's InfraValidator writes.
BLESSED_FILE, NOT_BLESSED_FILE, SERVER_LOG_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED", "server.log"


@dataclasses.dataclass
class CheckResult:
    blessed: bool
    reason: str = ""
    examples: int = 0
    max_abs_diff: float = math.nan
    p50_latency_ms: float = math.nan
    p99_latency_ms: float = math.nan


def eval_examples(examples: Examples, count: int) -> List[bytes]:
    """The first `count` serialized tf.Examples of the eval split (ExampleGen's gzipped TFRecords)."""
    split_uri = artifact_utils.get_split_uri([examples], SPLIT)
    files = sorted(fileio.glob(os.path.join(split_uri, "*")))
    if not files:
        raise ValueError(f"No {SPLIT}-split examples in {split_uri}: the serving check needs "
                         "ExampleGen's eval split.")
    return [record.numpy() for record in
            tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)]


def _first_value(feature: tf.train.Feature):
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if len(values) else None


def serving_requests(serialized: Sequence[bytes], raw_spec: Dict[str, tf.TensorSpec]
                     ) -> Tuple[List[dict], List[dict]]:
    """The same examples as TF Serving request instances: raw features, and base64 tf.Examples.

    Only the columns the raw signature takes are sent (no label), as a client would, under the
    signature's input names (models/names.py). A missing value is its column's marker
    (models/missing_values.py).
    """
    raw_instances, b64_instances = [], []
    for record in serialized:
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        column_of = {raw_input_name(column): column for column in feature}
        instance = {}
        for name, spec in raw_spec.items():
            value = _first_value(feature[column_of[name]]) if name in column_of else None
            if value is None:
                instance[name] = missing_values.marker(spec.dtype)
            elif spec.dtype == tf.string:
                instance[name] = value.decode("utf-8")
            else:
                instance[name] = float(value) if spec.dtype.is_floating else int(value)
        raw_instances.append(instance)
        for column in set(feature) - {column_of[name] for name in raw_spec if name in column_of}:
            del feature[column]
        b64_instances.append({"b64": base64.b64encode(example.SerializeToString()).decode("ascii")})
    return raw_instances, b64_instances


def raw_input_spec(model) -> Dict[str, tf.TensorSpec]:
    return model.signatures[RAW_SIGNATURE].structured_input_signature[1]


def in_process_predictions(model, raw_instances: List[dict], b64_instances: List[dict]
                           ) -> Dict[str, np.ndarray]:
    """What the loaded SavedModel itself answers, per signature, for the same instances."""
    spec = raw_input_spec(model)
    raw = {column: tf.constant([i[column] for i in raw_instances], dtype=s.dtype)
           for column, s in spec.items()}
    examples = tf.constant([base64.b64decode(i["b64"]) for i in b64_instances])
    return {
        RAW_SIGNATURE: _numbers(model.signatures[RAW_SIGNATURE](**raw)),
        EXAMPLES_SIGNATURE: _numbers(model.signatures[EXAMPLES_SIGNATURE](examples=examples)),
    }


def _numbers(outputs: Dict[str, tf.Tensor]) -> np.ndarray:
    """A signature's numeric outputs, one row per example ([n, d], outputs in name order).

    String outputs (a multiclass model's class names) are constants of the model, not compared.
    """
    numeric = [outputs[k].numpy() for k in sorted(outputs) if outputs[k].dtype != tf.string]
    return np.concatenate([v.reshape(len(v), -1) for v in numeric], axis=1).astype(np.float64)


def _row_numbers(prediction) -> np.ndarray:
    """One example's REST answer in `_numbers`' order: TF Serving's row format gives a value or a
    list for a one-output signature, an {output: value} object for several."""
    if isinstance(prediction, dict):
        parts = [prediction[k] for k in sorted(prediction) if not _is_text(prediction[k])]
    else:
        parts = [prediction]
    return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value)
                                       and isinstance(value[0], str))


def probe(server: LocalServer, raw_instances: List[dict], b64_instances: List[dict]
          ) -> Tuple[Dict[str, List[np.ndarray]], List[float]]:
    """Per signature: answers to one-example requests, then to one request with every example.

    Returns the answers and the seconds each one-example request took.
    """
    served, latencies = {}, []
    for signature, instances in ((RAW_SIGNATURE, raw_instances), (EXAMPLES_SIGNATURE, b64_instances)):
        singles = []
        for instance in instances:
            predictions, seconds = server.predict(signature, [instance])
            if len(predictions) != 1:
                raise ServingRuntimeError(f"A one-example {signature} request got {len(predictions)} "
                                          f"predictions back: {predictions!r:.200}")
            singles.append(_row_numbers(predictions[0]))
            latencies.append(seconds)
        batch, _ = server.predict(signature, instances)
        served[signature] = [np.stack(singles), np.stack([_row_numbers(p) for p in batch])]
    return served, latencies


def verdict(served: Dict[str, List[np.ndarray]], expected: Dict[str, np.ndarray],
            latencies: Sequence[float], tolerance: float, max_p50_latency_ms: float) -> CheckResult:
    """Blessed when every served answer is within `tolerance` of in-process and the p50 is in limit.

    The difference is absolute up to 1 and relative above (float32 answers in a regression label's
    units, dollars or grams, differ in their last bits by more than 1e-5 between batch sizes).
    """
    latencies_ms = np.asarray(latencies) * 1000.0
    result = CheckResult(blessed=True, examples=len(next(iter(expected.values()))),
                         p50_latency_ms=float(np.percentile(latencies_ms, 50)),
                         p99_latency_ms=float(np.percentile(latencies_ms, 99)))
    problems, diffs = [], []
    for signature, want in expected.items():
        for answer in served[signature]:
            if answer.shape != want.shape:
                problems.append(f"{signature} returned {answer.size} predictions for {want.size} "
                                "examples")
            else:
                want = want.astype(np.float64)
                diffs.append(float(np.max(np.abs(answer - want) / np.maximum(1.0, np.abs(want)))))
    result.max_abs_diff = float(np.max(diffs)) if diffs else math.nan  # NaN if any answer was NaN
    if not result.max_abs_diff <= tolerance:
        problems.append(f"served predictions differ from the model's in-process predictions by up to "
                        f"{result.max_abs_diff:.3g} (tolerance {tolerance:g})")
    if not result.p50_latency_ms <= max_p50_latency_ms:
        problems.append(f"the p50 latency of a one-example REST request is "
                        f"{result.p50_latency_ms:.2f} ms, over the limit of {max_p50_latency_ms:g} ms")
    if problems:
        result.blessed, result.reason = False, "; ".join(problems)
    return result


def check_model(model_path: str, serialized: Sequence[bytes], model_name: str, tolerance: float,
                max_p50_latency_ms: float, startup_timeout_s: float,
                server_log: Optional[str] = None) -> CheckResult:
    """Serves the SavedModel at `model_path` locally and checks its answers and latency.

    A server that does not start, load the model or answer becomes a not-blessed result whose reason
    holds the server's last output lines; `server_log` keeps its whole output.
    """
    with tempfile.TemporaryDirectory(prefix="serving_check_") as serving_dir:
        io_utils.copy_dir(model_path, os.path.join(serving_dir, model_name, "1"))
        log_path = os.path.join(serving_dir, SERVER_LOG_FILE)
        server = LocalServer(serving_dir, model_name, log_path, startup_timeout_s)
        try:
            # The server starts (imports TensorFlow, loads the model) while this process computes
            # the answers it must give: each takes seconds, and they use different cores.
            server.launch()
            model = tf.saved_model.load(model_path)
            raw_instances, b64_instances = serving_requests(serialized, raw_input_spec(model))
            expected = in_process_predictions(model, raw_instances, b64_instances)
            server.wait_until_available()
            served, latencies = probe(server, raw_instances, b64_instances)
        except ServingRuntimeError as e:
            return CheckResult(blessed=False, reason=f"the model server failed: {e}",
                               examples=len(serialized))
        finally:
            server.stop(kill=True)
            if server_log and os.path.exists(log_path):
                io_utils.copy_file(log_path, server_log, overwrite=True)
    return verdict(served, expected, latencies, tolerance, max_p50_latency_ms)


def record(blessing: InfraBlessing, result: CheckResult, tolerance: float,
           max_p50_latency_ms: float) -> None:
    """The verdict and figures as the blessing's custom properties (what the run summary reads)."""
    io_utils.write_string_file(
        os.path.join(blessing.uri, BLESSED_FILE if result.blessed else NOT_BLESSED_FILE), "")
    blessing.set_int_custom_property("blessed", int(result.blessed))
    blessing.set_string_custom_property("reason", result.reason)
    blessing.set_int_custom_property("examples", result.examples)
    if not math.isnan(result.max_abs_diff):
        # Text: ML Metadata's SQLite store keeps 6 decimals of a double (1.5e-7 would read 0.0).
        blessing.set_string_custom_property("max_abs_diff", repr(result.max_abs_diff))
    for name in ("p50_latency_ms", "p99_latency_ms"):
        value = getattr(result, name)
        if not math.isnan(value):
            blessing.set_float_custom_property(name, value)
    blessing.set_float_custom_property("tolerance", tolerance)
    blessing.set_float_custom_property("max_p50_latency_ms", max_p50_latency_ms)


def run_check(model: Model, examples: Examples, model_blessing: Optional[ModelBlessing],
              blessing: InfraBlessing, model_name: str, num_examples: int, tolerance: float,
              max_p50_latency_ms: float, startup_timeout_s: float) -> CheckResult:
    """The component's work; skipped (not blessed) when the Evaluator did not bless the model."""
    if model_blessing is not None and model_blessing.get_int_custom_property("blessed") != 1:
        result = CheckResult(blessed=False, reason=SKIPPED_REASON)
    else:
        model_path = path_utils.serving_model_path(model.uri,
                                                   path_utils.is_old_model_artifact(model))
        result = check_model(model_path, eval_examples(examples, num_examples), model_name,
                             tolerance, max_p50_latency_ms, startup_timeout_s,
                             server_log=os.path.join(blessing.uri, SERVER_LOG_FILE))
    record(blessing, result, tolerance, max_p50_latency_ms)
    return result


@component
def ServingCheck(model: InputArtifact[Model], examples: InputArtifact[Examples],
                 blessing: OutputArtifact[InfraBlessing],
                 code_sha256: Parameter[str],
                 model_blessing: InputArtifact[ModelBlessing] = None,
                 model_name: Parameter[str] = "model",
                 num_examples: Parameter[int] = 100,
                 tolerance: Parameter[float] = 1e-5,
                 max_p50_latency_ms: Parameter[float] = 500.0,
                 startup_timeout_s: Parameter[float] = 120.0) -> None:
    """Blesses the model for push when the serving runtime serves it correctly and fast enough."""
    del code_sha256  # only keys TFX's cache on this code (components/fingerprints.py)
    if num_examples < 1 or tolerance < 0 or max_p50_latency_ms <= 0 or startup_timeout_s <= 0:
        raise ValueError("ServingCheck needs num_examples >= 1, tolerance >= 0, "
                         "max_p50_latency_ms > 0 and startup_timeout_s > 0.")
    run_check(model, examples, model_blessing, blessing, model_name, num_examples, tolerance,
              max_p50_latency_ms, startup_timeout_s)
