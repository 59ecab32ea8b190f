"""The batched ExampleGen against TFX's CsvExampleGen: both real executors on the same CSV files."""
import collections
import csv
import glob
import hashlib
import os
import tracemalloc

import apache_beam as beam
from apache_beam.testing import util as beam_util
import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import arrow_example_gen
from tests.conftest import EXECUTOR_BEAM_ARGS, write_csv

# 7 buckets: modulo 5 (the pipeline's 4 + 1) or 3, the sha256 is its bytes' sum (256 = 1 mod 5 and 3),
# so a split that got the bytes' order wrong would still agree.
HASH_SPLITS = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
    example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=5),
    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=2)]))
ONE_INPUT = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split",
                                                                      pattern="*")])


def run(executor_class, input_base, output_uri, input_config=ONE_INPUT, output_config=HASH_SPLITS):
    """The executor's Do, with the exec properties FileBasedExampleGen's driver hands it."""
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    executor_class(executor_class.Context(beam_pipeline_args=list(EXECUTOR_BEAM_ARGS))).Do(
        {}, {"examples": [examples]}, {
            "input_base": input_base,
            "input_config": proto_utils.proto_to_json(input_config),
            "output_config": proto_utils.proto_to_json(output_config),
            "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
            "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP})
    return examples


def records(examples, split):
    """The split's serialized tf.Examples, file by file, in the written order."""
    return [record for path in sorted(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*")))
            for record in tf.data.TFRecordDataset(path, "GZIP").as_numpy_iterator()]


def canonical(examples, split):
    """The split's examples as a multiset, each in protobuf's deterministic serialization."""
    return collections.Counter(tf.train.Example.FromString(r).SerializeToString(deterministic=True)
                               for r in records(examples, split))


def edge_case_rows():
    """Cells whose type inference or encoding differs between Python and a vectorized reader."""
    ints = ["1", "-2", "+3", " 4", "1_000", "007", "", "-9223372036854775808", "12345678901234"]
    floats = ["1.5", "2", "1e3", "nan", "-inf", ".5", "5.", "", " 2.5", "1e39", "1e400", "-0.0",
              "0.1", "3.4028236e38"]
    texts = ["plain", "a,b", "line one\nline two", 'say "hi"', "café ñ", "  padded  ", "x" * 300, "",
             "١٢"]
    rows = []
    for i in range(60):
        rows.append({
            "Zeta": ints[i % len(ints)],  # names sort by their bytes: Zeta < alpha < été
            "alpha": floats[i % len(floats)],
            "été": texts[i % len(texts)],
            "mixed": ["7", "x", ""][i % 3],  # one text value makes the column STRING
            "too_big": ["9223372036854775807", "9223372036854775808"][i % 2],  # past int64: STRING
            "arabic_digits": ["1", "١"][i % 2],  # int('١') is 1, but CsvExampleGen parses bytes
            "empty": "",  # no value anywhere: a feature with no type
            "negative": str(-i * 977),  # ten-byte varints
            "row": str(i),
        })
    return list(rows[0]), rows


@pytest.fixture
def taxi_data(tmp_path, taxi_rows):
    """1,200 taxi rows in two files, ten rows twice (a duplicate row goes to the same split)."""
    fieldnames, rows = taxi_rows
    write_csv(str(tmp_path / "taxi" / "a.csv"), fieldnames, rows[:700])
    write_csv(str(tmp_path / "taxi" / "b.csv"), fieldnames, rows[700:1200] + rows[:10])
    return str(tmp_path / "taxi")


@pytest.fixture
def edge_data(tmp_path):
    path = write_csv(str(tmp_path / "edge" / "cells.csv"), *edge_case_rows())
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n")  # a blank line: skipped
    return str(tmp_path / "edge")


@pytest.mark.parametrize("data, shards", [("taxi_data", 3), ("edge_data", 1)])
def test_same_examples_in_the_same_splits_as_csv_example_gen(request, tmp_path, monkeypatch, data,
                                                            shards):
    input_base = request.getfixturevalue(data)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(input_base, "*")))
    monkeypatch.setattr(arrow_example_gen, "SHARD_INPUT_BYTES", size // shards + 1)
    ours = run(arrow_example_gen.Executor, input_base, str(tmp_path / "arrow"))
    theirs = run(csv_executor.Executor, input_base, str(tmp_path / "csv"))
    for split in ("train", "eval"):
        assert canonical(ours, split) == canonical(theirs, split), split
        assert len(glob.glob(os.path.join(ours.uri, f"Split-{split}", f"*-of-{shards:05d}.gz"))) == shards
    assert min(len(records(ours, "eval")), len(records(ours, "train"))) > 0
    # What resolvers and downstream components read: split names, payload and file format.
    assert ours.split_names == theirs.split_names == '["train", "eval"]'
    assert ours.mlmd_artifact.custom_properties == theirs.mlmd_artifact.custom_properties


def test_rows_are_written_canonically_in_a_mixed_reproducible_order(tmp_path, taxi_rows):
    """A table sorted by time is not written in time order (training shuffles only within a buffer);
    the order is that of the rows' sha256, so a re-run writes the same bytes."""
    fieldnames, rows = taxi_rows
    rows = sorted(rows[:1000], key=lambda r: int(r["trip_start_timestamp"]))
    write_csv(str(tmp_path / "data" / "sorted.csv"), fieldnames, rows)
    first = run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "first"))
    written = records(first, "train")
    assert written == [tf.train.Example.FromString(r).SerializeToString(deterministic=True)
                       for r in written]
    assert written == sorted(written, key=lambda r: hashlib.sha256(r).digest())
    times = [tf.train.Example.FromString(r).features.feature["trip_start_timestamp"].int64_list.value[0]
             for r in written]
    assert sum(a < b for a, b in zip(times, times[1:])) < 0.6 * len(times)  # sorted would be ~100%
    again = run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "again"))
    assert records(again, "train") == written and records(again, "eval") == records(first, "eval")


