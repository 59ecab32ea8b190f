"""What a run report shows, gathered from the run summary, ML Metadata and the run's artifacts.

The numbers the terminal shows come from the RunSummary (pipeline/run_summary.py) and are formatted as
the terminal formats them (pipeline/summary_view.py); this module adds what only a page can show:
TFDV's statistics and drift, TFMA's baseline, differences and plots, the lineage, the history.
"""
import datetime
import glob
import json
import os
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from pipeline import summary_view
from pipeline.report import figures
from pipeline.run_summary import RunSummary, artifacts_of

# Top values shown for a categorical column; the statistics keep more.
TOP_VALUES = 8
_MISSING = "-"


def _utc(ms: Optional[int]) -> str:
    if not ms:
        return _MISSING
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _read(uri: str, mode: str = "rb"):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (URIs may be gs://)

    with tf.io.gfile.GFile(uri, mode) as f:
        return f.read()


def _statistics(artifact, split: str):
    """The split's DatasetFeatureStatistics (StatisticsGen writes a binary list per split)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=import-outside-toplevel

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(_read(os.path.join(artifact.uri, f"Split-{split}", "FeatureStats.pb")))
    return stats.datasets[0]


def _schema(artifact):
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel

    return text_format.Parse(_read(os.path.join(artifact.uri, "schema.pbtxt"), "r"), schema_pb2.Schema())


def _constraint(feature) -> str:
    """The curated schema's rule for a column, in words."""
    parts = []
    if feature.HasField("int_domain"):
        parts.append(f"range [{feature.int_domain.min}, {feature.int_domain.max}]")
    if feature.HasField("float_domain"):
        parts.append(f"range [{feature.float_domain.min:g}, {feature.float_domain.max:g}]")
    if feature.HasField("domain"):
        parts.append(f"values of domain '{feature.domain}'")
    if feature.HasField("string_domain"):
        parts.append(f"{len(feature.string_domain.value)} known values")
    if feature.distribution_constraints.HasField("min_domain_mass"):
        parts.append(f"≥ {feature.distribution_constraints.min_domain_mass:.0%} known")
    if feature.presence.min_fraction >= 1.0 and feature.value_count.min >= 1:
        parts.append("required")
    elif feature.presence.min_fraction >= 1.0:
        parts.append("column required, may be empty")
    return ", ".join(parts) or "type only"


def _seen(stats) -> str:
    if stats.HasField("num_stats"):
        return f"[{stats.num_stats.min:g}, {stats.num_stats.max:g}], mean {stats.num_stats.mean:.4g}"
    if stats.HasField("string_stats"):
        return f"{stats.string_stats.unique} distinct values"
    return _MISSING


def _missing_share(common, examples: int) -> float:
    """Rows without a value. An empty CSV cell is a present feature with no values, not a missing
    one, in the statistics: with at most one value per row, rows with a value are the values."""
    with_value = common.tot_num_values if common.max_num_values <= 1 else common.num_non_missing
    return 1.0 - with_value / examples if examples else 0.0


def _figure_of(stats) -> Optional[str]:
    if stats.HasField("num_stats"):
        histogram = next((h for h in stats.num_stats.histograms if h.type == h.STANDARD), None)
        if histogram and histogram.buckets:
            edges = [b.low_value for b in histogram.buckets] + [histogram.buckets[-1].high_value]
            return figures.histogram(edges, [b.sample_count for b in histogram.buckets])
    if stats.HasField("string_stats") and stats.string_stats.top_values:
        values = [(v.value, v.frequency) for v in stats.string_stats.top_values[:TOP_VALUES]]
        return figures.top_values(values)
    return None


def _anomalies(artifact, splits) -> Dict[str, List[str]]:
    """Column -> what ExampleValidator found wrong, per split."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=import-outside-toplevel

    found: Dict[str, List[str]] = {}
    for split in splits:
        path = os.path.join(artifact.uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(_read(path))
        for column, info in sorted(anomalies.anomaly_info.items()):
            details = "; ".join(r.description for r in info.reason) or info.description
            found.setdefault(column, []).append(f"[{split}] {info.short_description}: {details}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            found.setdefault("(whole dataset)", []).append(f"[{split}] {info.description}")
    return found


def _drift(schema, current, previous) -> List[dict]:
    """Each compared column: the comparator, the measured distance, the threshold (TFDV, as the
    DriftCheck component measures it)."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=import-outside-toplevel

    def as_list(dataset):
        return statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset])
    anomalies = tfdv.validate_statistics(as_list(current), schema,
                                         previous_statistics=as_list(previous))
    rows = []
    for info in anomalies.drift_skew_info:
        for m in info.drift_measurements:
            rows.append({"column": ".".join(info.path.step),
                         "comparator": {m.L_INFTY: "L-infinity distance",
                                        m.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence",
                                        m.NORMALIZED_ABSOLUTE_DIFFERENCE: "normalized abs. difference",
                                        }.get(m.type, str(m.type)),
                         "value": m.value, "threshold": m.threshold,
                         "drifted": m.value > m.threshold})
    return sorted(rows, key=lambda r: r["column"])


