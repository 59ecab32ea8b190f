"""TFX's StatisticsGen and Transform reading their examples a fixed number of rows at a time.

Without a batch size, every TFXIO source (StatisticsGen's, Transform's, the Evaluator's) batches
adaptively, from 1 to at most 1,000 rows (tfx_bsl/coders/batch_util.py). Measured on 150k taxi rows
(README "Scale"), 4,096 rows per batch made Transform ~10% faster, StatisticsGen ~5% and the
Evaluator ~7%, and changed no result beyond float rounding (statistics equal to 1e-13, transformed
features to 5e-7, metrics to 2e-10); 8,192 rows or tfx_bsl's byte-size batching were no faster.

TFX's executors build their sources with no size, and have no hook for one: Transform's
`_GetDesiredBatchSize` belongs to a TransformProcessor its executor creates itself. So the executors
here (and the Evaluator's, components/capped_evaluator.py) run TFX's within `tfxio_batch_size`, which
gives every source built inside it the size; Transform's size travels in its custom_config. Sources
are built while the executor constructs its Beam pipeline, so the size is part of the pipeline that
any runner (Dataflow, Flink, Kubeflow's containers) then executes.

Within it, tf.Example sources (`TFExampleRecord`) also read their files in blocks of that many
records (`_block_source`) instead of one Beam element per record: Beam's TFRecord reader, tfx_bsl's
per-record telemetry and batching cost ~18 us a record, 7 s of the 12.4 s it took to read and
decode 400k taxi records (README "Scale"). Each file is read by tf.data, in order, its last block
short; the blocks are decoded into tfx_bsl's RecordBatches (with a schema, by TF's faster example
parser: components/example_parser.py) and profiled by tfx_bsl's RecordBatch telemetry.
Files are matched when the pipeline is built, as Beam's TFRecord source does; files compressed other
than gzip take tfx_bsl's own source.

Transform also writes its transformed examples a batch per Beam element (`_write_batches`): TFX
encodes each transformed RecordBatch with tfx_bsl's encoder, then hands Beam's TFRecord sink one
element per example. Here the batch's examples stay one element and are framed and written in one
call: the same files, holding the same examples in the same order (tests/test_batch_size.py).
"""
import contextlib
import io
import json
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import tfrecordio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx import types
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import component as transform_component
from tfx.components.transform import executor as transform_executor
from tfx.components.transform import labels as transform_labels
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs as keys
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils
from tfx_bsl.coders import batch_util, example_coder
from tfx_bsl.tfxio import telemetry, tf_example_record

from components import example_parser

BATCH_SIZE_KEY = "batch_size"  # a parameter of StatisticsGen, a key of Transform's custom_config
CODE_KEY = "code_sha256"


@contextlib.contextmanager
def tfxio_batch_size(rows: int, decode_only: Optional[schema_pb2.Schema] = None) -> Iterator[None]:
    """Within it, a TFXIO source built without a batch size batches `rows` rows, and a tf.Example
    source reads its files in blocks of that many (0: tfx_bsl's adaptive batching and its own
    sources). With `decode_only`, such a source without a schema decodes only that schema's
    features, with TF's parser, for a reader that needs no others (the Evaluator). Not for
    concurrent use: it swaps tfx_bsl's batching arguments and tf.Example source while open."""
    if not rows:
        yield
        return
    adaptive = batch_util.GetBatchElementsKwargs

    def fixed(batch_size: Optional[int], *args, **kwargs) -> Dict[str, Any]:
        return adaptive(batch_size or rows, *args, **kwargs)

    record_source = tf_example_record.TFExampleRecord.BeamSource

    def block_source(tfxio, batch_size: Optional[int] = None) -> beam.PTransform:
        return _block_source(tfxio, batch_size or rows, record_source, decode_only)

    batch_util.GetBatchElementsKwargs = fixed
    tf_example_record.TFExampleRecord.BeamSource = block_source
    try:
        yield
    finally:
        batch_util.GetBatchElementsKwargs = adaptive
        tf_example_record.TFExampleRecord.BeamSource = record_source


# Beam's compression (detected from the file name, as its TFRecord source does) -> tf.data's.
_TF_DATA_COMPRESSION = {CompressionTypes.GZIP: "GZIP", CompressionTypes.UNCOMPRESSED: ""}


def _read_blocks(path: str, rows: int) -> Iterator[List[bytes]]:
    compression = _TF_DATA_COMPRESSION[CompressionTypes.detect_compression_type(path)]
    for block in tf.data.TFRecordDataset(path, compression).batch(rows).as_numpy_iterator():
        yield list(block)


