"""TF Serving's JSON formats, to and from numpy: predict (row `instances` / columnar `inputs`),
classify (`examples`), `{"b64": ...}` binary values, and float output written as TF Serving writes it.

Follows tensorflow_serving/util/json_tensor.cc: the same keys, the same strictness about types (an int64
input takes whole JSON numbers only, a float input takes any number or NaN/Infinity), and error messages
that start the same way, with the input name and row added so a client knows what to fix. One addition:
a `null` value is a missing value, read as the input's marker (models/missing_values.py).
"""
import base64
import binascii
import dataclasses
import json
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from models import missing_values
from pipeline.serving.servable import InputSpec, Signature


class RequestError(ValueError):
    """The request is malformed or does not fit the signature (HTTP 400, gRPC INVALID_ARGUMENT)."""


@dataclasses.dataclass
class PredictInputs:
    signature_name: str
    tensors: Dict[str, np.ndarray]
    columnar: bool  # answer with "outputs" instead of "predictions"


def parse_json(body: bytes) -> Dict[str, Any]:
    """The request body as a JSON object; NaN and Infinity are accepted, as TF Serving accepts them."""
    if not body:
        raise RequestError("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(f"JSON Parse error: the body is not UTF-8 ({e})") from e
    except json.JSONDecodeError as e:
        raise RequestError(f"JSON Parse error: {e.msg} at line {e.lineno} column {e.colno} "
                           f"(offset {e.pos})") from e
    if not isinstance(doc, dict):
        raise RequestError(f"JSON Value: {_short(doc)} Is not object")
    return doc


def model_error(error: Exception) -> str:
    """A TensorFlow error from a signature call as one readable line (no graph-node annotations)."""
    text = getattr(error, "message", str(error))
    blocks = [b for b in text.split("\n\n") if b.strip() and b.strip() != "Graph execution error:"]
    text = blocks[-1] if blocks else text
    text = re.sub(r"\s*\[Op:[^\]]*\]|\s*\[\[\{\{node [^\]]*\]\]", "", text)
    text = re.sub(r"Detected at node .*?\(most recent call last\):\s*(<stack traces unavailable>)?", "",
                  text, flags=re.S).replace("Name: <unknown>, ", "")
    return "The model rejected the input: " + " ".join(text.split())


def signature_name(doc: Mapping[str, Any]) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise RequestError(f"JSON Value: {_short(doc)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    return name


def predict_inputs(doc: Mapping[str, Any], signature: Signature) -> PredictInputs:
    """The signature's input tensors from a predict request in row or columnar format."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise RequestError("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys")
    if has_instances:
        tensors = _from_instances(doc["instances"], signature)
    elif has_inputs:
        tensors = _from_inputs(doc["inputs"], signature)
    else:
        raise RequestError("Missing 'inputs' or 'instances' key")
    return PredictInputs(signature.name, tensors, columnar=has_inputs)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _from_instances(instances: Any, signature: Signature) -> Dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise RequestError("Expecting 'instances' to be an list/array")
    if not instances:
        raise RequestError("No values in 'instances' array")
    names = sorted(signature.inputs)
    as_objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not as_objects:
        if len(names) > 1:
            raise RequestError(
                "instances is a plain list, but expecting list of objects as multiple input tensors "
                f"required by signature {signature.name}: {', '.join(names)}")
        return {names[0]: _to_array(instances, signature.inputs[names[0]], "'instances'")}
    columns: Dict[str, List[Any]] = {name: [] for name in names}
    for row, instance in enumerate(instances):
        if not isinstance(instance, dict) or _is_b64(instance):
            raise RequestError(f"Expecting object but got {_json_type(instance)} at item {row} of "
                               "'instances' list (every instance must be an object of named inputs)")
        missing = [n for n in names if n not in instance]
        extra = sorted(k for k in instance if k not in signature.inputs)
        if missing or extra:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(extra)}"] if extra else [])
            raise RequestError(
                f"Failed to process element: {row} of 'instances' list: {'; '.join(problems)}. "
                f"Signature {signature.name} takes exactly: {', '.join(names)}")
        for name in names:
            columns[name].append(instance[name])
    return {name: _to_array(values, signature.inputs[name], f"'instances' key: {name}")
            for name, values in columns.items()}


def _from_inputs(inputs: Any, signature: Signature) -> Dict[str, np.ndarray]:
    names = sorted(signature.inputs)
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise RequestError(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                f"required by signature {signature.name}: {', '.join(names)}")
        return {names[0]: _to_array(inputs, signature.inputs[names[0]], "'inputs'")}
    missing = [n for n in names if n not in inputs]
    if missing:
        raise RequestError(f"Missing named input: {', '.join(missing)} in 'inputs' object "
                           f"(signature {signature.name} takes: {', '.join(names)})")
    extra = sorted(k for k in inputs if k not in signature.inputs)
    if extra:
        raise RequestError(f"Unexpected named input: {', '.join(extra)} in 'inputs' object "
                           f"(signature {signature.name} takes: {', '.join(names)})")
    tensors = {name: _to_array(inputs[name], signature.inputs[name], f"'inputs' key: {name}")
               for name in names}
    if any(t.ndim == 0 for t in tensors.values()):
        raise RequestError("Every named input needs a batch dimension: send a list per input")
    return tensors


def _dtype_string(spec: InputSpec) -> str:
    return spec.dtype_name[3:].lower()  # DT_FLOAT -> float, as TF Serving's DataTypeString


def _leaf(value: Any, spec: InputSpec, where: str, row: int, in_batch: bool) -> Any:
    dtype = spec.dtype
    if value is None and in_batch:
        try:
            value = missing_values.marker(dtype)
        except ValueError:
            pass  # no marker for this type (bool): the error below names the input
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode()
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as e:
                raise RequestError(f"Unable to base64 decode the value at item {row} of {where}") from e
    elif dtype.is_floating:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype.is_integer:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif dtype.is_bool:
        if isinstance(value, bool):
            return value
    hint = ""
    if value is None:
        hint = " (null means missing only for a float, string, int32 or int64 item of a batch)"
    elif dtype.is_integer and isinstance(value, float):
        hint = " (a whole number without a decimal point is needed)"
    raise RequestError(f"Failed to process element: {row} of {where}. Error: JSON Value: {_short(value)} "
                       f"Type: {_json_type(value)} is not of expected type: {_dtype_string(spec)}{hint}")


def _to_array(values: Any, spec: InputSpec, where: str) -> np.ndarray:
    """A batch of values (nested lists; the first level is the batch) as a typed numpy array."""
    def convert(value, row, depth):
        if isinstance(value, list):
            return [convert(v, row, depth + 1) for v in value]
        return _leaf(value, spec, where, row, in_batch=depth > 0)

    if isinstance(values, list):
        converted = [convert(v, row, 1) for row, v in enumerate(values)]
    else:
        converted = convert(values, 0, 0)
    numpy_dtype = object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
    try:
        array = np.array(converted, dtype=numpy_dtype)
    except (ValueError, OverflowError) as e:
        raise RequestError(f"Values of {where} do not form a dense {_dtype_string(spec)} tensor: {e}") from e
    if array.dtype == object and spec.dtype == tf.string and any(
            not isinstance(v, bytes) for v in array.ravel()):
        raise RequestError(f"Values of {where} are ragged: every item needs the same shape")
    expected = spec.shape
    if array.ndim >= 1 and (array.ndim - 1 != len(expected) or any(
            e not in (-1, a) for e, a in zip(expected, array.shape[1:]))):
        shown = ["?" if d == -1 else str(d) for d in expected]
        raise RequestError(f"Values of {where} have shape {list(array.shape[1:])} per item but the "
                           f"signature expects [{', '.join(shown)}]"
                           + (" (one value per item, not a list)" if not expected else ""))
    return array


def examples_from_classify(doc: Mapping[str, Any]) -> List[bytes]:
    """Serialized tf.Examples from a classify/regress request's `examples` (and optional `context`)."""
    examples = doc.get("examples")
    if examples is None:
        raise RequestError("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise RequestError("Expecting 'examples' value to be an list/array")
    if not examples:
        raise RequestError("'examples' value is an empty array")
    context = doc.get("context", {})
    context_features = _features(context, "'context'")
    serialized = []
    for row, example in enumerate(examples):
        features = _features(example, f"item {row} of 'examples'")
        overlap = sorted(set(features) & set(context_features))
        if overlap:
            raise RequestError(f"Features {', '.join(overlap)} appear in both 'context' and item {row} "
                               "of 'examples'")
        features.update(context_features)
        serialized.append(tf.train.Example(
            features=tf.train.Features(feature=features)).SerializeToString())
    return serialized


def _features(obj: Any, where: str) -> Dict[str, tf.train.Feature]:
    if not isinstance(obj, dict):
        raise RequestError(f"Example must be JSON object but got JSON {_json_type(obj)} ({where})")
    features = {}
    for name, content in obj.items():
        values = content if isinstance(content, list) else [content]
        kinds = set()
        for value in values:
            if isinstance(value, bool) or isinstance(value, int):
                kinds.add("int64")
            elif isinstance(value, float):
                kinds.add("float")
            elif isinstance(value, str) or _is_b64(value):
                kinds.add("bytes")
            else:
                raise RequestError(f"Feature: {name} has element with unexpected JSON type: "
                                   f"{_json_type(value)} ({where})")
        if len(kinds) > 1:
            raise RequestError(f"Unexpected element type in feature: {name}: mixes "
                               f"{' and '.join(sorted(kinds))} values ({where})")
        kind = kinds.pop() if kinds else "bytes"
        if kind == "int64":
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
        elif kind == "float":
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[
                base64.b64decode(v["b64"]) if _is_b64(v) else v.encode() for v in values]))
        features[name] = feature
    return features


def _json_value(array: np.ndarray, name: str) -> Any:
    """A numpy output as TF Serving writes it: shortest float repr, NaN, b64 for `*_bytes` outputs."""
    if array.dtype.kind == "f":
        # str() of a float32 is its shortest round-tripping form (0.2, not 0.20000000298...).
        return np.array([float(str(v)) for v in array.ravel()]).reshape(array.shape).tolist()
    if array.dtype.kind in "OSU":
        def text(v):
            v = v if isinstance(v, bytes) else str(v).encode()
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode()}
            return v.decode("utf-8", errors="replace")
        return np.array([text(v) for v in array.ravel()], dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def predict_response(outputs: Mapping[str, np.ndarray], columnar: bool) -> Dict[str, Any]:
    names = sorted(outputs)
    values = {name: _json_value(outputs[name], name) for name in names}
    if columnar:
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    rows = len(values[names[0]])
    return {"predictions": [{name: values[name][i] for name in names} for i in range(rows)]}


def class_scores(outputs: Mapping[str, np.ndarray], rows: int, signature: str
                 ) -> List[List[Tuple[str, float]]]:
    """Per example, (class, score) pairs as TF Serving's Classify answers them: a multiclass model's
    `classes` with its `probabilities`; for one probability per example, "0" (1-p) and "1" (p)."""
    if "classes" in outputs and "probabilities" in outputs:
        classes = np.asarray(outputs["classes"]).reshape(rows, -1)
        scores = np.asarray(outputs["probabilities"], dtype=np.float32).reshape(rows, -1)
        return [[(_text(c), float(p)) for c, p in zip(row_classes, row_scores)]
                for row_classes, row_scores in zip(classes, scores)]
    probabilities = single_values(outputs, rows, signature, "classify")
    return [[("0", _complement(float(p))), ("1", float(p))]
            for p in np.asarray(probabilities, dtype=np.float32)]


def single_values(outputs: Mapping[str, np.ndarray], rows: int, signature: str, verb: str) -> np.ndarray:
    """The one value per example of a one-output signature (a probability, a regression value)."""
    if len(outputs) != 1:
        raise RequestError(f"Signature {signature} has outputs {', '.join(sorted(outputs))}: {verb} "
                           "here needs a single output (a probability or a value per example), or "
                           "classes and probabilities")
    values = np.asarray(next(iter(outputs.values()))).reshape(rows, -1)
    if values.shape[1] != 1:
        raise RequestError(f"Signature {signature} returns {values.shape[1]} values per example; "
                           f"{verb} here needs one")
    return values[:, 0]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def classify_response(scores: List[List[Tuple[str, float]]]) -> Dict[str, Any]:
    """Classification results in TF Serving's JSON shape: per example [[class, score], ...]."""
    return {"results": [[[label, _json_value(np.float32(score), "")] for label, score in row]
                        for row in scores]}


def _complement(p: float) -> float:
    return p if math.isnan(p) else float(str(np.float32(1.0) - np.float32(p)))


def dumps(obj: Any) -> bytes:
    # allow_nan: TF Serving writes NaN/Infinity tokens too (see its "JSON conformance" notes).
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= limit else text[:limit] + "..."


def single_string_input(signature: Signature) -> Optional[str]:
    """The name of the signature's only input if it is a string (serialized tf.Examples), else None."""
    if len(signature.inputs) == 1:
        (name, spec), = signature.inputs.items()
        if spec.dtype == tf.string:
            return name
    return None


def rows_of(tensors: Mapping[str, np.ndarray]) -> Optional[int]:
    """The batch size shared by every input, or None when inputs disagree (then never batched)."""
    sizes = {t.shape[0] if t.ndim else None for t in tensors.values()}
    return sizes.pop() if len(sizes) == 1 else None


