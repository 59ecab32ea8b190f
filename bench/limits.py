"""What the machine can do for each Beam component's work, with the same libraries and no Beam: the
yardstick bench/scale.py divides each component's time by.

    .venv/bin/python -m bench.limits --data-root DIR --output-dir RUN_OUTPUT_DIR

Run on the files and the output directory of a finished pipeline run (bench/scale.py does, in the same
run). Prints {component: seconds} as JSON; each time includes loading what the component loads.

- CsvExampleGen: pyarrow reads the CSV files, tfx_bsl's RecordBatchToExamplesEncoder makes the
  tf.Examples, TensorFlow's TFRecordWriter writes them gzipped.
- StatisticsGen: TFDV's statistics of those RecordBatches, in memory (one pass over all rows, where
  StatisticsGen makes one per split); and "StatisticsGen (reading its input)": the same per split on
  the run's own tf.Examples, read and decoded as its source does, the part the first leaves out.
- Transform: the run's transform graph applied to every example the run ingested, parsing included;
  not its analyzers' pass over the train split, which tf.Transform runs in Beam only.
  "Transform (analysis pass and writing)": also the analysis pass's reading, parsing and graph over
  the train split (the transform graph standing in for the graph up to the analyzers; their
  combining left out), and every transformed example encoded by tfx_bsl and written gzipped, as
  Transform writes its output.
- Evaluator: the run's model's serving signature on as many eval examples as the Evaluator scored
  (at most --max-eval-examples, components/capped_evaluator.py). "Evaluator (sampling, labels,
  slices and metrics)": also every eval example read once (as a sample fixed by the rows' content
  must), the labels from the model's transform_features, the slices' values, and TFMA's metric
  computations of the run's eval config on each slice's rows, handed over as one block
  (`evaluation_whole`).
- Trainer, two limits for as many steps as its epochs took (from its training record):
  "Trainer (tf.data read)": a pure tf.data read of the transformed training records (gzipped
  TFRecords, batched, parsed with the transformed feature spec), at the rate it reaches over up to
  TRAINER_READ_ROWS of them: the input's limit, without the model;
  "Trainer (model from memory)": the Trainer's own model, compiled as the Trainer compiles it, fed
  TRAINER_MEMORY_STEPS batches of the Trainer's own input_fn from memory (cached after a first pass,
  which also traces the step), at the rate it reaches on them: the model's own work, without the
  input. The Trainer's time over the larger of the two is what its input pipeline, validation,
  saving and start-up add.
"""
import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.spec import HISTORY_FILE  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.run_summary import open_store  # noqa: E402

BATCH_ROWS = 1000
TRAINER_READ_ROWS = 500_000
STATISTICS_READ_ROWS = 4096
TRAINER_MEMORY_STEPS = 1000


def as_lists(table: pa.Table) -> pa.RecordBatch:
    """One value per cell as the encoder wants it: a list (empty for an empty cell) of int64, float32
    or bytes, like CsvExampleGen's features."""
    columns = []
    for column in table.columns:
        column = column.combine_chunks()
        if pa.types.is_integer(column.type):
            values = column.cast(pa.int64())
        elif pa.types.is_floating(column.type):
            values = column.cast(pa.float32())
        else:
            values = column.cast(pa.string()).cast(pa.binary())
        offsets = np.zeros(len(values) + 1, np.int32)
        np.cumsum(values.is_valid().to_numpy(zero_copy_only=False), out=offsets[1:])
        columns.append(pa.ListArray.from_arrays(pa.array(offsets), values.drop_null()))
    return pa.RecordBatch.from_arrays(columns, table.column_names)


def ingestion(data_root: str) -> Tuple[float, List[pa.RecordBatch]]:
    """Seconds, and the RecordBatches read (the statistics limit reads the same)."""
    from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel

    started = time.perf_counter()
    encoder = example_coder.RecordBatchToExamplesEncoder()
    batches = []
    with tempfile.TemporaryDirectory() as out:
        with tf.io.TFRecordWriter(os.path.join(out, "examples.gz"), "GZIP") as writer:
            for path in sorted(glob.glob(os.path.join(data_root, "*"))):
                batch = as_lists(pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
                    strings_can_be_null=True)))
                batches.append(batch)
                for record in encoder.encode(batch):
                    writer.write(record)
    return time.perf_counter() - started, batches


