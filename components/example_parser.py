"""Serialized tf.Examples to the RecordBatch tfx_bsl's decoder makes of them, parsed by TF's parser.

tfx_bsl's `ExamplesToRecordBatchDecoder` takes ~26 us a taxi example (18 features), measured here;
`tf.io.parse_example` reads the same records ~4x faster: 100k taxi examples in batches of 4,096 made
into the same RecordBatches in 0.63 s against 2.65 s, and Transform re-run alone at 1.5M rows took
92 s instead of 149 s (README "Scale"). `ParseExamples` builds from TF's values and row splits the
columns the decoder would: the schema's features, in the decoder's order and Arrow types.

One difference: a row without values. The decoder reads an empty list (`int64_list {}`) as [], a
feature without a list (`feature {}`) or without an entry as null; TF's parser sees no values in all
three, and they are all [] here. This project's ExampleGen writes an empty cell as an empty list, as
CsvExampleGen does, and a column without a value in its whole file as features without a list
(pickup_census_tract in the taxi sample): the one column where the two differ on its examples, and
tf.Transform, the one reader of these batches with a schema, makes the same tensors of both
(tests/test_example_parser.py); its own statistics, which would count such a row as present without
values, are off in the pipeline. Without a schema (types to infer: StatisticsGen's and the
Evaluator's sources), or with a column TF cannot parse as one list of values (a STRUCT), it is
tfx_bsl's decoder.
"""
from typing import Dict, List, Optional

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import record_based_tfxio

_DTYPES = {pa.int64(): tf.int64, pa.float32(): tf.float32, pa.large_binary(): tf.string}


def parse_spec(arrow_schema: pa.Schema) -> Optional[Dict[str, tf.io.RaggedFeature]]:
    """TF's parsing spec for the decoder's columns; None if a column is not a list of TF's types."""
    spec = {}
    for field in arrow_schema:
        if not pa.types.is_large_list(field.type) or field.type.value_type not in _DTYPES:
            return None
        spec[field.name] = tf.io.RaggedFeature(_DTYPES[field.type.value_type],
                                               row_splits_dtype=tf.int64)
    return spec


class ParseExamples(beam.DoFn):
    """Each batch of serialized tf.Examples as a RecordBatch: tfx_bsl's `_DecodeBatchExamplesDoFn`
    (its raw record column too), TF's parser doing the parsing when the schema allows."""

    def __init__(self, schema: Optional[schema_pb2.Schema], raw_record_column_name: Optional[str]):
        # Serialized, as tfx_bsl keeps it (b/167128119).
        self._schema = schema.SerializeToString() if schema is not None else None
        self._raw_record_column_name = raw_record_column_name

    def setup(self):
        self._decoder = (example_coder.ExamplesToRecordBatchDecoder(self._schema) if self._schema
                         else example_coder.ExamplesToRecordBatchDecoder())
        self._parse = None
        if self._schema:
            self._arrow_schema = self._decoder.ArrowSchema()
            spec = parse_spec(self._arrow_schema)
            if spec:
                self._parse = tf.function(lambda records: tf.io.parse_example(records, spec),
                                          input_signature=[tf.TensorSpec([None], tf.string)])

    def decode(self, records: List[bytes]) -> pa.RecordBatch:
        if self._parse is None:
            return self._decoder.DecodeBatch(records)
        parsed = self._parse(tf.constant(records, tf.string))
        columns = []
        for field in self._arrow_schema:
            ragged = parsed[field.name]
            columns.append(pa.LargeListArray.from_arrays(
                pa.array(ragged.row_splits.numpy()), pa.array(ragged.values.numpy(),
                                                              field.type.value_type)))
        return pa.RecordBatch.from_arrays(columns, schema=self._arrow_schema)

    def process(self, records: List[bytes]):
        batch = self.decode(records)
        if self._raw_record_column_name is not None:
            batch = record_based_tfxio.AppendRawRecordColumn(batch, self._raw_record_column_name,
                                                             records)
        yield batch
