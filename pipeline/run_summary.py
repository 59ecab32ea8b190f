"""What a run did, read back from ML Metadata: each component's state and time, metrics, blessing, push."""
import dataclasses
import json
import os
from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

# <output_dir>/runs/: one JSON record per run (`RunSummary.to_record()` plus its config and error).
RUNS_DIR = "runs"
_STATES = {
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
}


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str
    seconds: float
    outputs: Dict[str, list] = dataclasses.field(default_factory=dict)
    execution_id: int = 0  # its MLMD execution, where the run report reads its inputs (lineage)


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: List[ComponentRun]
    started_ms: int = 0  # when the run's context was created, ms since the epoch
    # slice name ("Overall", "island=Dream", ...) -> metric name -> value
    metrics: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    blessed: Optional[bool] = None
    blessing_failures: List[str] = dataclasses.field(default_factory=list)
    pushed_path: Optional[str] = None
    # The serving check's verdict (blessed 1/0, reason) and figures; None if it did not run.
    serving_check: Optional[Dict[str, object]] = None
    # The TFLite / TF.js parity check's verdict and figures (components/edge_export.py), and the
    # pushed exports' files, relative to `pushed_path`.
    edge_export: Optional[Dict[str, object]] = None
    pushed_exports: List[str] = dataclasses.field(default_factory=list)
    # What the run read: ExampleGen's input directory, its content fingerprint and span, and the
    # spans Transform and Trainer trained on (more than one with a span window).
    data: Dict[str, object] = dataclasses.field(default_factory=dict)
    # The Trainer's record (models/trainer.py): examples, steps per epoch, epochs run, the best
    # epoch, per-epoch losses and metrics; None if no Trainer ran or cached.
    training: Optional[Dict[str, object]] = None
    # The Evaluator's examples: {"evaluated": n, "split_examples": m}, n < m when a sample was scored
    # (components/capped_evaluator.py); None if it did not record them.
    evaluation_examples: Optional[Dict[str, int]] = None

    def component(self, name: str) -> Optional[ComponentRun]:
        return next((c for c in self.components if c.name == name), None)

    def to_record(self) -> dict:
        """A JSON-ready record: statuses, durations, data, metrics, blessing, push."""
        return {
            "run_id": self.run_id,
            "started_ms": self.started_ms,
            "data": self.data,
            "training": self.training,
            "evaluation_examples": self.evaluation_examples,
            "components": [{"name": c.name, "state": c.state, "seconds": round(c.seconds, 3)}
                           for c in self.components],
            "metrics": self.metrics,
            "blessed": self.blessed,
            "blessing_failures": self.blessing_failures,
            "serving_check": self.serving_check,
            "edge_export": self.edge_export,
            "pushed_path": self.pushed_path,
            "pushed_exports": self.pushed_exports,
            "pushed_this_run": bool(self.pushed_path) and getattr(
                self.component("Pusher"), "state", None) == "ran",
        }


def open_store(metadata_path: str, read_only: bool = True) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = (metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
                                     if read_only else
                                     metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return mlmd.MetadataStore(config)


def _node_name(store, execution) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if store.get_context_types_by_id([context.type_id])[0].name == "node":
            return context.name.split(".", 1)[-1]
    if "component_id" in execution.properties:  # TFX's Airflow runner: no node context
        return execution.properties["component_id"].string_value
    return execution.type.rsplit(".", 1)[-1]


_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def artifacts_of(store, execution, event_types=_OUTPUT_EVENTS) -> Dict[str, list]:
    """The execution's artifacts by key: its outputs, or its inputs with Event.INPUT."""
    events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in event_types]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: Dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def _custom_properties(artifact) -> Dict[str, object]:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in artifact.custom_properties.items() if value.WhichOneof("value")}


def check_figures(blessing) -> Dict[str, object]:
    """A check's verdict and figures from its blessing's custom properties. ServingCheck stores its
    max_abs_diff as text (ML Metadata's SQLite store keeps 6 decimals of a double); stores written
    before hold a rounded double, read as it is."""
    figures = _custom_properties(blessing)
    if isinstance(figures.get("max_abs_diff"), str):
        figures["max_abs_diff"] = float(figures["max_abs_diff"])
    return figures


