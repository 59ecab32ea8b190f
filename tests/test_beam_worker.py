"""`--beam_plugins=pipeline.beam_worker` prepares Beam's worker processes before they run any bundle.

This module must not import the `pipeline` package at the top: workers import it to unpickle the DoFn,
and that import alone would set the variable the test looks for.
"""
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker import statecache

pytestmark = pytest.mark.slow  # two Beam pipelines with worker processes: ~17 s

PLUGIN_ARG = "--beam_plugins=pipeline.beam_worker"


class _WorkerState(beam.DoFn):
    def process(self, element):
        tuned = statecache.get_deep_size.__module__ == "pipeline.beam_tuning"
        yield f"{os.getpid()},{os.environ.get('TF_USE_LEGACY_KERAS')},{tuned}"


def _worker_state(extra_args, out):
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=1",
                               *extra_args])
    with beam.Pipeline(options=options) as p:
        _ = (p | beam.Create([0]) | beam.ParDo(_WorkerState())
             | beam.io.WriteToText(str(out), shard_name_template=""))
    pid, keras, tuned = out.read_text().strip().split(",")
    return int(pid), keras, tuned == "True"


def test_plugin_sets_keras_2_and_tuning_in_worker_processes(tmp_path, monkeypatch):
    from pipeline.config import BEAM_WORKER_PLUGIN  # pylint: disable=import-outside-toplevel

    assert PLUGIN_ARG == f"--beam_plugins={BEAM_WORKER_PLUGIN}"  # what the CLI adds
    # Workers inherit this process's environment: take the variable away to see the plugin set it.
    monkeypatch.delenv("TF_USE_LEGACY_KERAS")
    pid, keras, tuned = _worker_state([PLUGIN_ARG], tmp_path / "with_plugin")
    assert pid != os.getpid()  # it ran in a worker process
    assert keras == "1" and tuned

    pid, keras, tuned = _worker_state([], tmp_path / "without")
    assert pid != os.getpid() and keras == "None" and not tuned
