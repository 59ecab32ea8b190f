"""Continuous training on span-versioned data: the taxi sample split by time into two spans.

Run 1 sees only span-1 and pushes version 1. Span-2 (the newer trips) arrives: run 2 reads span 2
only, and the drift check compares it with span 1. Once the drift is accepted, the new model is
evaluated against run 1's blessed model on span 2, passes the gate and is pushed as version 2. A third
run (one train step, a two-span window) fails the gate and pushes nothing.
"""
import json
import os

import pytest

from pipeline.run_summary import open_store, summarize
from tests.conftest import run_cli, write_csv

pytestmark = pytest.mark.slow

PIPELINE_NAME = "taxi_big_tipper"


def _span(summary):
    (examples,) = summary.component("CsvExampleGen").outputs["examples"]
    return examples.custom_properties["span"].int_value


def _input_ids(metadata_path, summary, component, key):
    """Artifact ids a component of the run read under `key` (from MLMD events)."""
    store = open_store(metadata_path)
    context = store.get_context_by_type_and_name("pipeline_run", summary.run_id)
    for execution in store.get_executions_by_context(context.id):
        if execution.type.endswith(component):
            return sorted(e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                          if e.type == e.INPUT and e.path.steps[0].key == key)
    raise LookupError(component)


def _record(out, summary):
    with open(os.path.join(out, "runs", summary.run_id.replace(":", "-") + ".json"),
              encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def spans_root(tmp_path_factory, taxi_rows):
    """Older half of the trips as span-1, newer half as span-2 (every 5th row, to stay fast)."""
    fieldnames, rows = taxi_rows
    by_time = sorted(rows, key=lambda r: int(r["trip_start_timestamp"]))
    half = len(by_time) // 2
    root = tmp_path_factory.mktemp("ct")
    staged = {1: by_time[:half][::5], 2: by_time[half:][::5]}
    return root, fieldnames, staged


@pytest.fixture(scope="module")
def runs(spans_root):
    root, fieldnames, staged = spans_root
    data, out, serving = root / "data", root / "out", root / "serving"
    args = ["--data-root", str(data), "--output-dir", str(out), "--serving-dir", str(serving),
            "--train-steps", "300", "--eval-steps", "10"]
    push_dir = serving / "big_tipper"
    metadata = str(out / "metadata.sqlite")
    result = {"args": args, "out": str(out), "metadata": metadata, "push_dir": push_dir}

    write_csv(str(data / "span-1" / "trips.csv"), fieldnames, staged[1])
    result["first"] = run_cli(*args)
    result["first_summary"] = summarize(metadata, PIPELINE_NAME)
    result["versions_first"] = sorted(os.listdir(push_dir)) if push_dir.exists() else []

    write_csv(str(data / "span-2" / "trips.csv"), fieldnames, staged[2])
    result["second"] = run_cli(*args)
    result["second_summary"] = summarize(metadata, PIPELINE_NAME)
    result["accepted"] = run_cli(*args, "--accept-drift")
    result["accepted_summary"] = summarize(metadata, PIPELINE_NAME)
    result["versions_accepted"] = sorted(os.listdir(push_dir))
    # The schedule's next run, without the flag and before span 3 arrives.
    result["rerun"] = run_cli(*args)
    result["rerun_summary"] = summarize(metadata, PIPELINE_NAME)
    result["versions_rerun"] = sorted(os.listdir(push_dir))  # before any test runs the pipeline
    return result


def test_first_run_trains_on_span_1_and_pushes_version_1(runs):
    assert runs["first"].returncode == 0, runs["first"].stdout + runs["first"].stderr
    assert "(span 1, the newest)" in runs["first"].stdout
    summary = runs["first_summary"]
    assert _span(summary) == 1 and summary.blessed is True
    assert len(runs["versions_first"]) == 1
    record = _record(runs["out"], summary)
    assert record["data"]["span"] == "1" and record["data"]["training_spans"] == [1]
    assert record["pushed_this_run"] is True


def test_new_span_is_read_alone_and_its_drift_from_span_1_stops_the_run(runs):
    """The newer trips record far fewer zero-mile trips (35% -> 19%), a real change in the source:
    the drift check stops the run for a person to look, naming the column."""
    second = runs["second"]
    assert second.returncode == 2, second.stdout + second.stderr
    assert "(span 2, the newest)" in second.stdout
    assert "drifted from the previous run's data" in second.stderr
    assert "column 'trip_miles'" in second.stderr
    summary = runs["second_summary"]
    assert _span(summary) == 2
    assert not {c.name for c in summary.components} & {"Transform", "Trainer", "Pusher"}


def test_accepted_span_2_is_evaluated_against_run_1s_model_blessed_and_pushed(runs):
    accepted = runs["accepted"]
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    summary = runs["accepted_summary"]
    assert _span(summary) == 2
    record = _record(runs["out"], summary)
    assert record["data"]["span"] == "2" and record["data"]["training_spans"] == [2]
    # The baseline is run 1's blessed model.
    (first_model,) = runs["first_summary"].component("Trainer").outputs["model"]
    assert _input_ids(runs["metadata"], summary, "Evaluator", "baseline_model") == [first_model.id]
    # Trained on the newer trips it is evaluated on, the new model clears the floor and beats run 1's
    # model there (AUC 0.887 vs 0.875 here): blessed, and pushed as version 2 beside version 1.
    assert summary.blessed is True and not summary.blessing_failures, summary.blessing_failures
    assert record["pushed_this_run"] is True
    assert len(runs["versions_accepted"]) == 2
    assert runs["versions_accepted"][0] == runs["versions_first"][0]
    assert record["pushed_path"].endswith(runs["versions_accepted"][1])


def test_a_scheduled_rerun_of_the_accepted_span_does_not_stop_or_push_again(runs):
    rerun = runs["rerun"]
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    states = {c.name: c.state for c in runs["rerun_summary"].components}
    assert states["DriftCheck"] == "ran"  # no previous statistics now: the span was trained on
    assert all(states[name] == "cached" for name in ("CsvExampleGen", "Transform", "Trainer",
                                                     "Evaluator", "Pusher")), states
    assert runs["versions_rerun"] == runs["versions_accepted"]


def test_a_weak_model_on_a_two_span_window_is_not_pushed(runs):
    result = run_cli(*runs["args"], "--span-window", "2", "--train-steps", "1",
                     "--max-epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training on the newest 2 spans ingested" in result.stdout
    summary = summarize(runs["metadata"], PIPELINE_NAME)
    record = _record(runs["out"], summary)
    assert record["data"]["span"] == "2" and record["data"]["training_spans"] == [1, 2]
    assert summary.blessed is False and "Model not blessed" in result.stdout
    assert record["pushed_this_run"] is False
    assert sorted(os.listdir(runs["push_dir"])) == runs["versions_accepted"]
