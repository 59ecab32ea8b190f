"""CsvExampleGen's output, made a block of rows at a time with Arrow: the same ExampleGen, batched.

TFX's CsvExampleGen makes several Python objects per row (a line, its cells, a tf.Example, a partition
key, a shuffle element): ~6,000 rows/s on one core. This executor reads each CSV file with pyarrow in
blocks and does the rest column by column on each block, in a Beam pipeline (so Dataflow, Flink and
Spark still spread it over workers):

- the column types CsvExampleGen infers (tfx_bsl's rule over every file of the split: INT, else FLOAT,
  else STRING; an empty cell says nothing; a column with no value anywhere is typeless);
- the tf.Examples CsvExampleGen writes (an empty cell is a present feature with no value), serialized
  the way protobuf's deterministic serialization does it (features sorted by name);
- the hash split CsvExampleGen makes: sha256 of that serialization modulo the buckets (TFX's
  `_PartitionFn`), so each row lands in the split CsvExampleGen puts it in;
- the shuffle before writing, per block instead of per row: each split is written in shards whose rows
  are in the order of their sha256, so the written order is mixed (a CSV sorted by time is not trained
  on in time order) and reproducible;
- a shuffle that holds no rows: each worker appends its blocks' rows to spill files of their shard
  (beside the output), and only the files' paths go through Beam's GroupByKey. Beam's local runners
  hold a shuffle's whole input in the memory of the process running the pipeline (~0.5 KB per taxi row
  here), so ExampleGen's memory would grow with the data; now it holds a block and one shard at a time.

The artifact is CsvExampleGen's: gzipped TFRecords of tf.Examples in Split-<name>/, the same split
names, payload and file format properties; span, version and input fingerprint come from TFX's
FileBasedExampleGen driver, as for CsvExampleGen.
"""
import hashlib
import math
import os
import re
import struct
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs as keys
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders.csv_decoder import ColumnType, ColumnTypeInferrer

# pyarrow reads a file in blocks of this many bytes: one RecordBatch, one unit of work, each.
BLOCK_BYTES = 4 << 20
# Input bytes per output shard (a file per split): a shard's rows are held together to be ordered, the
# most ExampleGen holds in memory (with one block per worker).
SHARD_INPUT_BYTES = 64 << 20
# The shuffle's spill files, inside the output artifact while ExampleGen runs.
SPILL_DIR = ".spill"
# Cells whose value pyarrow parses as Python's int()/float() would (Python parses a few more forms:
# '+1', ' 1', '1_000', 'nan', 'inf', longer integers; those take the per-value path).
_PLAIN_INT = r"^-?[0-9]{1,18}$"  # 18 digits always fit int64
_PLAIN_FLOAT = r"^-?(([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)([eE][+-]?[0-9]{1,3})?|[0-9]+[eE][+-]?[0-9]{1,3})$"
_EMPTY_FEATURE = {ColumnType.INT: b"\x1a\x00", ColumnType.FLOAT: b"\x12\x00",
                  ColumnType.STRING: b"\x0a\x00", ColumnType.UNKNOWN: b""}
_FEATURE_TAG = {ColumnType.INT: b"\x1a", ColumnType.FLOAT: b"\x12", ColumnType.STRING: b"\x0a"}
ColumnTypes = Dict[str, ColumnType]


def _binary(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """A binary array of consecutive `lengths`-byte values of `data`."""
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(lengths),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))])


def _varint(value: int) -> bytes:
    return _varints(np.array([value]))[0].as_py()


