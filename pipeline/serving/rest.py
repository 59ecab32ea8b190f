"""TF Serving's REST API as a Starlette app: model status, metadata, predict, classify, regress.

    GET  /v1/models/<name>[/versions/<v>]              version status
    GET  /v1/models/<name>[/versions/<v>]/metadata     signature_def metadata
    POST /v1/models/<name>[/versions/<v>]:predict      row `instances` or columnar `inputs`
    POST /v1/models/<name>[/versions/<v>]:classify     `examples` (-> serialized tf.Examples)
    POST /v1/models/<name>[/versions/<v>]:regress
    GET  /monitoring/prometheus/metrics                request, model-call and batch counters

Every error is `{"error": "..."}` with a 4xx (the request) or 5xx (the server) status, as in TF Serving.
"""
import logging
import re
from typing import Optional

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow_serving.apis import get_model_metadata_pb2

from pipeline.serving import tensors
from pipeline.serving.batching import Batcher
from pipeline.serving.registry import NotFoundError, Registry

log = logging.getLogger("pipeline.serving")

_MODEL_PATH = re.compile(
    r"^(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[^/:]+)|(?P<metadata>/metadata))?$")
_VERBS = ("predict", "classify", "regress")


class PayloadTooLarge(Exception):
    pass


def json_response(body: dict, status: int = 200) -> Response:
    return Response(tensors.dumps(body), status_code=status, media_type="application/json")


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def metadata_json(servable) -> dict:
    """GetModelMetadataResponse as TF Serving's REST API writes it (default-valued fields included)."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature_def)
    return {
        "model_spec": {"name": servable.model_name, "signature_name": "",
                       "version": str(servable.version)},
        "metadata": {"signature_def": json_format.MessageToDict(
            signature_map, preserving_proto_field_name=True, including_default_value_fields=True)},
    }


def create_app(registry: Registry, batcher: Batcher, max_request_bytes: int) -> Starlette:
    """The REST app over a registry of served models."""

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            raise PayloadTooLarge(declared)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise PayloadTooLarge(size)
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(servable, doc: dict) -> dict:
        signature = servable.signature(tensors.signature_name(doc))
        parsed = tensors.predict_inputs(doc, signature)
        outputs = await batcher.call(servable, signature.name, parsed.tensors,
                                     tensors.rows_of(parsed.tensors))
        return tensors.predict_response(outputs, parsed.columnar)

    async def classify_or_regress(servable, doc: dict, verb: str) -> dict:
        signature = servable.signature(tensors.signature_name(doc))
        input_name = tensors.single_string_input(signature)
        if input_name is None:
            raise tensors.RequestError(
                f"Signature {signature.name} takes {', '.join(sorted(signature.inputs))}, not serialized "
                f"tf.Examples: {verb} needs a signature with one string input (e.g. serving_default)")
        examples = tensors.examples_from_classify(doc)
        outputs = await batcher.call(servable, signature.name,
                                     {input_name: np.array(examples, dtype=object)}, len(examples))
        if verb == "classify":
            return tensors.classify_response(
                tensors.class_scores(outputs, len(examples), signature.name))
        values = tensors.single_values(outputs, len(examples), signature.name, verb)
        return {"results": tensors.predict_response({"v": values}, columnar=True)["outputs"]}

    async def models(request: Request) -> Response:
        path = request.path_params["path"]
        match = _MODEL_PATH.match(path)
        verb = (match.group("verb") if match else None) or (
            "metadata" if match and match.group("metadata") else "status")
        try:
            response = await handle(request, match, verb)
        except PayloadTooLarge as e:
            response = error_response(
                f"Request body of {e} bytes exceeds --max-request-bytes={max_request_bytes}; send fewer "
                "instances per request", 413)
        except tensors.RequestError as e:
            response = error_response(str(e), 400)
        except NotFoundError as e:
            response = error_response(str(e), 404)
        except KeyError as e:  # unknown signature name
            response = error_response(e.args[0], 400)
        except tf.errors.InvalidArgumentError as e:  # the model rejected the values
            response = error_response(tensors.model_error(e), 400)
        except ClientDisconnect:
            response = error_response("client disconnected", 499)
        batcher.metrics.requests.labels("rest", verb if verb in _VERBS + ("metadata", "status")
                                        else "other", str(response.status_code)).inc()
        return response

    async def handle(request: Request, match: Optional[re.Match], verb: str) -> Response:
        if match is None:
            return error_response(f"Malformed request: {request.method} {request.url.path}", 404)
        if match.group("label"):
            raise NotFoundError(f"Version labels are not configured on this server (asked for label "
                                f"{match.group('label')!r}); use /versions/<number>")
        version = None
        if match.group("version") is not None:
            if not match.group("version").isdigit():
                raise tensors.RequestError(f"Version must be a number, got {match.group('version')!r}")
            version = int(match.group("version"))
        name = match.group("name")
        if request.method == "GET":
            if verb == "status":
                statuses = registry.status(name, version)
                return json_response({"model_version_status": [s.to_json() for s in statuses]})
            if verb == "metadata":
                return json_response(metadata_json(registry.get(name, version)))
            return error_response(f"Malformed request: GET {request.url.path} (use POST for :{verb})", 405)
        if verb not in _VERBS:
            return error_response(f"Malformed request: POST {request.url.path}; the verbs are "
                                  f":predict, :classify and :regress", 404)
        servable = registry.get(name, version)
        doc = tensors.parse_json(await read_body(request))
        if verb == "predict":
            return json_response(await predict(servable, doc))
        return json_response(await classify_or_regress(servable, doc, verb))

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(batcher.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(f"Malformed request: {request.method} {request.url.path} ({exc.detail})",
                              exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("Internal error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(f"Internal error: {type(exc).__name__}: {exc}", 500)

    return Starlette(
        routes=[Route("/v1/models/{path:path}", models, methods=["GET", "POST"]),
                Route("/monitoring/prometheus/metrics", metrics, methods=["GET"])],
        exception_handlers={HTTPException: http_error, Exception: server_error})
