"""The portable exports' speed and size: SavedModel, TFLite and TF.js on one pushed version.

    .venv/bin/python bench/formats.py [SERVING_DIR] [--calls 500] [--batch 1000]

SERVING_DIR: where a pipeline run pushed (its newest version of the spec's model is measured); none:
the pipeline runs first (`python -m pipeline run` into a temporary directory, removed afterwards).
Each format answers the same taxi rows (the shipped sample, as serving_raw takes them, gaps as
missing-value markers) in its own runtime, as an application would call it:
- SavedModel: the `serving_raw` signature, in this process (TensorFlow);
- TFLite: the `serving_raw` signature runner of TensorFlow's `tf.lite.Interpreter` (with the Flex
  delegate for the Select TF ops the model keeps);
- TF.js: the graph model in Node with the pure-JS @tensorflow/tfjs (components/tfjs/bench.js, which
  calls it as the parity check before push does).
Per format: one-example latency (median and p95 of --calls calls, one row each, after --warmup calls),
batch throughput (rows/s calling --batch rows at once, repeatedly for --batch-seconds), and the files'
size. Prints a table; writes bench/results/formats.json.
"""
import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from components import edge_formats  # noqa: E402
from components.edge_export import TFJS_DIR, TFLITE_DIR, _size, columns_of  # noqa: E402
from components.serving_check import raw_input_spec, serving_requests  # noqa: E402
from models.raw_examples import column_types, to_tf_examples  # noqa: E402
from pipeline import serving_dir as serving  # noqa: E402
from pipeline.config import PipelineConfig, default_data_root  # noqa: E402

RESULTS = os.path.join(REPO, "bench", "results", "formats.json")
FORMATS = {"saved_model": "SavedModel (TensorFlow)", "tflite": "TFLite (interpreter)",
           "tfjs": "TF.js (Node)"}