def _varints(values: np.ndarray) -> pa.Array:
    """Protobuf varints of int64 (as two's complement) or unsigned values, one binary value each."""
    values = values.astype(np.int64).view(np.uint64)
    width = (int(values.max(initial=0)).bit_length() + 6) // 7 or 1  # bytes of the longest
    if width == 1:
        return _binary(values.astype(np.uint8), np.ones(len(values), np.int32))
    values = values[:, None]
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    lengths = 1 + (values >= (np.uint64(1) << shifts[1:])).sum(axis=1)
    groups = ((values >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    groups[np.arange(width) < (lengths - 1)[:, None]] |= 0x80  # more bytes follow
    return _binary(groups[np.arange(width) < lengths[:, None]], lengths)


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes in the varint of each (non-negative) length."""
    return 1 + sum((values >= 1 << (7 * k)).astype(np.int64) for k in range(1, 5))


def _bytes(value: bytes) -> pa.Scalar:
    return pa.scalar(value, pa.binary())


def _parse(values: pa.Array, plain: pa.Array, arrow_type: pa.DataType, python_type) -> np.ndarray:
    """Numbers of the non-empty `values`: the `plain` ones parsed by Arrow, the rest by Python."""
    numbers = np.zeros(len(values), arrow_type.to_pandas_dtype())
    plain_mask = plain.to_numpy(zero_copy_only=False)
    if plain_mask.any():
        numbers[plain_mask] = pc.cast(values.filter(plain), arrow_type).to_numpy(zero_copy_only=False)
    other = np.flatnonzero(~plain_mask & (pc.binary_length(values).to_numpy(zero_copy_only=False) > 0))
    if other.size:
        # As CsvExampleGen's handlers parse them: the cell's bytes.
        numbers[other] = [python_type(values[int(i)].as_py().encode()) for i in other]
    return numbers


def _plain(values: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(values, pattern), False)


def _entries(name: str, values: pa.Array, column_type: ColumnType) -> Tuple[pa.Array, np.ndarray]:
    """Each cell's entry of the Features.feature map (its key and its tf.train.Feature, as
    CsvExampleGen's handlers build it), serialized; and the entries' lengths.

    entry = 0a len(E) | 0a len(key) key 12 len(F) | F, where the Feature F of a cell with a value is
    tag len(L) 0a len(P) P (a one-value Int64/Float/BytesList L, P the packed value), of an empty cell
    a Feature with an empty list (or no list: a column with no value anywhere).
    """
    key = b"\x0a" + _varint(len(name.encode())) + name.encode() + b"\x12"
    empty = _EMPTY_FEATURE[column_type]
    empty_entry = key + _varint(len(empty)) + empty
    empty_entry = b"\x0a" + _varint(len(empty_entry)) + empty_entry
    present = pc.greater(pc.binary_length(values), 0)
    if column_type == ColumnType.UNKNOWN or not pc.any(present).as_py():
        return pa.array([empty_entry] * len(values), pa.binary()), np.full(len(values), len(empty_entry))
    if column_type == ColumnType.INT:
        payload = _varints(_parse(values, _plain(values, _PLAIN_INT), pa.int64(), int))
    elif column_type == ColumnType.FLOAT:
        plain = pc.or_(_plain(values, _PLAIN_INT), _plain(values, _PLAIN_FLOAT))
        with np.errstate(over="ignore"):  # past float32: inf, as protobuf stores it
            numbers = _parse(values, plain, pa.float64(), float).astype(np.float32)
        payload = _binary(numbers.view(np.uint8), np.full(len(numbers), 4))
    else:
        payload = values.cast(pa.binary())
    p = pc.binary_length(payload).to_numpy(zero_copy_only=False).astype(np.int64)
    value_list = 1 + _varint_lengths(p) + p
    feature = 1 + _varint_lengths(value_list) + value_list
    entry = len(key) + _varint_lengths(feature) + feature
    entries = pc.if_else(present, _join(
        _bytes(b"\x0a"), _varints(entry), _bytes(key), _varints(feature),
        _bytes(_FEATURE_TAG[column_type]), _varints(value_list), _bytes(b"\x0a"), _varints(p),
        payload), _bytes(empty_entry))
    lengths = np.where(present.to_numpy(zero_copy_only=False), 1 + _varint_lengths(entry) + entry,
                       len(empty_entry))
    return entries, lengths


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, _bytes(b""))


def serialize_examples(batch: pa.RecordBatch, column_types: ColumnTypes) -> pa.Array:
    """The rows of `batch` (CSV cells as strings) as serialized tf.Examples, byte for byte what
    `tf.train.Example.SerializeToString(deterministic=True)` gives for CsvExampleGen's examples."""
    entries, length = [], np.zeros(batch.num_rows, np.int64)
    for name in sorted(batch.schema.names, key=lambda n: n.encode()):  # as protobuf sorts map keys
        column_entries, column_lengths = _entries(name, batch.column(name),
                                                  column_types.get(name, ColumnType.UNKNOWN))
        entries.append(column_entries)
        length += column_lengths
    return _join(_bytes(b"\x0a"), _varints(length), *entries)  # Example.features


def _column_type(values: pa.Array) -> ColumnType:
    """tfx_bsl's inferred type of a column of cells (ColumnTypeInferrer), most values vectorized."""
    values = values.filter(pc.greater(pc.binary_length(values), 0))
    if len(values) == 0:
        return ColumnType.UNKNOWN
    is_int = _plain(values, _PLAIN_INT)
    if pc.all(is_int).as_py():
        return ColumnType.INT
    is_float = _plain(values, _PLAIN_FLOAT)  # never an integer: int() decides those
    found = ({ColumnType.INT} if pc.any(is_int).as_py() else set()) | (
        {ColumnType.FLOAT} if pc.any(is_float).as_py() else set())
    others = pc.unique(values.filter(pc.invert(pc.or_(is_int, is_float))))
    if len(others):
        inferrer = ColumnTypeInferrer(["cell"], skip_blank_lines=True)
        accumulator = {}
        for cell in others.to_pylist():
            accumulator = inferrer.add_input(accumulator, [cell.encode()])
        found.add(accumulator["cell"])
    return max(found)


def merge_types(types_per_part: Iterable[ColumnTypes]) -> ColumnTypes:
    """The type of each column over every part: the highest (INT < FLOAT < STRING)."""
    merged: ColumnTypes = {}
    for part in types_per_part:
        for name, column_type in part.items():
            merged[name] = max(merged.get(name, ColumnType.UNKNOWN), column_type)
    return merged


class CsvReadError(ValueError):
    """A CSV file that cannot be read; the message names the file, the row or column, and the fix."""


def read_blocks(path: str, column_names: List[str]) -> Iterator[pa.RecordBatch]:
    """The data rows of a CSV file as RecordBatches of strings, parsed as CsvExampleGen parses them
    (quoted fields may hold newlines; blank lines are skipped; every value is kept as written)."""
    bad_rows = []

    def on_bad_row(row):  # pyarrow's message names neither the file nor the header's width
        bad_rows.append(row)
        return "error"

    try:
        with beam.io.filesystems.FileSystems.open(path) as f:
            reader = pa_csv.open_csv(
                f, read_options=pa_csv.ReadOptions(column_names=column_names, skip_rows=1,
                                                   block_size=BLOCK_BYTES),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True,
                                                  invalid_row_handler=on_bad_row),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in column_names}))
            for batch in reader:
                if batch.num_rows:
                    yield batch
    except pa.ArrowInvalid as e:
        raise _read_error(path, column_names, bad_rows, e) from e