def run_ids(store, pipeline_name: str) -> List[str]:
    """Every run of the pipeline in the store, oldest first (other pipelines may share the store)."""
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return []
    try:
        run_type = store.get_context_type("pipeline_run")
    except mlmd.errors.NotFoundError:
        return []  # no LocalDagRunner run yet; e.g. a store only Airflow's (legacy) runner wrote
    runs = {}
    for execution in store.get_executions_by_context(pipeline_context.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.type_id == run_type.id:
                runs[context.name] = (context.create_time_since_epoch, context.id)
    return sorted(runs, key=runs.get)


def latest_run_id(store, pipeline_name: str) -> Optional[str]:
    ids = run_ids(store, pipeline_name)
    return ids[-1] if ids else None


def _slice_name(slice_key) -> str:
    return ", ".join(f"{k}={v}" for k, v in slice_key) or "Overall"


# AUC and PR-AUC rank a slice's positives above its negatives: a slice of one class has no pair to
# rank, and TFMA reports 0 for it, which reads as a model that orders every pair wrongly.
RANKING_METRICS = ("auc", "auc_precision_recall")


def _defined(values: Dict[str, float]) -> Dict[str, float]:
    """A slice's metrics without the ranking metrics when all its labels are one class."""
    if values.get("mean_label") in (0.0, 1.0):
        return {name: value for name, value in values.items() if name not in RANKING_METRICS}
    return values


def _load_evaluation(summary: RunSummary, evaluation_uri: str) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (the URI may be gs://)
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    if not tf.io.gfile.exists(evaluation_uri):
        return  # deleted since the run: what ML Metadata holds (the blessing) still reads
    result = tfma.load_eval_result(evaluation_uri)
    for slice_key, by_output in result.slicing_metrics:
        values = by_output.get("", {}).get("", {})
        summary.metrics[_slice_name(slice_key)] = _defined({
            name: float(value["doubleValue"]) for name, value in values.items()
            if "doubleValue" in value})
    validation = tfma.load_validation_result(evaluation_uri)
    for failure in validation.metric_validations_per_slice:
        slice_name = _slice_name(tfma.slicer.deserialize_slice_key(failure.slice_key))
        for f in failure.failures:
            what = f"{f.metric_key.name} change vs baseline" if f.metric_key.is_diff else f.metric_key.name
            summary.blessing_failures.append(
                f"{what} on {slice_name} = {f.metric_value.double_value.value:.4f} "
                f"fails {_threshold_text(f.metric_threshold)}")
    for reason in validation.missing_thresholds or []:
        summary.blessing_failures.append(f"missing threshold: {reason}")


def _threshold_text(threshold) -> str:
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold
        parts = []
        if bound.HasField("lower_bound"):
            parts.append(f">= {bound.lower_bound.value:g}")
        if bound.HasField("upper_bound"):
            parts.append(f"<= {bound.upper_bound.value:g}")
        return "the floor " + " and ".join(parts)
    if threshold.HasField("change_threshold"):
        return "the no-regression check against the baseline (the last blessed model)"
    return str(threshold)


def _data_read(store, examples) -> Dict[str, str]:
    """What ExampleGen read, from its output (which a cached run re-uses): input directory,
    fingerprint, span."""
    produced_by = min(e.execution_id for e in store.get_events_by_artifact_ids([examples.id])
                      if e.type == metadata_store_pb2.Event.OUTPUT)
    execution = store.get_executions_by_id([produced_by])[0]
    # The local runner keeps exec properties as custom properties, TFX's Airflow runner as properties.
    execution_props = (execution.custom_properties if "input_base" in execution.custom_properties
                       else execution.properties)
    return {"input_base": execution_props["input_base"].string_value,
            "input_fingerprint": examples.custom_properties["input_fingerprint"].string_value,
            "span": str(examples.custom_properties["span"].int_value)}


def _training_record(model_run_uri: str) -> Optional[Dict[str, object]]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (the URI may be gs://)

    from models.spec import HISTORY_FILE  # pylint: disable=import-outside-toplevel

    path = os.path.join(model_run_uri, HISTORY_FILE)
    if not tf.io.gfile.exists(path):  # a model trained before the record existed
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def unreadable_store_message(metadata_path: str, error: BaseException) -> str:
    """What to say when ML Metadata cannot open or query a store (damaged, or not a store)."""
    first_line = str(error).split(" query: ")[0].splitlines()[0] if str(error) else type(error).__name__
    return (f"Cannot read the metadata store at {metadata_path} ({first_line}): it is damaged or not "
            f"an ML Metadata SQLite file. Restore it from a copy, or pass another --output-dir.")


def _run_context(store, pipeline_name: str, run_id: str):
    """The run's context: the local runner's `pipeline_run`, or the `run` TFX's Airflow runner
    records (named `<pipeline>.<Airflow run id>`); None if there is neither."""
    return (store.get_context_by_type_and_name("pipeline_run", run_id)
            or store.get_context_by_type_and_name("run", f"{pipeline_name}.{run_id}"))


def summarize(metadata_path: str, pipeline_name: str, run_id: Optional[str] = None) -> RunSummary:
    """Reads the given (default: latest) run of `pipeline_name` from the MLMD store."""
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(
            f"No metadata store at {metadata_path}: has the pipeline run here? Run it first, or pass "
            f"the --output-dir of an earlier run.")
    store = open_store(metadata_path)
    run_id = run_id or latest_run_id(store, pipeline_name)
    context = _run_context(store, pipeline_name, run_id) if run_id else None
    if context is None:
        which = f" with id '{run_id}'" if run_id else ""
        raise LookupError(f"No run of pipeline '{pipeline_name}'{which} in {metadata_path}; "
                          f"`python -m pipeline runs` lists the runs it holds.")
    summary = RunSummary(run_id=run_id, components=[], started_ms=context.create_time_since_epoch)
    for execution in sorted(store.get_executions_by_context(context.id),
                            key=lambda e: (e.create_time_since_epoch, e.id)):
        summary.components.append(ComponentRun(
            name=_node_name(store, execution),
            state=_STATES.get(execution.last_known_state, "unknown"),
            seconds=(execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3,
            outputs=artifacts_of(store, execution), execution_id=execution.id))
        examples = summary.components[-1].outputs.get("examples", [])
        if examples and "input_fingerprint" in examples[0].custom_properties:  # ExampleGen
            summary.data.update(_data_read(store, examples[0]))
        if summary.components[-1].name == "Transform":
            examples = artifacts_of(store, execution, (metadata_store_pb2.Event.INPUT,)).get("examples", [])
            summary.data["training_spans"] = sorted(
                a.custom_properties["span"].int_value for a in examples if "span" in a.custom_properties)

    trainer = summary.component("Trainer")
    if trainer and trainer.outputs.get("model_run"):
        summary.training = _training_record(trainer.outputs["model_run"][0].uri)
    evaluator = summary.component("Evaluator")
    if evaluator and evaluator.outputs.get("evaluation"):
        evaluation = evaluator.outputs["evaluation"][0]
        _load_evaluation(summary, evaluation.uri)
        recorded = _custom_properties(evaluation)
        if {"evaluated_examples", "split_examples"} <= recorded.keys():
            summary.evaluation_examples = {"evaluated": recorded["evaluated_examples"],
                                           "split_examples": recorded["split_examples"]}
    if evaluator and evaluator.outputs.get("blessing"):
        blessing = evaluator.outputs["blessing"][0]
        summary.blessed = blessing.custom_properties["blessed"].int_value == 1
    serving_check = summary.component("ServingCheck")
    if serving_check and serving_check.outputs.get("blessing"):
        summary.serving_check = check_figures(serving_check.outputs["blessing"][0])
    edge_export = summary.component("EdgeExport")
    if edge_export and edge_export.outputs.get("parity_blessing"):
        summary.edge_export = _custom_properties(edge_export.outputs["parity_blessing"][0])
    pusher = summary.component("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0]
        if pushed.custom_properties["pushed"].int_value == 1:
            summary.pushed_path = pushed.custom_properties["pushed_destination"].string_value
            if summary.edge_export and summary.edge_export.get("files"):
                summary.pushed_exports = str(summary.edge_export["files"]).split(",")
    return summary