def push_a_version(work_dir: str) -> str:
    """Runs the pipeline on the shipped sample into `work_dir`; returns the serving directory."""
    serving_root = os.path.join(work_dir, "serving_model")
    command = [sys.executable, "-m", "pipeline", "run", "--output-dir",
               os.path.join(work_dir, "pipeline_output"), "--serving-dir", serving_root]
    print(f"No serving directory given: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    return serving_root


def raw_columns(model, rows: int):
    """The first `rows` taxi rows of the sample as serving_raw's inputs (one array per column)."""
    spec = PipelineConfig().spec
    with open(os.path.join(default_data_root(), "data.csv"), newline="", encoding="utf-8") as f:
        sample = [row for _, row in zip(range(rows), csv.DictReader(f))]
    raw_spec = raw_input_spec(model)
    instances, _ = serving_requests(to_tf_examples(sample, column_types(spec.schema_path)), raw_spec)
    return columns_of(instances, raw_spec), raw_spec


def timed(call, inputs, warmup: int) -> list:
    """Milliseconds of each call(inputs[i]) after `warmup` untimed calls, cycling through `inputs`."""
    for i in range(warmup):
        call(inputs[i % len(inputs)])
    latencies = []
    for i in range(len(inputs)):
        started = time.perf_counter()
        call(inputs[i])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def throughput(call, batch, seconds: float, rows: int) -> float:
    """Rows/s calling the whole batch at once, repeatedly for `seconds` (at least 3 calls)."""
    call(batch)  # warm-up at this size
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        call(batch)
        calls += 1
    return calls * rows / (time.perf_counter() - started)


def measure_saved_model(model, columns, raw_spec, args):
    signature = model.signatures[edge_formats.SIGNATURE]

    def tensors(rows):
        return {n: tf.constant(v[rows], raw_spec[n].dtype) for n, v in columns.items()}

    def call(inputs):
        return {k: v.numpy() for k, v in signature(**inputs).items()}
    ones = [tensors(slice(i % args.batch, i % args.batch + 1)) for i in range(args.calls)]
    return timed(call, ones, args.warmup), throughput(call, tensors(slice(None)), args.batch_seconds,
                                                      args.batch)


def measure_tflite(path, columns, args):
    # One interpreter per input size: a runner called with another size re-allocates its tensors.
    one = tf.lite.Interpreter(model_path=path).get_signature_runner(edge_formats.SIGNATURE)
    many = tf.lite.Interpreter(model_path=path).get_signature_runner(edge_formats.SIGNATURE)
    ones = [{n: v[i % args.batch:i % args.batch + 1] for n, v in columns.items()}
            for i in range(args.calls)]
    return (timed(lambda inputs: one(**inputs), ones, args.warmup),
            throughput(lambda inputs: many(**inputs), columns, args.batch_seconds, args.batch))


def measure_tfjs(tfjs_dir, columns, raw_spec, args):
    edge_formats.require_node_packages()
    dtypes = {n: "string" if s.dtype == tf.string else "float32" if s.dtype.is_floating else "int32"
              for n, s in raw_spec.items()}
    # JSON has no NaN: a missing float is null, NaN again in predict.js's tensors().
    inputs = {n: [None if isinstance(v, float) and np.isnan(v) else v for v in values.tolist()]
              for n, values in columns.items()}
    request = {"dtypes": dtypes, "inputs": inputs, "warmup": args.warmup, "calls": args.calls,
               "batch_seconds": args.batch_seconds}
    done = subprocess.run(["node", os.path.join(edge_formats.TFJS_TOOLS, "bench.js"), tfjs_dir],
                          input=json.dumps(request), text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"TF.js in Node failed: {done.stderr.strip()[-2000:]}")
    answer = json.loads(done.stdout)
    return answer["latencies_ms"], answer["batch_calls"] * answer["batch_rows"] / answer["batch_seconds"]


def saved_model_bytes(version_dir: str) -> int:
    """The SavedModel's own files: the version directory without the exports beside it."""
    return sum(os.path.getsize(os.path.join(root, f))
               for root, dirs, files in os.walk(version_dir)
               for f in files if os.path.relpath(root, version_dir).split(os.sep)[0]
               not in (TFLITE_DIR, TFJS_DIR))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("serving_dir", nargs="?", default=None,
                        help="Default: run the pipeline into a temporary directory first.")
    parser.add_argument("--model-name", default=None, help="Default: the spec's label name.")
    parser.add_argument("--calls", type=int, default=500, help="timed one-example calls per format")
    parser.add_argument("--warmup", type=int, default=50, help="untimed one-example calls first")
    parser.add_argument("--batch", type=int, default=1000, help="rows per batch call")
    parser.add_argument("--batch-seconds", type=float, default=5.0,
                        help="how long each format's batch calls are repeated")
    args = parser.parse_args(argv)
    model_name = args.model_name or PipelineConfig().model_name
    work = None if args.serving_dir else tempfile.mkdtemp(prefix="bench_formats_")
    try:
        serving_root = os.path.abspath(args.serving_dir or push_a_version(work))
        versions = serving.versions(os.path.join(serving_root, model_name))
        if not versions:
            raise SystemExit(f"No pushed version of {model_name} in {serving_root}: run `make run` "
                             "first, or give no directory (the pipeline then runs first).")
        version_dir = os.path.join(serving_root, model_name, str(versions[-1]))
        tflite_path = os.path.join(version_dir, TFLITE_DIR, edge_formats.TFLITE_FILE)
        tfjs_dir = os.path.join(version_dir, TFJS_DIR)
        if not (os.path.isfile(tflite_path) and os.path.isdir(tfjs_dir)):
            raise SystemExit(f"{version_dir} has no TFLite and TF.js exports: it was pushed before "
                             "them; run the pipeline again (`make run`).")
        model = tf.saved_model.load(version_dir)
        columns, raw_spec = raw_columns(model, args.batch)
        measured = {"saved_model": measure_saved_model(model, columns, raw_spec, args),
                    "tflite": measure_tflite(tflite_path, columns, args),
                    "tfjs": measure_tfjs(tfjs_dir, columns, raw_spec, args)}
        sizes = {"saved_model": saved_model_bytes(version_dir), "tflite": _size(tflite_path),
                 "tfjs": _size(tfjs_dir)}
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)

    results = {"version_dir": version_dir, "rows_per_batch": args.batch, "calls": args.calls,
               "warmup": args.warmup, "cpu_count": os.cpu_count(), "machine": platform.processor()
               or platform.machine(), "formats": {}}
    table = Table(title=f"{model_name} version {versions[-1]}: one example, and batches of "
                        f"{args.batch:,} rows ({os.cpu_count()} cores)")
    for column in ("format", "size", "one example: median", "p95", f"batch of {args.batch:,}"):
        table.add_column(column, justify="left" if column == "format" else "right")
    for name, (latencies, rows_per_s) in measured.items():
        figures = {"size_bytes": sizes[name], "one_example_ms_median": float(np.median(latencies)),
                   "one_example_ms_p95": float(np.percentile(latencies, 95)),
                   "batch_rows_per_s": rows_per_s}
        results["formats"][name] = figures
        table.add_row(FORMATS[name], f"{sizes[name] / 1024:,.0f} KiB",
                      f"{figures['one_example_ms_median']:.2f} ms",
                      f"{figures['one_example_ms_p95']:.2f} ms", f"{rows_per_s:,.0f} rows/s")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    Console().print(table)
    print(f"Wrote {RESULTS}")


if __name__ == "__main__":
    main()