def test_tfx_s_own_per_row_split_of_the_records_agrees(tmp_path, taxi_data):
    """BaseExampleGenExecutor's per-record path: our PTransform's records, split by TFX's
    `_PartitionFn` one row at a time, land where the vectorized split put them."""
    ours = run(arrow_example_gen.Executor, taxi_data, str(tmp_path / "arrow"))
    with beam.Pipeline(argv=list(EXECUTOR_BEAM_ARGS)) as pipeline:
        splits = arrow_example_gen.Executor().GenerateExamplesByBeam(pipeline, {
            "input_base": taxi_data, "input_config": proto_utils.proto_to_json(ONE_INPUT),
            "output_config": proto_utils.proto_to_json(HASH_SPLITS)})
        for split, pcollection in splits.items():
            beam_util.assert_that(pcollection, beam_util.equal_to(records(ours, split)),
                                  label=f"Check[{split}]")


def test_input_splits_are_kept_as_they_are_without_hashing(tmp_path, taxi_rows):
    fieldnames, rows = taxi_rows
    write_csv(str(tmp_path / "data" / "train" / "part.csv"), fieldnames, rows[:300])
    write_csv(str(tmp_path / "data" / "eval" / "part.csv"), fieldnames, rows[300:400])
    splits = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="train/*"),
        example_gen_pb2.Input.Split(name="eval", pattern="eval/*")])
    ours, theirs = (run(executor, str(tmp_path / "data"), str(tmp_path / name), splits,
                        example_gen_pb2.Output())
                    for executor, name in ((arrow_example_gen.Executor, "arrow"),
                                           (csv_executor.Executor, "csv")))
    assert sum(canonical(ours, "train").values()) == 300
    for split in ("train", "eval"):
        assert canonical(ours, split) == canonical(theirs, split)


