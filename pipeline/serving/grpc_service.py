"""TF Serving's gRPC API (tensorflow-serving-api protos): PredictionService Predict, Classify, Regress
and GetModelMetadata, and ModelService GetModelStatus, on grpc.aio so it shares the REST server's event
loop, registry and batcher."""
from typing import Dict

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from pipeline.serving import tensors
from pipeline.serving.batching import Batcher
from pipeline.serving.registry import NotFoundError, Registry

_STATE_CODES = {name: number for name, number in
                get_model_status_pb2.ModelVersionStatus.State.items()}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def _servable(registry: Registry, model_spec):
    if model_spec.version_label:
        raise _Abort(grpc.StatusCode.NOT_FOUND,
                     f"Version labels are not configured on this server (asked for "
                     f"{model_spec.version_label!r}); use a version number")
    version = model_spec.version.value if model_spec.HasField("version") else None
    try:
        return registry.get(model_spec.name, version)
    except NotFoundError as e:
        raise _Abort(grpc.StatusCode.NOT_FOUND, str(e)) from e


def _signature(servable, name: str):
    try:
        return servable.signature(name)
    except KeyError as e:
        raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, e.args[0]) from e


def _examples(model_input) -> list:
    """Serialized tf.Examples from a Classify/Regress Input (context features merged into each)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in model_input.example_list.examples]
    if kind == "example_list_with_context":
        context = model_input.example_list_with_context.context
        merged = []
        for example in model_input.example_list_with_context.examples:
            example = tf.train.Example.FromString(example.SerializeToString())
            for name, feature in context.features.feature.items():
                example.features.feature[name].CopyFrom(feature)
            merged.append(example.SerializeToString())
        return merged
    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty: give example_list")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: Registry, batcher: Batcher):
        self.registry = registry
        self.batcher = batcher

    async def _answer(self, method: str, context, work):
        code = grpc.StatusCode.OK
        try:
            return await work()
        except _Abort as e:
            code = e.code
            await context.abort(e.code, str(e))
        except tensors.RequestError as e:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(e))
        except tf.errors.InvalidArgumentError as e:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, tensors.model_error(e))
        finally:
            self.batcher.metrics.requests.labels("grpc", method, code.name).inc()
        return None

    async def _call(self, servable, signature, inputs: Dict[str, np.ndarray]):
        return await self.batcher.call(servable, signature.name, inputs, tensors.rows_of(inputs))

    async def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        async def work():
            servable = _servable(self.registry, request.model_spec)
            signature = _signature(servable, request.model_spec.signature_name)
            names = set(signature.inputs)
            missing, extra = sorted(names - set(request.inputs)), sorted(set(request.inputs) - names)
            if missing or extra:
                raise tensors.RequestError(
                    f"Request inputs do not match signature {signature.name}: missing "
                    f"{', '.join(missing) or 'none'}; unexpected {', '.join(extra) or 'none'}; "
                    f"expected {', '.join(sorted(names))}")
            inputs = {}
            for name, proto in request.inputs.items():
                spec = signature.inputs[name]
                if proto.dtype != spec.dtype.as_datatype_enum:
                    raise tensors.RequestError(
                        f"Input {name} is {tf.dtypes.as_dtype(proto.dtype).name}; signature "
                        f"{signature.name} expects {spec.dtype.name}")
                inputs[name] = tf.make_ndarray(proto)
            outputs = await self._call(servable, signature, inputs)
            wanted = list(request.output_filter) or list(outputs)
            unknown = sorted(set(wanted) - set(outputs))
            if unknown:
                raise tensors.RequestError(f"output_filter names unknown outputs: {', '.join(unknown)}")
            response = predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, servable, signature.name)
            for name in wanted:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
            return response
        return await self._answer("predict", context, work)

    async def _scores(self, request, verb: str):
        servable = _servable(self.registry, request.model_spec)
        signature = _signature(servable, request.model_spec.signature_name)
        input_name = tensors.single_string_input(signature)
        if input_name is None:
            raise tensors.RequestError(
                f"{verb} needs a signature with one string input (serialized tf.Examples); "
                f"{signature.name} has inputs {', '.join(sorted(signature.inputs))}")
        examples = _examples(request.input)
        if not examples:
            raise tensors.RequestError("No examples in the request")
        outputs = await self._call(servable, signature, {input_name: np.array(examples, dtype=object)})
        return servable, signature, outputs, len(examples)

    async def Classify(self, request, context):  # noqa: N802
        async def work():
            servable, signature, outputs, rows = await self._scores(request, "Classify")
            response = classification_pb2.ClassificationResponse()
            _fill_spec(response.model_spec, servable, signature.name)
            for row in tensors.class_scores(outputs, rows, signature.name):
                classes = response.result.classifications.add().classes
                for label, score in row:
                    classes.add(label=label, score=score)
            return response
        return await self._answer("classify", context, work)

    async def Regress(self, request, context):  # noqa: N802
        async def work():
            servable, signature, outputs, rows = await self._scores(request, "Regress")
            values = tensors.single_values(outputs, rows, signature.name, "Regress")
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, servable, signature.name)
            for value in values:
                response.result.regressions.add(value=float(value))
            return response
        return await self._answer("regress", context, work)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        async def work():
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise tensors.RequestError(
                    f"Metadata field(s) {fields} not supported: the only one is 'signature_def'")
            servable = _servable(self.registry, request.model_spec)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature_def in servable.signature_defs.items():
                signature_map.signature_def[name].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, servable, "")
            response.metadata["signature_def"].Pack(signature_map)
            return response
        return await self._answer("metadata", context, work)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: Registry):
        self.registry = registry

    async def GetModelStatus(self, request, context):  # noqa: N802
        version = request.model_spec.version.value if request.model_spec.HasField("version") else None
        try:
            statuses = self.registry.status(request.model_spec.name, version)
        except NotFoundError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add(version=status.version,
                                                      state=_STATE_CODES[status.state])
            entry.status.error_code = grpc.StatusCode[status.error_code].value[0]
            entry.status.error_message = status.error_message
        return response


def _fill_spec(model_spec, servable, signature_name: str) -> None:
    model_spec.name = servable.model_name
    model_spec.version.value = servable.version
    model_spec.signature_name = signature_name


def create_server(registry: Registry, batcher: Batcher, host: str, port: int) -> grpc.aio.Server:
    """A grpc.aio server on host:port (not started)."""
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry, batcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"Cannot listen for gRPC on {host}:{port}")
    return server
