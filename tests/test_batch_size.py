"""`beam_batch_size` reaches the sources of TFX's real StatisticsGen, Transform and Evaluator executors:
the RecordBatches each one reads, counted by tfx_bsl's own telemetry, hold that many rows."""
import json
import os

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics.metric import MetricsFilter
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.transform import executor as transform_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils
from tfx_bsl.tfxio import tf_example_record

from components import arrow_example_gen, batch_size, capped_evaluator
from models.spec import SPEC_KEY, TRANSFORM_KEYS
from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config
from pipeline.pipeline import PREPROCESSING_FN, create_pipeline
from tests.conftest import EXECUTOR_BEAM_ARGS, TAXI_SPEC, write_csv
from tests.test_arrow_example_gen import ONE_INPUT, records, run
from tests.test_capped_evaluator import PIPELINE_SPLITS, taxi_schema_artifact

ROWS = 300  # per batch, in these tests: well under the 1,500 rows, and above tfx_bsl's adaptive 1..1,000


@pytest.fixture(scope="module")
def examples(tmp_path_factory, taxi_rows):
    """ExampleGen's artifact of 1,500 taxi rows, one file per split."""
    fieldnames, rows = taxi_rows
    root = tmp_path_factory.mktemp("batch_size")
    write_csv(str(root / "data" / "taxi.csv"), fieldnames, rows[:1500])
    return run(arrow_example_gen.Executor, str(root / "data"), str(root / "examples"), ONE_INPUT,
               PIPELINE_SPLITS)


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    """The taxi spec's curated schema as a Schema artifact."""
    return taxi_schema_artifact(str(tmp_path_factory.mktemp("schema")))


def recording(executor):
    """The executor, keeping each Beam pipeline it runs (`executor.pipelines`), for its metrics."""
    executor.pipelines, make = [], executor._make_beam_pipeline  # pylint: disable=protected-access

    def make_and_keep():
        executor.pipelines.append(make())
        return executor.pipelines[-1]

    executor._make_beam_pipeline = make_and_keep  # pylint: disable=protected-access
    return executor


def batch_rows(executor):
    """{source: (RecordBatches, largest, rows)} of the pipelines the executor ran: tfx_bsl's
    `num_rows` distribution, updated by every TFXIO source for each RecordBatch it makes."""
    found = {}
    for pipeline in executor.pipelines:
        for result in pipeline.result.metrics().query(MetricsFilter())["distributions"]:
            if result.key.metric.name.endswith("num_rows"):
                found[result.key.step] = (result.committed.count, result.committed.max,
                                          result.committed.sum)
    return found


def make(executor_class, tmp_path):
    return recording(executor_class(executor_class.Context(
        beam_pipeline_args=list(EXECUTOR_BEAM_ARGS), tmp_dir=str(tmp_path / "tmp"), unique_id="1")))


