"""Build and send TF Serving REST requests from raw rows (CSV or JSON); the requests are plain
TF Serving ones, so the same code works against this project's server and real TF Serving.

Two request formats, one per exported signature (models/signatures.py):
- "raw": `{"signature_name": "serving_raw", "instances": [{column: value, ...}]}`, one typed value per
  serving column; a missing value (an empty CSV cell, a null) is sent as the column's marker
  (models/missing_values.py), which TF Serving accepts too.
- "b64": `{"instances": [{"b64": <serialized tf.Example>}]}` for `serving_default`; the tf.Examples
  come from models/raw_examples.py, typed by the curated schema.
"""
import base64
import csv
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import httpx
from tensorflow_metadata.proto.v0 import schema_pb2

from models import missing_values, raw_examples
from models.names import raw_input_name
from models.spec import DatasetSpec

RAW_SIGNATURE = "serving_raw"
SERVING_ENVIRONMENT = "SERVING"
FORMATS = ("raw", "b64")
_MISSING = {schema_pb2.FLOAT: missing_values.MISSING_FLOAT, schema_pb2.INT: missing_values.MISSING_INT,
            schema_pb2.BYTES: missing_values.MISSING_STRING}


class ClientError(RuntimeError):
    """Bad input rows, or the server refused the request (the message names which and why)."""


def serving_column_types(spec: DatasetSpec) -> Dict[str, int]:
    """Serving column -> schema type (FLOAT, INT, BYTES), in the signature's column order."""
    types = raw_examples.column_types(spec.schema_path, SERVING_ENVIRONMENT)
    missing = [c for c in spec.serving_columns if c not in types]
    if missing:
        raise ClientError(f"{spec.schema_path} has no {', '.join(missing)}: the schema and "
                          f"{spec.spec_path} disagree")
    return {c: types[c] for c in spec.serving_columns}


def read_rows(path: str) -> List[Dict[str, Any]]:
    """Rows from a CSV file with a header, a JSON list of objects, or a TF Serving request body
    (`{"instances": [...]}`). Extra columns are fine; serving columns may be empty/null (missing)."""
    if not os.path.isfile(path):
        raise ClientError(f"{path} does not exist")
    with open(path, encoding="utf-8", newline="") as f:
        if path.lower().endswith(".json"):
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ClientError(f"{path} is not valid JSON: {e}") from e
            rows = data.get("instances") if isinstance(data, dict) else data
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ClientError(f"{path}: expected a JSON list of row objects, or {{\"instances\": "
                                  "[...]}} with row objects")
        else:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise ClientError(f"{path} is empty: a CSV file needs a header row")
            rows = list(reader)
    if not rows:
        raise ClientError(f"{path} has no rows")
    return rows


def raw_instance(row: Mapping[str, Any], types: Mapping[str, int], where: str = "row") -> Dict[str, Any]:
    """One row to typed serving_raw inputs; every serving column present, missing ones as markers."""
    absent = [c for c in types if c not in row]
    if absent:
        raise ClientError(f"{where} has no column(s) {', '.join(absent)}; every serving column is "
                          "needed (leave the value empty if it is unknown)")
    instance = {}
    for column, kind in types.items():
        value, name = row[column], raw_input_name(column)
        if missing_values.is_blank(value):
            instance[name] = _MISSING[kind]
            continue
        try:
            if kind == schema_pb2.FLOAT:
                instance[name] = float(value)
            elif kind == schema_pb2.INT:
                number = float(value)
                if not number.is_integer():
                    raise ValueError("not a whole number")
                instance[name] = int(number)
            else:
                instance[name] = str(value)
        except (TypeError, ValueError) as e:
            expected = {schema_pb2.FLOAT: "a number", schema_pb2.INT: "a whole number"}[kind]
            raise ClientError(f"{where}, column {column}: {value!r} is not {expected}") from e
    return instance


def raw_request(rows: Sequence[Mapping[str, Any]], types: Mapping[str, int]) -> dict:
    return {"signature_name": RAW_SIGNATURE,
            "instances": [raw_instance(r, types, f"row {i + 1}") for i, r in enumerate(rows)]}


def b64_request(rows: Sequence[Mapping[str, Any]], types: Mapping[str, int]) -> dict:
    """serving_default request: each row as a base64 serialized tf.Example."""
    as_text = [{c: "" if missing_values.is_blank(r.get(c)) else str(r[c]) for c in types} for r in rows]
    for i, row in enumerate(as_text):  # the same checks as the raw format, for the same messages
        raw_instance(row, types, f"row {i + 1}")
    return {"instances": [{"b64": base64.b64encode(e).decode()}
                          for e in raw_examples.to_tf_examples(as_text, types)]}


def build_request(rows: Sequence[Mapping[str, Any]], types: Mapping[str, int],
                  request_format: str = "raw") -> dict:
    if request_format not in FORMATS:
        raise ClientError(f"Unknown request format {request_format!r}: choose one of {', '.join(FORMATS)}")
    return raw_request(rows, types) if request_format == "raw" else b64_request(rows, types)


def predict_url(url: str, model_name: str, version: Optional[int] = None) -> str:
    base = f"{url.rstrip('/')}/v1/models/{model_name}"
    return f"{base}/versions/{version}:predict" if version is not None else f"{base}:predict"


def _chunks(rows: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def predict(url: str, model_name: str, rows: Sequence[Mapping[str, Any]], spec: DatasetSpec,
            request_format: str = "raw", version: Optional[int] = None, batch_size: int = 256,
            timeout: float = 30.0) -> List[Any]:
    """The model's answer for each of `rows`, `batch_size` rows per request: a number for a
    one-output signature (binary: P(positive class); regression: the prediction), an {output:
    value} object for several (multiclass: probabilities and classes)."""
    endpoint = predict_url(url, model_name, version)
    types = serving_column_types(spec)
    probabilities: List[Any] = []
    with httpx.Client(timeout=timeout) as client:
        for chunk in _chunks(list(rows), batch_size):
            body = build_request(chunk, types, request_format)
            try:
                response = client.post(endpoint, content=json.dumps(body),
                                       headers={"Content-Type": "application/json"})
            except httpx.HTTPError as e:
                raise ClientError(f"Cannot reach {endpoint}: {e}. Is `python -m pipeline serve` (or "
                                  "TF Serving) running there?") from e
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            if response.status_code != 200 or "predictions" not in answer:
                error = answer.get("error") or response.text[:500]
                raise ClientError(f"{endpoint} answered {response.status_code}: {error}")
            probabilities.extend(p if isinstance(p, dict) else float(p[0] if isinstance(p, list) else p)
                                 for p in answer["predictions"])
    return probabilities