def _read_error(path: str, column_names: List[str], bad_rows, error: pa.ArrowInvalid) -> CsvReadError:
    """The input checks' wording (pipeline/data_checks.py), from what pyarrow says."""
    if bad_rows:
        row = bad_rows[0]
        return CsvReadError(
            f"{path} has a row with {row.actual_columns} fields where the header has "
            f"{row.expected_columns} (an unbalanced quote or a stray comma?): {row.text!r}. Fix the "
            "row; where a value is unknown, leave the cell empty.")
    column = re.search(r"CSV column #(\d+)", str(error))
    if "invalid UTF8" in str(error):
        where = f" (column '{column_names[int(column.group(1))]}')" if column else ""
        return CsvReadError(f"{path} is not UTF-8 text{where}. Re-save it as UTF-8 CSV.")
    if "Empty CSV file" in str(error):
        return CsvReadError(f"{path} is empty. Each CSV file needs a header row and at least one "
                            "data row; remove the file or fill it.")
    return CsvReadError(f"{path} cannot be read as CSV: {error}")


def infer_file_types(path: str, column_names: List[str]) -> ColumnTypes:
    return merge_types({name: _column_type(batch.column(name)) for name in column_names}
                       for batch in read_blocks(path, column_names))


def split_indices(digests: np.ndarray, cumulative_buckets: List[int]) -> np.ndarray:
    """TFX's `_PartitionFn`, vectorized: bisect(buckets, int(sha256) % total buckets)."""
    total = cumulative_buckets[-1]
    bucket = np.zeros(len(digests), np.int64)
    for column in digests.T:  # the 256-bit big-endian number modulo `total`, a byte at a time
        bucket = (bucket * 256 + column) % total
    return np.searchsorted(np.asarray(cumulative_buckets), bucket, side="right")