def assert_batches_of(found, rows_per_batch, sources):
    """Each of `sources` (a part of the source's step name) made RecordBatches of the size."""
    assert all(any(source in step for step in found) for source in sources), found
    for batches, largest, rows in found.values():
        # Full batches but for the last: as few batches as the rows allow.
        assert largest == rows_per_batch and batches == -(-rows // rows_per_batch), found


def test_the_setting_reaches_the_three_components():
    components = {c.id: c for c in create_pipeline(PipelineConfig(beam_batch_size=123)).components}
    assert components["StatisticsGen"].exec_properties[batch_size.BATCH_SIZE_KEY] == 123
    assert json.loads(components["Transform"].exec_properties["custom_config"])[
        batch_size.BATCH_SIZE_KEY] == 123
    assert components["Evaluator"].exec_properties[batch_size.BATCH_SIZE_KEY] == 123
    assert isinstance(components["Transform"], batch_size.Transform)


def test_statistics_gen_reads_batches_of_the_size(examples, tmp_path):
    executor = make(batch_size.StatisticsGenExecutor, tmp_path)
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    executor.Do(
        {"examples": [examples]}, {"statistics": [statistics]},
        {"exclude_splits": "[]", batch_size.BATCH_SIZE_KEY: ROWS, batch_size.CODE_KEY: "x"})
    found = batch_rows(executor)
    assert_batches_of(found, ROWS, sources=("TFXIORead[train]", "TFXIORead[eval]"))
    assert sum(rows for _, _, rows in found.values()) == 1500
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel

    train = tfdv.load_stats_binary(str(tmp_path / "statistics" / "Split-train" / "FeatureStats.pb"))
    assert train.datasets[0].num_examples == max(rows for _, _, rows in found.values())


def _transform(executor, examples, schema, out):
    """Runs the Transform executor as the pipeline does, into `out`."""
    outputs = {}
    for key, artifact_class in (("transform_graph", standard_artifacts.TransformGraph),
                                ("transformed_examples", standard_artifacts.Examples),
                                ("updated_analyzer_cache", standard_artifacts.TransformCache)):
        outputs[key] = [artifact_class()]
        outputs[key][0].uri = str(out / key)
    custom_config = {SPEC_KEY: TAXI_SPEC.to_json(TRANSFORM_KEYS), batch_size.BATCH_SIZE_KEY: ROWS}
    executor.Do(
        {"examples": [examples], "schema": [schema]}, outputs,
        {"preprocessing_fn": PREPROCESSING_FN, "custom_config": json.dumps(custom_config),
         "disable_statistics": 1, "force_tf_compat_v1": 1})
    return out / "transformed_examples"


@pytest.fixture(scope="module")
def transformed(examples, schema, tmp_path_factory):
    """(the executor, its transformed examples) of the pipeline's Transform executor."""
    out = tmp_path_factory.mktemp("transform")
    executor = make(batch_size.TransformExecutor, out)
    return executor, _transform(executor, examples, schema, out)


@pytest.mark.slow  # ~20 s each: a real Transform, a real TFMA evaluation
def test_transform_analyzes_and_transforms_batches_of_the_size(transformed):
    executor, _ = transformed
    # The analyzers read train; the transform pass reads train and eval.
    assert_batches_of(batch_rows(executor), ROWS,
                      sources=("AnalysisIndex0", "TransformIndex0", "TransformIndex1"))


def _examples_by_file(split_dir):
    """{file name: its tf.Examples, in order} (parsed: a serialized example's features are a map,
    written in its RecordBatch's column order, which two Transform runs need not share)."""
    return {name: [tf.train.Example.FromString(r) for r in
                   tf.data.TFRecordDataset(str(split_dir / name), "GZIP").as_numpy_iterator()]
            for name in sorted(os.listdir(split_dir))}


@pytest.mark.slow
def test_transform_writes_batches_as_tfxs_own_writing_writes_examples(
        transformed, examples, schema, tmp_path):
    """The transformed examples, written a batch per Beam element: the same files, holding the same
    examples in the same order, as TFX's executor writes with one element per example (its reading
    in the same blocks)."""
    _, ours = transformed
    with batch_size.tfxio_batch_size(ROWS):
        theirs = _transform(make(transform_executor.Executor, tmp_path), examples, schema, tmp_path)
    for split in ("Split-train", "Split-eval"):
        written = _examples_by_file(ours / split)
        assert written == _examples_by_file(theirs / split)
        assert sum(map(len, written.values())) > 100, written.keys()


@pytest.mark.slow  # ~20 s each: a real Transform, a real TFMA evaluation
def test_the_evaluator_reads_batches_of_the_size(examples, saved_model_dir, tmp_path):
    executor = make(capped_evaluator.Executor, tmp_path)
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    os.makedirs(model.uri)
    os.symlink(saved_model_dir, os.path.join(model.uri, "Format-Serving"))
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    config = eval_config(PipelineConfig(output_dir=str(tmp_path / "out")))
    executor.Do(
        {"examples": [examples], "model": [model]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(config), "example_splits": "null",
         "max_examples": 0, batch_size.BATCH_SIZE_KEY: ROWS // 10, "code_sha256": "x"})
    assert_batches_of(batch_rows(executor), ROWS // 10, sources=("ReadFromTFRecordToArrow[eval]",))


def _write(path, records, compression):
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create(records) | beam.io.WriteToTFRecord(
            path, coder=beam.coders.BytesCoder(), num_shards=1, shard_name_template="",
            compression_type=compression))


_READ = []  # the RecordBatches _read's pipeline made (Beam's in-process runner: this process)


def _keep(batch):
    _READ.append(batch)


def _read(file_pattern, schema_path, rows=0, decode_only=None):
    """The RecordBatches a tf.Example source (with the schema at `schema_path`, or none) makes of
    the files, within tfxio_batch_size(rows, decode_only)."""
    schema = tfdv.load_schema_text(schema_path) if schema_path else None
    tfxio = tf_example_record.TFExampleRecord(file_pattern=file_pattern, schema=schema,
                                              raw_record_column_name="raw")
    del _READ[:]
    with batch_size.tfxio_batch_size(rows, decode_only), beam.Pipeline() as pipeline:
        _ = pipeline | tfxio.BeamSource() | beam.Map(_keep)
    return list(_READ)


def _rows(batches):
    """Every row of the batches, by its raw record: a multiset the batching and file order leave. A
    row without values as [], where tfx_bsl's decoder may say null (components/example_parser.py)."""
    return sorted(json.dumps({key: [] if value is None else value for key, value in row.items()},
                             sort_keys=True, default=repr)
                  for batch in batches for row in pa.Table.from_batches([batch]).to_pylist())


def test_a_source_reads_each_file_in_blocks_of_the_size(examples, tmp_path):
    """Blocks of ROWS records from each file in turn, gzipped or not, decoded as tfx_bsl decodes
    records one at a time: the same rows, each with its raw record."""
    train = records(examples, "train")
    _write(str(tmp_path / "a.gz"), train[:500], CompressionTypes.GZIP)
    _write(str(tmp_path / "b"), train[500:750], CompressionTypes.UNCOMPRESSED)
    pattern = [str(tmp_path / "*")]
    blocks = _read(pattern, TAXI_SPEC.schema_path, ROWS)
    assert sorted(b.num_rows for b in blocks) == [200, 250, ROWS]  # 500 = 300 + 200; 250
    records_alone = _read(pattern, TAXI_SPEC.schema_path)  # tfx_bsl's own, one record at a time
    assert _rows(blocks) == _rows(records_alone) and len(_rows(blocks)) == 750


def test_a_source_without_a_schema_decodes_only_the_features_asked_for(examples):
    """The Evaluator's source (no schema of its own): only `decode_only`'s features, each row's
    values as tfx_bsl's schemaless decoder reads them, and its raw record; a source with a schema
    decodes its own."""
    pattern = [os.path.join(examples.uri, "Split-eval", "*")]
    asked = schema_pb2.Schema(feature=[f for f in tfdv.load_schema_text(TAXI_SPEC.schema_path).feature
                                       if f.name in ("payment_type", "trip_start_hour")])
    only = _read(pattern, None, ROWS, decode_only=asked)
    everything = _read(pattern, None, ROWS)
    assert all(set(b.schema.names) == {"payment_type", "trip_start_hour", "raw"} for b in only)
    assert len(everything[0].schema.names) > 10
    names = only[0].schema.names
    assert _rows(only) == _rows(pa.Table.from_batches(everything).select(names).to_batches())
    assert len(_rows(only)) > 200
    with_schema = _read(pattern, TAXI_SPEC.schema_path, ROWS, decode_only=asked)
    assert set(with_schema[0].schema.names) == set(everything[0].schema.names)


def test_files_compressed_otherwise_take_tfx_bsls_source(examples, tmp_path):
    _write(str(tmp_path / "a.bz2"), records(examples, "eval")[:50], CompressionTypes.BZIP2)
    assert sum(b.num_rows for b in _read([str(tmp_path / "*")], TAXI_SPEC.schema_path, ROWS)) == 50


def test_no_matching_file_is_an_error_naming_the_pattern(tmp_path):
    with pytest.raises(IOError, match="nothing"):
        _read([str(tmp_path / "nothing*")], TAXI_SPEC.schema_path, ROWS)


def test_zero_leaves_tfx_bsl_batching_adaptive():
    from tfx_bsl.coders import batch_util  # pylint: disable=import-outside-toplevel

    adaptive = batch_util.GetBatchElementsKwargs(None)
    with batch_size.tfxio_batch_size(0):
        assert batch_util.GetBatchElementsKwargs(None) == adaptive
    with batch_size.tfxio_batch_size(ROWS):
        assert batch_util.GetBatchElementsKwargs(None) == {"min_batch_size": ROWS,
                                                           "max_batch_size": ROWS}
        assert batch_util.GetBatchElementsKwargs(1)["max_batch_size"] == 1  # an explicit size stays
    assert batch_util.GetBatchElementsKwargs(None) == adaptive