def statistics(batches: List[pa.RecordBatch]) -> float:
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl  # TFDV's in-memory, Beam-free path

    started = time.perf_counter()
    table = pa.Table.from_batches(batches).combine_chunks()
    stats_impl.generate_statistics_in_memory(table.to_batches()[0], tfdv.StatsOptions())
    return time.perf_counter() - started


def statistics_reading(examples_uri: str, schema_path: str) -> float:
    """StatisticsGen's work with its input: each split's gzipped tf.Examples read in blocks, decoded to
    RecordBatches by tfx_bsl's decoder (as its TFXIO source does), and TFDV's in-memory statistics."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    started = time.perf_counter()
    # With the schema every batch decodes to the same columns and types, as they must to be joined.
    decoder = example_coder.ExamplesToRecordBatchDecoder(
        tfdv.load_schema_text(schema_path).SerializeToString())
    for split in ("train", "eval"):
        batches = [decoder.DecodeBatch(list(records)) for records in
                   _examples(examples_uri, (split,)).rebatch(STATISTICS_READ_ROWS).as_numpy_iterator()]
        table = pa.Table.from_batches(batches).combine_chunks()
        stats_impl.generate_statistics_in_memory(table.to_batches()[0], tfdv.StatsOptions())
    return time.perf_counter() - started


def _latest(store, type_name: str, example_gen_only: bool = False, transformed: bool = False):
    """The newest artifact's URI: of ExampleGen's examples, or of Transform's (`transformed`)."""
    artifacts = [a for a in store.get_artifacts_by_type(type_name)
                 if not example_gen_only or "input_fingerprint" in a.custom_properties]
    if transformed:
        artifacts = [a for a in artifacts if "input_fingerprint" not in a.custom_properties]
    return max(artifacts, key=lambda a: a.id).uri


def _examples(examples_uri: str, splits) -> tf.data.Dataset:
    files = [f for split in splits
             for f in sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))]
    return tf.data.TFRecordDataset(files, "GZIP").batch(BATCH_ROWS)


def _transform_fn(transform_graph_uri: str):
    """The run's transform graph on a batch of serialized examples, parsing included."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    output = tft.TFTransformOutput(transform_graph_uri)
    layer = output.transform_features_layer()
    spec = output.raw_feature_spec()

    @tf.function  # traced once, as tf.Transform runs the graph; eager calls cost ~10x here
    def apply(batch):
        return layer(tf.io.parse_example(batch, spec))

    return apply


def transform(examples_uri: str, transform_graph_uri: str) -> float:
    started = time.perf_counter()
    apply = _transform_fn(transform_graph_uri)
    for batch in _examples(examples_uri, ("train", "eval")):
        apply(batch)
    return time.perf_counter() - started


def _as_record_batch(outputs: Dict[str, tf.Tensor]) -> pa.RecordBatch:
    """Transform's dense outputs as one list per cell, as the tf.Example encoder wants them."""
    columns, names = [], []
    for name, tensor in sorted(outputs.items()):
        values = tensor.numpy()
        values = values.reshape(len(values), -1)
        flat = values.reshape(-1)
        if flat.dtype == object:
            flat = pa.array(flat, pa.binary())
        elif np.issubdtype(flat.dtype, np.integer):
            flat = pa.array(flat.astype(np.int64))
        else:
            flat = pa.array(flat.astype(np.float32))
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32))
        columns.append(pa.ListArray.from_arrays(offsets, flat))
        names.append(name)
    return pa.RecordBatch.from_arrays(columns, names)


def transform_whole(examples_uri: str, transform_graph_uri: str) -> float:
    """Transform's whole work but the analyzers' combining: the analysis pass's parsing and graph over
    the train split (the transform graph stands in for the graph up to the analyzers), then every
    example transformed, encoded as a tf.Example and written gzipped, as Transform writes them."""
    from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel

    started = time.perf_counter()
    apply = _transform_fn(transform_graph_uri)
    for batch in _examples(examples_uri, ("train",)):
        apply(batch)
    encoder = example_coder.RecordBatchToExamplesEncoder()
    with tempfile.TemporaryDirectory() as out:
        for split in ("train", "eval"):
            with tf.io.TFRecordWriter(os.path.join(out, f"{split}.gz"), "GZIP") as writer:
                for batch in _examples(examples_uri, (split,)):
                    for record in encoder.encode(_as_record_batch(apply(batch))):
                        writer.write(record)
    return time.perf_counter() - started