def _inputs(store, component) -> Dict[str, list]:
    execution = store.get_executions_by_id([component.execution_id])[0]
    return artifacts_of(store, execution, (metadata_store_pb2.Event.INPUT,))


def data_section(store, summary: RunSummary, spec) -> Optional[dict]:
    statistics_gen = summary.component("StatisticsGen")
    if not statistics_gen or not statistics_gen.outputs.get("statistics"):
        return None
    statistics = statistics_gen.outputs["statistics"][0]
    splits = json.loads(statistics.properties["split_names"].string_value)
    by_split = {split: _statistics(statistics, split) for split in splits}
    schema_gen = summary.component("ImportCuratedSchema")
    schema = _schema(schema_gen.outputs["schema"][0]) if schema_gen and schema_gen.outputs else None
    rules = {f.name: f for f in schema.feature} if schema else {}
    train = by_split.get("train") or next(iter(by_split.values()))
    used = set(spec.serving_columns)
    columns = []
    for stats in sorted(train.features, key=lambda f: ".".join(f.path.step) or f.name):
        name = ".".join(stats.path.step) or stats.name
        common = (stats.num_stats.common_stats if stats.HasField("num_stats")
                  else stats.string_stats.common_stats)
        columns.append({
            "name": name, "type": stats.Type.Name(stats.type).lower(),
            "use": ("label" if name in spec.label_source_columns else "feature" if name in used
                    else "not used"),
            "missing": _missing_share(common, train.num_examples),
            "seen": _seen(stats), "figure": _figure_of(stats),
            "constraint": _constraint(rules[name]) if name in rules else "not in the schema"})
    validator = summary.component("ExampleValidator")
    anomalies = (_anomalies(validator.outputs["anomalies"][0], splits)
                 if validator and validator.outputs.get("anomalies") else {})
    drift_check = summary.component("DriftCheck")
    previous = _inputs(store, drift_check).get("previous_statistics") if drift_check else None
    drift = None
    if previous and schema is not None:
        drift = {"previous_uri": previous[0].uri,
                 "rows": _drift(schema, by_split["train"], _statistics(previous[0], "train"))}
    return {"rows": {split: s.num_examples for split, s in by_split.items()}, "columns": columns,
            "anomalies": anomalies, "drift": drift, "drift_checked": drift_check is not None}