def test_a_split_no_row_hashes_into_is_written_empty(tmp_path, taxi_rows):
    fieldnames, rows = taxi_rows
    write_csv(str(tmp_path / "data" / "one.csv"), fieldnames, rows[:1])
    examples = run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "out"))
    assert all(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
               for split in ("train", "eval"))  # readers glob the split's files
    assert sorted(len(records(examples, split)) for split in ("train", "eval")) == [0, 1]


def _bad_file(tmp_path, taxi_rows, name="trips.csv"):
    fieldnames, rows = taxi_rows
    return write_csv(str(tmp_path / "data" / name), fieldnames, rows[:20])


def test_a_row_with_too_few_fields_names_the_file_and_the_row(tmp_path, taxi_rows):
    path = _bad_file(tmp_path, taxi_rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write('1,"2,3\n')
    with pytest.raises(arrow_example_gen.CsvReadError,
                       match=rf"{path} has a row with 2 fields where the header has 18 .*'1,\"2,3'. "
                             "Fix the row"):
        run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "out"))


def test_bytes_that_are_not_utf8_name_the_file_and_the_column(tmp_path, taxi_rows):
    path = _bad_file(tmp_path, taxi_rows)
    with open(path, encoding="utf-8") as f:
        content = f.read().encode()
    with open(path, "wb") as f:  # a company name in Latin-1
        f.write(content.replace(b"Taxi Affiliation Services", b"Taxi Affiliation Servic\xe9s", 1))
    with pytest.raises(arrow_example_gen.CsvReadError,
                       match=rf"{path} is not UTF-8 text \(column 'company'\). Re-save it as UTF-8"):
        run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "out"))


def test_files_with_different_headers_are_named(tmp_path, taxi_rows):
    first = _bad_file(tmp_path, taxi_rows, "a.csv")
    with open(first, encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    with open(tmp_path / "data" / "b.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header[1:] + header[:1]] + [r[1:] + r[:1] for r in rows])
    with pytest.raises(arrow_example_gen.CsvReadError,
                       match=rf"{tmp_path / 'data' / 'b.csv'} and {first} have different header rows"):
        run(arrow_example_gen.Executor, str(tmp_path / "data"), str(tmp_path / "out"))


def _traced_run(input_base, output_uri):
    """The run's examples, the most Python memory it held at once beyond what it left allocated
    (e.g. modules it imported), and the bytes of the examples it wrote."""
    tracemalloc.start()
    try:
        examples = run(arrow_example_gen.Executor, input_base, output_uri)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = sum(len(r) for split in ("train", "eval") for r in records(examples, split))
    return examples, peak - kept, written


def test_memory_does_not_grow_with_the_rows(tmp_path, taxi_rows, monkeypatch):
    """Beam's local runners hold a shuffle's whole input in memory; ExampleGen's rows go through
    spill files and only their paths through the shuffle, so it holds a block and a shard at a time,
    whatever the number of rows."""
    fieldnames, rows = taxi_rows
    monkeypatch.setattr(arrow_example_gen, "BLOCK_BYTES", 256 << 10)
    write_csv(str(tmp_path / "small" / "a.csv"), fieldnames, rows)
    monkeypatch.setattr(arrow_example_gen, "SHARD_INPUT_BYTES", os.path.getsize(
        tmp_path / "small" / "a.csv") // 4 + 1)
    for name in ("a", "b", "c"):
        write_csv(str(tmp_path / "large" / f"{name}.csv"), fieldnames, rows)
    _, small_peak, small_written = _traced_run(str(tmp_path / "small"), str(tmp_path / "s"))
    examples, large_peak, large_written = _traced_run(str(tmp_path / "large"), str(tmp_path / "l"))
    assert sum(len(records(examples, split)) for split in ("train", "eval")) == 3 * len(rows)
    # Holding the rows would add more than the added rows' bytes.
    assert large_peak - small_peak < (large_written - small_written) / 4, (
        small_peak, large_peak, small_written, large_written)
    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train"]  # spill files removed