def encode_file(path: str, column_names: List[str], column_types: ColumnTypes,
                cumulative_buckets: Optional[List[int]], split_index: int, num_shards: int
                ) -> Iterator[Tuple[Tuple[int, int], Tuple[np.ndarray, List[bytes]]]]:
    """Per block, per (split, shard): the rows' sort keys and serialized tf.Examples.

    With `cumulative_buckets`, rows go to splits by hash; without, all to `split_index`.
    """
    for batch in read_blocks(path, column_names):
        records = serialize_examples(batch, column_types).to_pylist()
        digests = np.frombuffer(b"".join(hashlib.sha256(r).digest() for r in records),
                                np.uint8).reshape(-1, 32)
        splits = (split_indices(digests, cumulative_buckets) if cumulative_buckets
                  else np.full(len(records), split_index))
        order_keys = digests[:, :8].copy().view(">u8").ravel()
        shards = digests[:, 8:16].copy().view(">u8").ravel() % np.uint64(num_shards)
        for split, shard in set(zip(splits.tolist(), shards.tolist())):
            rows = np.flatnonzero((splits == split) & (shards == shard))
            yield (split, shard), (order_keys[rows], [records[i] for i in rows])


_CHUNK_HEADER = struct.Struct("<Q")  # rows in the chunk


def _chunk(order_keys: np.ndarray, records: List[bytes]) -> bytes:
    """A spill file's unit: the rows' count, sort keys and lengths, then the serialized rows."""
    lengths = np.fromiter(map(len, records), np.uint32, len(records))
    return b"".join([_CHUNK_HEADER.pack(len(records)), order_keys.astype("<u8").tobytes(),
                     lengths.astype("<u4").tobytes(), *records])


def _read_chunks(data: bytes) -> Iterator[Tuple[np.ndarray, np.ndarray, int]]:
    """Each chunk of a spill file: its sort keys, its rows' lengths and where its rows start."""
    offset = 0
    while offset < len(data):
        (count,) = _CHUNK_HEADER.unpack_from(data, offset)
        offset += _CHUNK_HEADER.size
        order_keys = np.frombuffer(data, "<u8", count, offset)
        lengths = np.frombuffer(data, "<u4", count, offset + 8 * count)
        offset += 12 * count
        yield order_keys, lengths, offset
        offset += int(lengths.sum())


class SpillShards(beam.DoFn):
    """Encodes a CSV file and appends each block's rows to a spill file per (split, shard) in
    `spill_dir`; yields ((split, shard), spill file) for each, after the whole file."""

    def __init__(self, column_names: List[str], cumulative_buckets: Optional[List[int]],
                 split_index: int, num_shards: int, spill_dir: str):
        self._encode_args = (column_names, cumulative_buckets, split_index, num_shards)
        self._spill_dir = spill_dir

    def process(self, path, column_types):
        column_names, buckets, split_index, num_shards = self._encode_args
        prefix = os.path.join(self._spill_dir, uuid.uuid4().hex)  # a retried bundle writes anew
        spills = {}
        try:
            for key, (order_keys, records) in encode_file(path, column_names, column_types, buckets,
                                                          split_index, num_shards):
                if key not in spills:
                    spills[key] = fileio.open(f"{prefix}-{key[0]}-{key[1]}", "wb")
                spills[key].write(_chunk(order_keys, records))
        finally:
            for spill in spills.values():
                spill.close()
        for key in sorted(spills):
            yield key, f"{prefix}-{key[0]}-{key[1]}"