def _exists(uri: str) -> bool:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (URIs may be gs://)

    return tf.io.gfile.exists(uri)


def missing_artifacts(summary: RunSummary) -> List[dict]:
    """The run's artifacts ML Metadata names but whose files are gone (deleted or moved); not the
    outputs a failed component never finished writing (pending or abandoned)."""
    unfinished = (metadata_store_pb2.Artifact.PENDING, metadata_store_pb2.Artifact.ABANDONED)
    return [{"component": c.name, "key": key, "id": a.id, "uri": a.uri}
            for c in summary.components for key, artifacts in sorted(c.outputs.items())
            for a in artifacts if a.uri and a.state not in unfinished and not _exists(a.uri)]


def _output_uri(summary: RunSummary, component: str, key: str) -> Optional[str]:
    run = summary.component(component)
    artifacts = run.outputs.get(key) if run else None
    return artifacts[0].uri if artifacts else None


def _require(uri: Optional[str], what: str) -> None:
    if uri and not _exists(uri):
        raise FileNotFoundError(f"{what} is missing from disk: {uri}")


def training_section(summary: RunSummary) -> Optional[dict]:
    _require(_output_uri(summary, "Trainer", "model_run"), "The Trainer's record (model_run)")
    if not summary.training:
        return None
    return {"line": summary_view.training_line(summary.training),
            "curves": figures.curves(summary.training.get("history", {}),
                                     summary.training.get("best_epoch"))}


def _tfma_results(evaluation_uri: str) -> tuple:
    """(baseline metrics: slice -> metric -> value, plots of the overall slice: model -> plot data)
    from TFMA's results; metrics through its DataFrame, plots from its protos (converting only the
    overall slice's: all slices' cost seconds)."""
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel

    frame = tfma.dataframe.metrics_as_dataframes(tfma.load_metrics(evaluation_uri)).double_value
    keys, slices = frame["metric_keys"], frame["slices"]
    is_diff = keys["is_diff"].astype(bool)
    # With a baseline TFMA names both models, and only the candidate has differences.
    candidate = keys["model_name"][is_diff].iloc[0] if is_diff.any() else None
    baseline: Dict[str, Dict[str, float]] = {}
    for index in frame.index[(~is_diff) & (keys["model_name"] != candidate)] if candidate else []:
        named = [(column, slices.loc[index, column]) for column in slices.columns
                 if column != "Overall" and slices.loc[index, column] == slices.loc[index, column]]
        name = ", ".join(f"{k}={_slice_value(v)}" for k, v in named) or "Overall"
        baseline.setdefault(name, {})[keys.loc[index, "name"]] = float(
            frame["metric_values"].loc[index, "double_value"])
    plots: Dict[str, dict] = {}
    for plot in tfma.load_plots(evaluation_uri):
        if not plot.slice_key.single_slice_keys:
            for item in plot.plot_keys_and_values:
                role = "baseline" if candidate and item.key.model_name != candidate else "candidate"
                plots.setdefault(role, {}).update(json_format.MessageToDict(item.value))
    return baseline, plots


def _slice_value(value) -> str:
    # TFMA's DataFrame holds numeric slice values as floats (19.0); the summary names them as ints.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# Bins of the regression figures on the whole eval split, each with about the same examples.
PREDICTION_BINS = 20


def prediction_buckets(buckets: List[dict]) -> List[dict]:
    """Regression: TFMA's calibration histogram (pipeline/evaluation.py asks for fine buckets of
    the prediction over the label's range) merged into consecutive bins of about equal examples,
    each with its prediction range, examples, mean label and mean prediction. The first and last
    buckets also hold the predictions below and above the range."""
    filled = [b for b in buckets if b.get("numWeightedExamples")]
    total = sum(b["numWeightedExamples"] for b in filled)
    rows: List[dict] = []
    merged = None
    for b in filled:
        if merged is None:
            merged = {"low": float(b.get("lowerThresholdInclusive", "-Infinity")), "examples": 0.0,
                      "label": 0.0, "prediction": 0.0}
        merged["examples"] += b["numWeightedExamples"]
        merged["label"] += b.get("totalWeightedLabel", 0.0)
        merged["prediction"] += b.get("totalWeightedRefinedPrediction", 0.0)
        done = sum(r["examples"] for r in rows) + merged["examples"]
        if done >= total * (len(rows) + 1) / PREDICTION_BINS or b is filled[-1]:
            rows.append({"low": merged["low"],
                         "high": float(b.get("upperThresholdExclusive", "Infinity")),
                         "examples": merged["examples"],
                         "mean_label": merged["label"] / merged["examples"],
                         "mean_prediction": merged["prediction"] / merged["examples"]})
            merged = None
    return rows


def _plots(plots: Dict[str, dict], spec) -> List[tuple]:
    """The task's figures from TFMA's plots on the overall slice, the baseline's beside the
    candidate's."""
    data, baseline = plots.get("candidate", {}), plots.get("baseline", {})
    out = []
    if "confusionMatrixAtThresholds" in data:
        out += figures.roc_and_pr(
            data["confusionMatrixAtThresholds"].get("matrices", []),
            baseline.get("confusionMatrixAtThresholds", {}).get("matrices"))
    if "calibrationHistogramBuckets" in data and spec.task.task != "regression":
        out.append(("Calibration", figures.calibration(
            data["calibrationHistogramBuckets"].get("buckets", []),
            baseline.get("calibrationHistogramBuckets", {}).get("buckets"))))
    if "multiClassConfusionMatrixAtThresholds" in data:
        classes = list(spec.task.classes)
        counts = [[0.0] * len(classes) for _ in classes]
        matrix = data["multiClassConfusionMatrixAtThresholds"]["matrices"][0]
        for entry in matrix.get("entries", []):
            actual, predicted = entry.get("actualClassId", 0), entry.get("predictedClassId", 0)
            if 0 <= actual < len(classes) and 0 <= predicted < len(classes):
                counts[actual][predicted] += entry.get("numWeightedExamples", 0.0)
        out.append(("Confusion matrix", figures.confusion_matrix(classes, counts)))
    return out


def evaluation_section(summary: RunSummary, spec, gate) -> Optional[dict]:
    uri = _output_uri(summary, "Evaluator", "evaluation")
    _require(uri, "The Evaluator's TFMA results")
    if not summary.metrics or not uri:
        return None
    columns = summary_view.metric_columns(summary)
    slices = sorted(summary.metrics, key=summary_view.slice_order)
    table = [[name] + [summary_view.format_value(summary.metrics[name].get(key), pattern)
                       for key, _, pattern in columns] for name in slices]
    baseline_metrics, tfma_plots = _tfma_results(uri)
    baseline = baseline_metrics.get("Overall", {})
    gated = spec.task.gated_metric
    overall = summary.metrics.get("Overall", {})
    comparison = []
    for key, label, pattern in columns:
        if key == "example_count":
            continue
        verdict = "not gated"
        if key == gated.name:
            failed = any(f.startswith(f"{key} ") for f in summary.blessing_failures)
            verdict = "fails the gate" if failed else "passes the gate"
        comparison.append({"metric": label, "key": key,
                           "candidate": summary_view.format_value(overall.get(key), pattern),
                           "baseline": summary_view.format_value(baseline.get(key), pattern),
                           "difference": summary_view.format_value(overall.get(f"{key}_diff"),
                                                                   "{:+.4f}"),
                           "verdict": verdict})
    plots, buckets = _plots(tfma_plots, spec), []
    if spec.task.task == "regression":
        buckets = prediction_buckets(tfma_plots.get("candidate", {}).get(
            "calibrationHistogramBuckets", {}).get("buckets", []))
        if buckets:
            plots += figures.predicted_vs_actual_buckets(buckets)
        points = [(name, values["mean_label"], values["mean_prediction"], values.get("example_count", 0))
                  for name, values in ((n, summary.metrics[n]) for n in slices)
                  if "mean_label" in values and "mean_prediction" in values]
        if points:
            plots += figures.predicted_vs_actual(points)
    direction = "at least" if gated.higher_is_better else "at most"
    gate_text = (f"{gated.name} on the overall slice {direction} {gate.threshold:g}, and no worse than "
                 f"the baseline by more than {gate.max_regression:g}" if gate.threshold is not None else
                 f"{gated.name} no worse than the baseline by more than {gate.max_regression:g}")
    return {"headers": ["slice"] + [label for _, label, _ in columns], "table": table,
            "comparison": comparison, "has_baseline": bool(baseline), "plots": plots,
            "prediction_buckets": buckets,
            # Regression without TFMA's histogram: the label has no range in the curated schema.
            "no_label_range": spec.task.task == "regression" and not buckets,
            "gate": gate_text, "blessed": summary.blessed, "failures": summary.blessing_failures,
            "uri": uri, "small": overall.get("example_count", summary_view.SMALL_EVAL_SPLIT)
            < summary_view.SMALL_EVAL_SPLIT}


def _number(value, pattern: str) -> str:
    return _MISSING if value is None else pattern.format(float(value))


def serving_section(record: dict) -> dict:
    """The serving check's verdict and figures, and beside them the edge exports' parity (per
    format: largest difference from the SavedModel, its tolerance, the file's size, the worst row)."""
    check, edge = record.get("serving_check"), record.get("edge_export")
    out = {"check": None, "edge": None}
    if check:
        out["check"] = {"blessed": check.get("blessed") == 1, "reason": check.get("reason", ""),
                        "rows": [
                            ("examples", str(check.get("examples", _MISSING))),
                            ("max difference", _number(check.get("max_abs_diff"), "{:.3g}")),
                            ("tolerance", _number(check.get("tolerance"), "{:g}")),
                            ("p50 latency", _number(check.get("p50_latency_ms"), "{:.1f} ms")),
                            ("p99 latency", _number(check.get("p99_latency_ms"), "{:.1f} ms")),
                            ("p50 limit", _number(check.get("max_p50_latency_ms"), "{:g} ms"))]}
    if edge:
        formats = [{"name": {"tflite": "TFLite", "tfjs": "TF.js"}[name],
                    "max_diff": edge.get(f"{name}_max_diff", _MISSING),  # text: exact as recorded
                    "tolerance": _number(edge.get(f"{name}_tolerance"), "{:g}"),
                    "size": (f"{edge[f'{name}_bytes'] / 1024:,.0f} KB" if edge.get(f"{name}_bytes")
                             else _MISSING),
                    "worst_row": edge.get(f"{name}_worst_row") or _MISSING}
                   for name in ("tflite", "tfjs")]
        out["edge"] = {"blessed": edge.get("blessed") == 1, "reason": edge.get("reason", ""),
                       "skipped": str(edge.get("reason", "")).startswith("skipped"),
                       "rows": edge.get("rows", 0), "formats": formats,
                       "select_tf_ops": edge.get("tflite_select_tf_ops") or "none",
                       "seconds": _number(edge.get("seconds"), "{:.1f} s")}
    return out


def lineage_section(store, summary: RunSummary) -> List[dict]:
    """Each component's input and output artifacts (URIs), and which component made each input."""
    made_by = {a.id: c.name for c in summary.components for artifacts in c.outputs.values()
               for a in artifacts}
    rows = []
    for component in summary.components:
        inputs = _inputs(store, component) if component.execution_id else {}
        rows.append({
            "name": component.name, "state": component.state,
            "inputs": [{"key": key, "id": a.id, "uri": a.uri,
                        "from": made_by.get(a.id, "an earlier run")}
                       for key, artifacts in sorted(inputs.items()) for a in artifacts],
            "outputs": [{"key": key, "id": a.id, "uri": a.uri}
                        for key, artifacts in sorted(component.outputs.items()) for a in artifacts]})
    return rows


def history_section(records_dir: str, gated_metric: str, run_id: str,
                    started_ms: Optional[int]) -> List[dict]:
    """This run and the earlier ones on the same output directory, from their run records."""
    records = []
    for path in glob.glob(os.path.join(records_dir, "*.json")):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        when = record.get("started_ms") or int(os.path.getmtime(path) * 1000)
        if started_ms and when > started_ms and record.get("run_id") != run_id:
            continue  # a later run: the report of a past run shows that run's past only
        records.append((when, record))
    rows = []
    for when, record in sorted(records, key=lambda r: r[0], reverse=True):
        value = (record.get("metrics") or {}).get("Overall", {}).get(gated_metric)
        rows.append({"run_id": record.get("run_id", _MISSING), "started": _utc(when),
                     "metric": _MISSING if value is None else f"{value:.4f}",
                     "outcome": outcome(record)[1], "current": record.get("run_id") == run_id})
    return rows


def outcome(record: dict) -> tuple:
    """(kind, words) of how a run ended, from its record: pushed, unchanged, or what stopped it."""
    failed, error = record.get("failed_component"), record.get("error")
    check = record.get("serving_check") or {}
    if error and failed == "DataValidationGate":
        return "stopped", f"The data gate stopped the run (the data breaks the schema): {error}"
    if error and failed == "DriftCheck":
        return "stopped", f"The drift check stopped the run: {error}"
    if error:
        where = f"in {failed}" if failed else "before any component ran"
        return "failed", f"The run failed {where}: {error}"
    if record.get("blessed") is False:
        failures = "; ".join(record.get("blessing_failures") or []) or "no details recorded"
        return "stopped", f"The Evaluator's gate did not bless the model, nothing was pushed: {failures}"
    if check.get("blessed") == 0 and not str(check.get("reason", "")).startswith("skipped"):
        reason = check.get("reason") or "no reason recorded"
        return "stopped", f"The serving check blocked the push: {reason}"
    if record.get("pushed_this_run"):
        path = record["pushed_path"]
        return "pushed", f"Pushed version {os.path.basename(path)} to {path}"
    if record.get("pushed_path"):
        return "unchanged", f"Nothing changed, nothing new pushed; serving {record['pushed_path']}"
    return "stopped", "Nothing was pushed."


def gather(store, summary: Optional[RunSummary], record: dict, spec, gate, records_dir: str) -> dict:
    """Everything the page shows; `store` and `summary` are None for a run that never started."""
    kind, words = outcome(record)
    page = {"run_id": record.get("run_id", _MISSING), "started": _utc(record.get("started_ms")),
            "pipeline": spec.name, "task": spec.task.task, "label": spec.label.name,
            "gated_metric": spec.task.gated_metric.name,
            "outcome_kind": kind, "outcome": words,
            "data_read": {key: (record.get("data") or {}).get(key) for key in (
                "input_base", "span", "input_fingerprint", "training_spans")},
            "components": record.get("components") or [],
            "serving": serving_section(record),
            "history": history_section(records_dir, spec.task.gated_metric.name,
                                       record.get("run_id"), record.get("started_ms"))}
    page.update(missing=[], unreadable={})
    if summary is None:
        return page
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    page.update(missing=missing_artifacts(summary), lineage=lineage_section(store, summary))
    # What ML Metadata holds shows whatever the disk still has; a section whose files are gone says
    # which, and the others still render.
    for name, build in (("data", lambda: data_section(store, summary, spec)),
                        ("training", lambda: training_section(summary)),
                        ("evaluation", lambda: evaluation_section(summary, spec, gate))):
        try:
            page[name] = build()
        except (FileNotFoundError, tf.errors.NotFoundError) as e:
            page[name], page["unreadable"][name] = None, getattr(e, "message", None) or str(e)
    return page