def _block_source(tfxio, rows: int, record_source,
                  decode_only: Optional[schema_pb2.Schema] = None) -> beam.PTransform:
    """The TFXIO's RecordBatches of `rows` records, each file read in blocks (`record_source`, the
    TFXIO's own, for files compressed other than gzip); without a schema of its own, only
    `decode_only`'s features, if given."""
    paths = sorted(metadata.path for pattern in tfxio._file_pattern  # pylint: disable=protected-access
                   for result in FileSystems.match([pattern]) for metadata in result.metadata_list)
    if not paths:
        raise IOError(f"No files match {tfxio._file_pattern}")  # pylint: disable=protected-access
    if any(CompressionTypes.detect_compression_type(p) not in _TF_DATA_COMPRESSION for p in paths):
        return record_source(tfxio, rows)

    # pylint: disable=protected-access
    schema = tfxio._GetSchemaForDecoding()
    if schema is None:
        schema = decode_only

    @beam.typehints.with_input_types(Any)
    @beam.typehints.with_output_types(Any)
    def read(pipeline):
        return (pipeline
                | "Files" >> beam.Create(paths)
                | "ReadBlocks" >> beam.FlatMap(_read_blocks, rows)
                | "Decode" >> beam.ParDo(example_parser.ParseExamples(
                    schema, tfxio.raw_record_column_name))
                | "CollectRecordBatchTelemetry" >> telemetry.ProfileRecordBatches(
                    tfxio.telemetry_descriptors, tfxio._logical_format, tfxio._physical_format))

    return beam.ptransform_fn(read)()


class StatisticsGenSpec(keys.StatisticsGenSpec):
    PARAMETERS = {**keys.StatisticsGenSpec.PARAMETERS,
                  BATCH_SIZE_KEY: ExecutionParameter(type=int, optional=True),
                  # Keys TFX's cache on this code (components/fingerprints.py).
                  CODE_KEY: ExecutionParameter(type=str, optional=True)}


class StatisticsGenExecutor(statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor, its sources batching `batch_size` rows."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        exec_properties = dict(exec_properties)
        rows = exec_properties.pop(BATCH_SIZE_KEY, None) or 0
        exec_properties.pop(CODE_KEY, None)
        with tfxio_batch_size(rows):
            super().Do(input_dict, output_dict, exec_properties)


class StatisticsGen(base_beam_component.BaseBeamComponent):
    """TFX's StatisticsGen (the arguments this project uses) plus `batch_size`."""

    SPEC_CLASS = StatisticsGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)

    def __init__(self, examples: types.BaseChannel, batch_size: int = 0,
                 code_sha256: Optional[str] = None):
        super().__init__(spec=StatisticsGenSpec(
            examples=examples, exclude_splits=json_utils.dumps([]), batch_size=batch_size,
            code_sha256=code_sha256,
            statistics=types.Channel(type=standard_artifacts.ExampleStatistics)))


class _TFRecordBatchSink(tfrecordio._TFRecordSink):  # pylint: disable=protected-access
    """Beam's TFRecord sink, each element a list of serialized records, framed as Beam frames one."""

    def write_record(self, file_handle, value: List[bytes]) -> None:
        framed = io.BytesIO()  # one write per batch: the compressed file's writes cost per call
        for record in value:
            tfrecordio._TFRecordUtil.write_record(framed, record)  # pylint: disable=protected-access
        file_handle.write(framed.getvalue())


class _EncodeBatch(beam.DoFn):
    """A transformed RecordBatch -> its tf.Examples, serialized, as one list (TFX's encoding, without
    its internal key column)."""

    def __init__(self, schema):
        self._schema = schema
        self._encoder = None

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)

    def process(self, element) -> Iterator[List[bytes]]:
        record_batch, _ = element
        # pylint: disable=protected-access
        yield self._encoder.encode(transform_executor._FilterInternalColumn(record_batch))


@contextlib.contextmanager
def _write_batches() -> Iterator[None]:
    """Within it, Transform writes tf.Example outputs a batch per Beam element (other formats: TFX's
    own writing). Not for concurrent use: it swaps TFX's TransformProcessor._EncodeAndWrite."""
    processor = transform_executor.TransformProcessor
    original = processor.__dict__["_EncodeAndWrite"]

    @beam.ptransform_fn
    def encode_and_write(pcoll, schema, file_format: str, output_path: str):
        if file_format != transform_labels.FORMAT_TFRECORD:
            return pcoll | original.__func__(
                schema=schema, file_format=file_format, output_path=output_path)
        return (pcoll
                | "EncodeBatches" >> beam.ParDo(_EncodeBatch(schema))
                | "WriteBatches" >> beam.io.Write(_TFRecordBatchSink(
                    output_path, beam.coders.BytesCoder(), ".gz", 0, None, CompressionTypes.AUTO)))

    processor._EncodeAndWrite = staticmethod(encode_and_write)  # pylint: disable=protected-access
    try:
        yield
    finally:
        processor._EncodeAndWrite = original  # pylint: disable=protected-access


class TransformExecutor(transform_executor.Executor):
    """TFX's Transform executor, its sources batching custom_config's `batch_size` rows, its
    transformed examples written a batch at a time."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        custom_config = json.loads(exec_properties.get(keys.CUSTOM_CONFIG_KEY) or "null") or {}
        with tfxio_batch_size(custom_config.get(BATCH_SIZE_KEY) or 0), _write_batches():
            super().Do(input_dict, output_dict, exec_properties)


class Transform(transform_component.Transform):
    """TFX's Transform; put `batch_size` in its custom_config."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)
