"""Re-runs one component's executor of a finished pipeline run, alone, timed (and profiled).

    .venv/bin/python -m bench.rerun_executor --output-dir RUN --node Transform [--executor MODULE:CLASS]
        [--set key=json ...] [--input KEY=NODE:OUTPUT ...] [--profile N] [--out DIR]

Reads the node's last execution from the run's ML Metadata (its input artifacts and exec
properties), runs the executor (the recorded one, or --executor) in-process (a Beam one on Beam's
in_memory DirectRunner, with the project's Beam speed fixes as every pipeline run has them,
pipeline/beam_tuning.py) into fresh output artifacts under --out, and prints the seconds as JSON.
--set overrides an exec property (a JSON value); --input adds an input (another node's output in
the same run); --drop-output leaves an output out (as the
component does when that output is disabled); --profile N prints the N slowest functions by
cumulative time.
The README's batch-size figures (section "Scale") ran TFX's own executors
(--executor tfx.components.statistics_gen.executor:Executor, ...transform.executor:Executor) with
--tfxio-batch 0 (tfx_bsl's adaptive default), 4096, 8192 and bytes.
"""
import argparse
import cProfile
import importlib
import json
import os
import pstats
import shutil
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ml_metadata.proto import metadata_store_pb2  # noqa: E402
from tfx.dsl.components.base import base_beam_executor  # noqa: E402
from tfx.types import artifact_utils, standard_artifacts  # noqa: E402,F401  (registers the types)

from pipeline import beam_tuning  # noqa: E402
from pipeline.config import DEFAULT_BEAM_ARGS, with_worker_setup  # noqa: E402
from pipeline.run_summary import latest_run_id, open_store  # noqa: E402

EXECUTORS = {  # node id -> the executor the pipeline runs
    "StatisticsGen": "components.batch_size:StatisticsGenExecutor",
    "Transform": "components.batch_size:TransformExecutor",
    "Evaluator": "components.capped_evaluator:Executor",
    "Trainer": "components.trainer:Executor",
}


def _value(value: metadata_store_pb2.Value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def recorded(output_dir: str, node: str):
    """(input artifacts, output artifact types, exec properties) of the node's latest execution."""
    store = open_store(os.path.join(output_dir, "metadata.sqlite"))
    pipeline_name = next(c.name for c in store.get_contexts()
                         if store.get_context_types_by_id([c.type_id])[0].name == "pipeline")
    run = store.get_context_by_type_and_name("pipeline_run", latest_run_id(store, pipeline_name))
    execution = next(
        e for e in store.get_executions_by_context(run.id)
        if any(c.name.endswith("." + node) for c in store.get_contexts_by_execution(e.id)))
    inputs, outputs = {}, {}
    for event in store.get_events_by_execution_ids([execution.id]):
        artifact = store.get_artifacts_by_id([event.artifact_id])[0]
        artifact_type = store.get_artifact_types_by_id([artifact.type_id])[0]
        key = event.path.steps[0].key
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs.setdefault(key, []).append(
                artifact_utils.deserialize_artifact(artifact_type, artifact))
        elif event.type == metadata_store_pb2.Event.OUTPUT:
            outputs[key] = (artifact_type, artifact)
    properties = {k: _value(v) for k, v in execution.custom_properties.items()
                  if not k.startswith("__")}
    return inputs, outputs, properties


def fresh_outputs(outputs, out_dir: str):
    fresh = {}
    for key, (artifact_type, artifact) in outputs.items():
        new = metadata_store_pb2.Artifact()
        new.CopyFrom(artifact)
        new.ClearField("id")
        new.uri = os.path.join(out_dir, key)
        os.makedirs(new.uri, exist_ok=True)
        fresh[key] = [artifact_utils.deserialize_artifact(artifact_type, new)]
    return fresh


def _force_tfxio_batch(size: str) -> None:
    """Measurement only: every TFXIO BeamSource batches `size` rows ('bytes': tfx_bsl's byte-size
    batching, 20 MiB or 8,192 rows)."""
    from tfx_bsl.coders import batch_util  # pylint: disable=import-outside-toplevel

    original = batch_util.GetBatchElementsKwargs
    if size == "0":
        return
    if size == "bytes":
        batch_util._UseByteSizeBatching = lambda: True  # pylint: disable=protected-access
    else:
        batch_util.GetBatchElementsKwargs = (
            lambda batch_size, *a, **k: original(batch_size or int(size), *a, **k))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--node", required=True, choices=sorted(EXECUTORS))
    parser.add_argument("--executor", help="MODULE:CLASS (default: the pipeline's)")
    parser.add_argument("--set", action="append", default=[], help="exec property key=JSON value")
    parser.add_argument("--input", action="append", default=[],
                        help="KEY=NODE:OUTPUT: also an input KEY, that node's OUTPUT in the same run "
                             "(an input the recorded run did not have)")
    parser.add_argument("--beam-arg", action="append", default=[])
    parser.add_argument("--tfxio-batch", default="",
                        help="for measuring only: every TFXIO source's batch size (N, or 'bytes')")
    parser.add_argument("--drop-output", action="append", default=[],
                        help="an output key the executor is not given (e.g. updated_analyzer_cache)")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--out", default="/tmp/rerun_executor")
    args = parser.parse_args(argv)
    beam_tuning.install()
    inputs, outputs, properties = recorded(args.output_dir, args.node)
    outputs = {key: value for key, value in outputs.items() if key not in args.drop_output}
    for item in args.input:
        key, source = item.split("=", 1)
        node, output = source.split(":")
        artifact_type, artifact = recorded(args.output_dir, node)[1][output]
        inputs[key] = [artifact_utils.deserialize_artifact(artifact_type, artifact)]
    for item in args.set:
        key, value = item.split("=", 1)
        properties[key] = json.loads(value)
    module, name = (args.executor or EXECUTORS[args.node]).split(":")
    executor_class = getattr(importlib.import_module(module), name)
    shutil.rmtree(args.out, ignore_errors=True)
    fresh = fresh_outputs(outputs, os.path.join(args.out, "outputs"))
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(with_worker_setup(list(DEFAULT_BEAM_ARGS) + args.beam_arg)),
        tmp_dir=os.path.join(args.out, "tmp"), unique_id="rerun")
    if args.tfxio_batch:
        _force_tfxio_batch(args.tfxio_batch)
    executor = executor_class(context)
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    executor.Do(inputs, fresh, properties)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
    print(json.dumps({"node": args.node, "seconds": round(seconds, 2), "set": args.set,
                      "beam_args": args.beam_arg, "out": args.out}))


if __name__ == "__main__":
    main()