class WriteShard(beam.DoFn):
    """Writes one shard of a split from its spill files: its rows in the order of their hash, to a
    gzipped TFRecord file; removes the spill files."""

    def __init__(self, split_uris: List[str], num_shards: int):
        self._split_uris = split_uris
        self._num_shards = num_shards

    def process(self, element):
        (split, shard), spill_paths = element
        spill_paths = sorted(spill_paths)
        spills, order_keys, lengths, starts, owners = [], [], [], [], []
        for path in spill_paths:
            with fileio.open(path, "rb") as f:
                spills.append(f.read())
            for chunk_keys, chunk_lengths, start in _read_chunks(spills[-1]):
                order_keys.append(chunk_keys)
                lengths.append(chunk_lengths)
                starts.append(start + np.concatenate([[0], np.cumsum(chunk_lengths[:-1],
                                                                     dtype=np.int64)]))
                owners.append(np.full(len(chunk_keys), len(spills) - 1))
        order_keys, lengths, starts, owners = (
            np.concatenate(parts) if parts else np.zeros(0, np.int64)
            for parts in (order_keys, lengths, starts, owners))
        path = os.path.join(self._split_uris[split], f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}-"
                            f"{shard:05d}-of-{self._num_shards:05d}.gz")
        with tf.io.TFRecordWriter(path, "GZIP") as writer:
            for i in np.argsort(order_keys, kind="stable"):  # equal keys: equal rows
                start = int(starts[i])
                writer.write(spills[owners[i]][start:start + int(lengths[i])])
        for spill_path in spill_paths:
            fileio.remove(spill_path)
        yield len(order_keys)


def csv_files(input_base: str, pattern: str) -> Tuple[List[str], List[str]]:
    """The split's files and their header, which must be the same in every file (as CsvExampleGen
    requires)."""
    files = fileio.glob(os.path.join(input_base, pattern))
    if not files:
        raise CsvReadError(f"No files match {os.path.join(input_base, pattern)}. Put CSV files "
                             "with a header row there, or fix the input pattern.")
    column_names = io_utils.load_csv_column_names(files[0])
    for path in files[1:]:
        if io_utils.load_csv_column_names(path) != column_names:
            raise CsvReadError(
                f"{path} and {files[0]} have different header rows; every file read together needs "
                "the same columns in the same order. Make the headers equal, or move the file out.")
    return files, column_names


class CsvToShards(beam.PTransform):
    """The CSV files of one input split -> ((split, shard), spill file) with `spill_dir` (SpillShards),
    else ((split, shard), (sort keys, serialized tf.Examples)) per block."""

    def __init__(self, files: List[str], column_names: List[str],
                 cumulative_buckets: Optional[List[int]], split_index: int, num_shards: int,
                 spill_dir: Optional[str] = None):
        super().__init__()
        self._files, self._column_names = files, column_names
        self._buckets, self._split_index, self._num_shards = (cumulative_buckets, split_index,
                                                              num_shards)
        self._spill_dir = spill_dir

    def expand(self, pipeline):
        # One element per file, spread over workers.
        files = pipeline | "Files" >> beam.Create(self._files) | "Spread" >> beam.Reshuffle()
        column_types = beam.pvalue.AsSingleton(
            files
            | "InferTypes" >> beam.Map(infer_file_types, self._column_names)
            | "MergeTypes" >> beam.CombineGlobally(merge_types))
        if self._spill_dir:
            return files | "Spill" >> beam.ParDo(SpillShards(
                self._column_names, self._buckets, self._split_index, self._num_shards,
                self._spill_dir), column_types)
        return files | "Encode" >> beam.FlatMap(encode_file, self._column_names, column_types,
                                                self._buckets, self._split_index, self._num_shards)


def _num_shards(files: List[str]) -> int:
    return max(1, math.ceil(sum(fileio.stat(f).length for f in files) / SHARD_INPUT_BYTES))


