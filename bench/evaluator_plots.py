"""What the run report's binary plots cost the Evaluator: TFX's Evaluator executor on a finished run's
artifacts, with the pipeline's eval config, without ConfusionMatrixPlot / CalibrationPlot, and with
fewer thresholds and buckets, alternating (back to back), REPEATS times each.

    flock /tmp/heavy.lock .venv/bin/python bench/evaluator_plots.py OUTPUT_DIR DATA_ROOT [REPEATS]

OUTPUT_DIR holds a finished run of the default spec (`python -m pipeline run --output-dir ...`); the
latest run's Evaluator inputs are read from its metadata store. Prints each time and output size.
"""
import json
import os
import shutil
import sys
import tempfile
import time

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts

from pipeline import beam_tuning
from pipeline.config import PipelineConfig
from pipeline.evaluation import metric_class
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import artifacts_of, open_store, summarize

PLOTS = {"ConfusionMatrixPlot", "CalibrationPlot"}
FEWER = {"ConfusionMatrixPlot": {"num_thresholds": 100}, "CalibrationPlot": {"num_buckets": 100}}


def _inputs(config: PipelineConfig) -> dict:
    store = open_store(config.metadata_path)
    summary = summarize(config.metadata_path, config.pipeline_name)
    execution = store.get_executions_by_id([summary.component("Evaluator").execution_id])[0]
    inputs = {}
    for key, artifacts in artifacts_of(store, execution, (metadata_store_pb2.Event.INPUT,)).items():
        types = store.get_artifact_types_by_id([a.type_id for a in artifacts])
        inputs[key] = [artifact_utils.deserialize_artifact(t, a) for t, a in zip(types, artifacts)]
    return inputs


def _name(metric: dict) -> str:
    return metric_class(json_format.ParseDict(metric, tfma.MetricConfig()))


def _variants(exec_properties: dict) -> dict:
    config = json.loads(exec_properties["eval_config"])
    without, fewer = json.loads(json.dumps(config)), json.loads(json.dumps(config))
    for spec in without["metrics_specs"]:
        spec["metrics"] = [m for m in spec["metrics"] if _name(m) not in PLOTS]
    for spec in fewer["metrics_specs"]:
        for metric in spec["metrics"]:
            if _name(metric) in FEWER:
                metric["config"] = json.dumps({**json.loads(metric.get("config") or "{}"),
                                               **FEWER[_name(metric)]})
    return {"with plots": exec_properties,
            "without plots": {**exec_properties, "eval_config": json.dumps(without)},
            "fewer thresholds": {**exec_properties, "eval_config": json.dumps(fewer)}}


def main(output_dir: str, data_root: str, repeats: int) -> None:
    beam_tuning.install()
    config = PipelineConfig(data_root=data_root, output_dir=output_dir)
    evaluator = next(c for c in create_pipeline(config).components if c.id == "Evaluator")
    inputs, variants = _inputs(config), _variants(dict(evaluator.exec_properties))
    times = {name: [] for name in variants}
    work = tempfile.mkdtemp(prefix="evaluator_plots_")
    for i in range(repeats):
        for name, exec_properties in variants.items():
            target = os.path.join(work, f"{name.replace(' ', '_')}_{i}")
            evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
            evaluation.uri, blessing.uri = target + "/evaluation", target + "/blessing"
            os.makedirs(evaluation.uri)
            os.makedirs(blessing.uri)
            executor = evaluator_executor.Executor(BaseBeamExecutor.Context(
                beam_pipeline_args=list(config.beam_args), tmp_dir=target + "/tmp"))
            started = time.perf_counter()
            executor.Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]}, exec_properties)
            times[name].append(time.perf_counter() - started)
            size = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, files in os.walk(evaluation.uri) for f in files)
            print(f"{name}: {times[name][-1]:.1f} s, evaluation {size / 1024:.0f} KB", flush=True)
    shutil.rmtree(work)
    print(json.dumps(times))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