def evaluation(examples_uri: str, model_uri: str, rows: Optional[int]) -> float:
    """The signature on the first `rows` eval examples (None: all)."""
    from tfx.utils import path_utils  # pylint: disable=import-outside-toplevel

    started = time.perf_counter()
    signature = tf.saved_model.load(path_utils.serving_model_path(model_uri)).signatures[
        "serving_default"]
    batches = _examples(examples_uri, ("eval",))
    if rows is not None:
        batches = batches.unbatch().take(rows).batch(BATCH_ROWS)
    for batch in batches:
        signature(examples=batch)
    return time.perf_counter() - started


def evaluation_whole(examples_uri: str, model_uri: str, transform_graph_uri: str, rows: Optional[int],
                     config: PipelineConfig) -> Optional[float]:
    """The Evaluator's whole work, none of it in Beam: every eval example read once (a sample fixed
    by each row's content has to see them all), the model's serving signature and its
    transform_features (the label) on the first `rows` of them, their slices, and TFMA's metric
    computations of the run's eval config on each slice (the batched ones, handed each slice's
    rows as one block; then the derived metrics and plots). None when a metric is not batched."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft
    from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator
    from tensorflow_model_analysis.metrics import metric_specs
    from tfx.utils import path_utils

    from components import tfma_metrics
    from pipeline.evaluation import eval_config

    spec, tfma_config = config.spec, eval_config(config)
    # pylint: disable-next=protected-access
    combined, derived, *_ = metrics_plots_and_validations_evaluator._filter_and_separate_computations(
        metric_specs.to_computations(tfma_config.metrics_specs, eval_config=tfma_config))
    # pylint: disable-next=protected-access
    if not all(isinstance(c.combiner, tfma_metrics._BatchedCombiner) for c in combined):
        return None
    raw_spec = tft.TFTransformOutput(transform_graph_uri).raw_feature_spec()
    slice_spec = {column: tf.io.VarLenFeature(raw_spec[column].dtype) for column in spec.slices}

    started = time.perf_counter()
    for computation in combined:
        computation.combiner.setup()
    sample = []
    for batch in _examples(examples_uri, ("eval",)).as_numpy_iterator():
        if rows is None or len(sample) < rows:
            sample.extend(batch[:None if rows is None else rows - len(sample)])
    model = tf.saved_model.load(path_utils.serving_model_path(model_uri))
    serve, transform = (model.signatures[name] for name in ("serving_default", "transform_features"))
    columns = {"label": [], "prediction": [], **{column: [] for column in spec.slices}}
    for start in range(0, len(sample), BATCH_ROWS):
        batch = tf.constant(sample[start:start + BATCH_ROWS])
        columns["prediction"].append(serve(examples=batch)[spec.task.prediction_key].numpy())
        columns["label"].append(transform(examples=batch)[spec.transformed_label].numpy())
        for column, values in tf.io.parse_example(batch, slice_spec).items():
            # A row without the column slices as its type's zero: close enough for a yardstick.
            dense = tf.sparse.to_dense(values).numpy()
            columns[column].append(dense[:, 0] if dense.shape[1] else np.zeros(len(dense),
                                                                               dense.dtype))
    columns = {name: np.concatenate(parts).reshape(len(sample)) for name, parts in columns.items()}
    block = np.stack([columns["label"], columns["prediction"], np.ones(len(sample))], axis=1)
    slices = [np.ones(len(sample), bool)] + [columns[column] == value for column in spec.slices
                                             for value in np.unique(columns[column])]
    for rows_in_slice in slices:
        metrics = {}
        for computation in combined:
            accumulator = computation.combiner.create_accumulator()
            computation.combiner.add_input(accumulator, block[rows_in_slice])
            metrics.update(computation.combiner.extract_output(accumulator))
        for computation in derived:
            metrics.update(computation.result(metrics))
    return time.perf_counter() - started


def training_read(transformed_uri: str, transform_graph_uri: str, history: dict,
                  batch_size: int) -> float:
    """Seconds a pure tf.data read takes for the examples the Trainer's epochs went through."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    spec = tft.TFTransformOutput(transform_graph_uri).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(transformed_uri, "Split-train", "*")))
    dataset = (tf.data.TFRecordDataset(files, "GZIP").take(TRAINER_READ_ROWS).batch(batch_size)
               .map(lambda batch: tf.io.parse_example(batch, spec), tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    started, rows = time.perf_counter(), 0
    for batch in dataset:
        rows += int(tf.shape(next(iter(batch.values())))[0])
    per_row = (time.perf_counter() - started) / max(rows, 1)
    return per_row * history["epochs_run"] * history["steps_per_epoch"] * batch_size


def training_from_memory(transformed_uri: str, transform_graph_uri: str, history: dict,
                         spec) -> float:
    """Seconds the Trainer's model takes, fed from memory, for the steps the Trainer's epochs took."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    from models import trainer
    from models.model import build_model

    examples = standard_artifacts.Examples()
    examples.uri = transformed_uri
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)
    steps = min(TRAINER_MEMORY_STEPS, history["epochs_run"] * history["steps_per_epoch"])
    batches = trainer.input_fn(
        [os.path.join(transformed_uri, "Split-train", "*")], accessor,
        tft.TFTransformOutput(transform_graph_uri), spec, spec.training.batch_size,
    ).take(steps).cache()
    batches.reduce(np.int64(0), lambda count, _: count + 1)  # a whole pass fills the cache
    batches = batches.repeat()
    model = build_model(spec, steps_per_execution=trainer.STEPS_PER_EXECUTION)
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)  # traces
    started = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    per_step = (time.perf_counter() - started) / steps
    return per_step * history["epochs_run"] * history["steps_per_epoch"]


def _evaluated_rows(store) -> Optional[int]:
    """How many eval examples the latest Evaluator scored, if it recorded it."""
    evaluations = store.get_artifacts_by_type("ModelEvaluation")
    if not evaluations:
        return None
    recorded = max(evaluations, key=lambda a: a.id).custom_properties.get("evaluated_examples")
    return recorded.int_value if recorded is not None else None


def measure(data_root: str, output_dir: str) -> Dict[str, float]:
    store = open_store(PipelineConfig(output_dir=output_dir).metadata_path)
    examples = _latest(store, "Examples", example_gen_only=True)
    limits = {}
    limits["CsvExampleGen"], batches = ingestion(data_root)
    limits["StatisticsGen"] = statistics(batches)
    limits["StatisticsGen (reading its input)"] = statistics_reading(
        examples, PipelineConfig(output_dir=output_dir).schema_path)
    graph = _latest(store, "TransformGraph")
    limits["Transform"] = transform(examples, graph)
    limits["Transform (analysis pass and writing)"] = transform_whole(examples, graph)
    model, evaluated = _latest(store, "Model"), _evaluated_rows(store)
    limits["Evaluator"] = evaluation(examples, model, evaluated)
    whole = evaluation_whole(examples, model, graph, evaluated, PipelineConfig(output_dir=output_dir))
    if whole is not None:
        limits["Evaluator (sampling, labels, slices and metrics)"] = whole
    history_path = os.path.join(_latest(store, "ModelRun"), HISTORY_FILE)
    if os.path.exists(history_path):
        with open(history_path, encoding="utf-8") as f:
            history = json.load(f)
        spec = PipelineConfig(output_dir=output_dir).run_spec
        transformed = _latest(store, "Examples", transformed=True)
        limits["Trainer (tf.data read)"] = training_read(transformed, graph, history,
                                                         spec.training.batch_size)
        limits["Trainer (model from memory)"] = training_from_memory(transformed, graph, history, spec)
    return {name: round(seconds, 2) for name, seconds in limits.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="the CSV files the run read")
    parser.add_argument("--output-dir", required=True, help="the run's --output-dir")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.data_root, args.output_dir)))


if __name__ == "__main__":
    main()