class Executor(BaseExampleGenExecutor):
    """CsvExampleGen's executor, batched (see the module's docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """BaseExampleGenExecutor's per-record interface: a split's serialized tf.Examples (`Do`
        writes the batched shards instead)."""
        return _csv_to_examples

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = proto_utils.json_to_proto(exec_properties[keys.INPUT_CONFIG_KEY],
                                                 example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(exec_properties[keys.OUTPUT_CONFIG_KEY],
                                                  example_gen_pb2.Output())
        payload_format = exec_properties.get(keys.OUTPUT_DATA_FORMAT_KEY)
        if payload_format not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
            raise ValueError(f"{type(self).__name__} writes tf.Examples only (payload format "
                             f"{example_gen_pb2.PayloadFormat.Name(payload_format)} was asked for).")
        if output_config.split_config.HasField("partition_feature_name"):
            raise ValueError(f"{type(self).__name__} splits by the hash of the whole row; "
                             "partition_feature_name is not supported.")
        split_names = utils.generate_output_split_names(input_config, output_config)
        examples = output_dict[keys.EXAMPLES_KEY]
        artifact_utils.get_single_instance(examples).split_names = (
            artifact_utils.encode_split_names(split_names))
        split_uris = [artifact_utils.get_split_uri(examples, name) for name in split_names]
        input_base = exec_properties[keys.INPUT_BASE_KEY]

        if output_config.split_config.splits:  # one input split, hashed into the output splits
            cumulative = np.cumsum([s.hash_buckets for s in output_config.split_config.splits])
            sources = [(input_config.splits[0].pattern, [int(b) for b in cumulative], 0)]
        else:  # the input splits are the output splits
            sources = [(split.pattern, None, i) for i, split in enumerate(input_config.splits)]
        read = [(csv_files(input_base, pattern), buckets, index) for pattern, buckets, index in sources]
        num_shards = max(_num_shards(files) for (files, _), _, _ in read)
        for uri in split_uris:
            fileio.makedirs(uri)
        # Beside the splits, on the same filesystem (a bucket on a cluster), which every worker sees.
        spill_dir = os.path.join(artifact_utils.get_single_uri(examples), SPILL_DIR)
        fileio.makedirs(spill_dir)
        with self._make_beam_pipeline() as pipeline:
            shards = [pipeline | f"ReadSplit[{index}]" >> CsvToShards(
                files, column_names, buckets, index, num_shards, spill_dir)
                for (files, column_names), buckets, index in read]
            _ = (shards | "Flatten" >> beam.Flatten()
                 | "GroupShards" >> beam.GroupByKey()
                 | "WriteShards" >> beam.ParDo(WriteShard(split_uris, num_shards)))
        fileio.rmtree(spill_dir)
        for uri in split_uris:  # a split no row hashed into is still a readable, empty split
            if not fileio.glob(os.path.join(uri, "*")):
                tf.io.TFRecordWriter(os.path.join(
                    uri, f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}-00000-of-00001.gz"), "GZIP").close()

        for artifact in examples:
            if payload_format is not None:
                examples_utils.set_payload_format(artifact, payload_format)
            file_format = exec_properties.get(keys.OUTPUT_FILE_FORMAT_KEY)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))


@beam.ptransform_fn
def _csv_to_examples(pipeline, exec_properties: Dict[str, Any], split_pattern: str):
    files, column_names = csv_files(exec_properties[keys.INPUT_BASE_KEY], split_pattern)
    return (pipeline | CsvToShards(files, column_names, None, 0, 1)
            | "Records" >> beam.FlatMap(lambda element: element[1][1]))


class ArrowCsvExampleGen(FileBasedExampleGen):
    """CsvExampleGen with the batched executor: the same parameters, outputs and split assignment.

    `code_sha256` (components/fingerprints.py) keys TFX's cache on this code: it travels in
    `custom_config`, which the executor does not read.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, code_sha256: Optional[str] = None, **kwargs):
        if code_sha256 is not None:
            config = example_gen_pb2.CustomConfig()
            config.custom_config.Pack(struct_pb2.Struct(fields={
                "code_sha256": struct_pb2.Value(string_value=code_sha256)}))
            kwargs["custom_config"] = config
        super().__init__(**kwargs)
