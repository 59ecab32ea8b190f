"""`ParseExamples` gives the RecordBatches tfx_bsl's own decoder gives, with TF's example parser."""
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from components import arrow_example_gen
from components.example_parser import ParseExamples, parse_spec
from tests.conftest import TAXI_SPEC, write_csv
from tests.test_arrow_example_gen import ONE_INPUT, records, run
from tests.test_capped_evaluator import PIPELINE_SPLITS


def _taxi_schema() -> schema_pb2.Schema:
    return tfdv.load_schema_text(TAXI_SPEC.schema_path)


def _parser(schema, raw_record_column_name=None) -> ParseExamples:
    parser = ParseExamples(schema, raw_record_column_name)
    parser.setup()
    return parser


def _decoded(schema, examples) -> pa.RecordBatch:
    """tfx_bsl's own decoding."""
    decoder = (example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString()) if schema
               else example_coder.ExamplesToRecordBatchDecoder())
    return decoder.DecodeBatch(examples)


def _example_gen(root, fieldnames, rows):
    """The project's ExampleGen's serialized examples of the rows."""
    write_csv(str(root / "data" / "taxi.csv"), fieldnames, rows)
    artifact = run(arrow_example_gen.Executor, str(root / "data"), str(root / "examples"), ONE_INPUT,
                   PIPELINE_SPLITS)
    return records(artifact, "train") + records(artifact, "eval")


@pytest.fixture(scope="module")
def taxi_examples(tmp_path_factory, taxi_rows):
    """1,500 real taxi rows from all of the sample, empty cells among them, through the project's
    ExampleGen."""
    fieldnames, rows = taxi_rows
    return _example_gen(tmp_path_factory.mktemp("example_parser"), fieldnames, rows[::10])


def test_the_project_examples_parse_as_tfx_bsl_decodes_them(taxi_examples):
    """Every column alike, but one the project's ExampleGen writes as features without a list (it
    has no value in its file: pickup_census_tract, empty in the whole sample): null for tfx_bsl,
    [] here, the same tensors for tf.Transform."""
    schema = _taxi_schema()
    ours, theirs = _parser(schema).decode(taxi_examples), _decoded(schema, taxi_examples)
    differing = [name for name in ours.schema.names if not ours.column(name).equals(theirs.column(name))]
    assert differing == ["pickup_census_tract"]
    assert theirs.column("pickup_census_tract").null_count == len(taxi_examples)
    assert ours.column("pickup_census_tract").to_pylist() == [[]] * len(taxi_examples)
    assert theirs.column("company").to_pylist().count([]) > 100  # empty cells: empty lists in both
    _assert_same_tensors(ours, theirs,
                         tensor_representation_util.InferTensorRepresentationsFromSchema(schema))
    (with_raw,) = _parser(schema, "raw").process(taxi_examples)
    assert with_raw.schema.names[-1] == "raw"
    assert with_raw.column("raw").to_pylist() == [[record] for record in taxi_examples]


def _example(**features) -> bytes:
    example = tf.train.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if value is None:
            continue  # a feature without a list
        if not value:  # an empty list, of ints
            feature.int64_list.SetInParent()
            continue
        kind = (feature.bytes_list if isinstance(value[0], bytes) else
                feature.float_list if isinstance(value[0], float) else feature.int64_list)
        kind.value.extend(value)
    return example.SerializeToString()


_SCHEMA = text_format.Parse("""
    feature { name: "i" type: INT }
    feature { name: "f" type: FLOAT }
    feature { name: "s" type: BYTES }
    feature { name: "never" type: INT }
""", schema_pb2.Schema())


def test_values_of_every_kind_parse_as_tfx_bsl_decodes_them():
    examples = [_example(i=[2**63 - 1, -2**63], f=[float("nan"), -0.0, 1e-30], s=[b"\xff\x00", "é".encode()]),
                _example(i=[7], f=[float("inf")], s=[b""], other=[1]),  # a feature not in the schema
                _example(i=[1, 2, 3, 4], f=[0.5] * 5, s=[b"a", b"b"])]
    ours, theirs = _parser(_SCHEMA).decode(examples), _decoded(_SCHEMA, examples)
    assert ours.schema.equals(theirs.schema) and ours.schema.names == ["i", "f", "s", "never"]
    for name in ("i", "s"):
        assert ours.column(name).equals(theirs.column(name))
    # NaN is not equal to itself: the floats' bits.
    for column in (ours.column("f"), theirs.column("f")):
        assert column.offsets.to_pylist() == [0, 3, 4, 9]
    np.testing.assert_array_equal(ours.column("f").values.to_numpy().view(np.uint32),
                                  theirs.column("f").values.to_numpy().view(np.uint32))


def test_a_row_without_values_is_an_empty_list_where_tfx_bsl_may_say_null():
    """The documented difference (components/example_parser.py), and why it does not matter to
    tf.Transform: its tensors of both RecordBatches are the same."""
    examples = [_example(i=[1], f=[1.0], s=[b"x"]), _example(i=[], f=None), _example()]
    ours, theirs = _parser(_SCHEMA).decode(examples), _decoded(_SCHEMA, examples)
    assert ours.column("i").to_pylist() == [[1], [], []]
    assert theirs.column("i").to_pylist() == [[1], [], None]
    assert theirs.column("f").to_pylist() == [[1.0], None, None]
    assert ours.column("never").to_pylist() == [[], [], []]
    schema = _taxi_schema()
    representations = tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    taxi = [_example(), _example(company=[b"Flash Cab"], fare=[3.25], trip_start_hour=[4])]
    _assert_same_tensors(_parser(schema).decode(taxi), _decoded(schema, taxi), representations)


def _assert_same_tensors(ours, theirs, representations):
    """tf.Transform's tensors (tfx_bsl's TensorAdapter, as tf.Transform feeds its graph) of both."""
    assert not ours.equals(theirs)
    tensors = [tensor_adapter.TensorAdapter(tensor_adapter.TensorAdapterConfig(
        batch.schema, representations)).ToBatchTensors(batch) for batch in (ours, theirs)]
    assert tensors[0].keys() == tensors[1].keys() == representations.keys()
    for name, tensor in tensors[0].items():
        other = tensors[1][name]
        assert type(tensor) is type(other), name
        for mine, theirs_ in zip(tf.nest.flatten(tensor, expand_composites=True),
                                 tf.nest.flatten(other, expand_composites=True)):
            np.testing.assert_array_equal(mine.numpy(), theirs_.numpy(), err_msg=name)


def test_a_value_of_the_wrong_type_is_an_error_naming_the_feature():
    with pytest.raises(tf.errors.InvalidArgumentError, match="Key: i,.*Data types don't match"):
        _parser(_SCHEMA).decode([_example(i=[b"seven"])])


def test_without_a_schema_it_is_tfx_bsls_decoder():
    examples = [_example(i=[1], s=[b"x"]), _example(f=[2.0])]
    parser = _parser(None)
    assert parser._parse is None  # pylint: disable=protected-access
    assert parser.decode(examples).equals(_decoded(None, examples))


def test_a_column_tf_cannot_parse_as_one_list_takes_tfx_bsls_decoder():
    assert parse_spec(pa.schema([("x", pa.large_list(pa.struct([("y", pa.int64())])))])) is None
    assert parse_spec(pa.schema([("i", pa.large_list(pa.int64()))])) is not None
