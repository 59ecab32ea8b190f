"""PreviousDataStatisticsStrategy on a real MLMD store, with executions and artifacts recorded as TFX's
launcher records them (registered with their inputs, then published with their outputs)."""
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.portable import execution_publish_utils as publish
from tfx.types import standard_artifacts

from components.previous_statistics import PreviousDataStatisticsStrategy

EXAMPLE_GEN = "tfx.components.example_gen.csv_example_gen.component.CsvExampleGen"
STATISTICS_GEN = "tfx.components.statistics_gen.component.StatisticsGen"
TRANSFORM = "tfx.components.transform.component.Transform"
DRIFT_CHECK = "components.drift_check.DriftCheck"


class History:
    """Component runs in an in-memory MLMD store."""

    def __init__(self, handle):
        self.handle = handle
        self.statistics = []  # every ExampleStatistics artifact, as the resolver's channel sees them

    def run(self, component_type, inputs, outputs=None, state="complete"):
        execution = publish.register_execution(
            self.handle, metadata_store_pb2.ExecutionType(name=component_type), [],
            input_artifacts=inputs)
        if state == "complete":
            published, _ = publish.publish_succeeded_execution(self.handle, execution.id, [],
                                                               output_artifacts=outputs)
            return published
        if state == "cached":  # outputs: those of the execution whose results it reuses
            publish.publish_cached_executions(self.handle, [], [execution],
                                              output_artifacts_maps=[outputs] if outputs else None)
        elif state == "failed":
            publish.publish_failed_execution(self.handle, [], execution.id)
        return None  # "running": registered, never published

    def ingest(self, name):
        """ExampleGen writes examples and StatisticsGen their statistics."""
        examples = standard_artifacts.Examples()
        examples.uri = f"/examples/{name}"
        (examples,) = self.run(EXAMPLE_GEN, {}, {"examples": [examples]})["examples"]
        self.describe(examples, name)
        return examples

    def describe(self, examples, name):
        """StatisticsGen (again) on these examples."""
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = f"/statistics/{name}"
        (statistics,) = self.run(STATISTICS_GEN, {"examples": [examples]},
                                 {"statistics": [statistics]})["statistics"]
        self.statistics.append(statistics)
        return statistics

    def previous_statistics(self, examples):
        """What the resolver hands DriftCheck for a run on `examples`: statistics uris."""
        resolved = PreviousDataStatisticsStrategy().resolve_artifacts(
            self.handle.store, {"examples": [examples], "statistics": list(self.statistics)})
        assert [a.id for a in resolved["examples"]] == [examples.id]
        return [a.uri for a in resolved["statistics"]]


@pytest.fixture
def history():
    config = metadata_store_pb2.ConnectionConfig(fake_database=metadata_store_pb2.FakeDatabaseConfig())
    with metadata.Metadata(config) as handle:
        yield History(handle)


def test_the_first_run_has_no_previous_statistics(history):
    first = history.ingest("span-1")
    assert history.previous_statistics(first) == []


def test_new_data_gets_the_statistics_of_the_latest_data_before_it(history):
    for span in (1, 2):
        examples = history.ingest(f"span-{span}")
        history.run(TRANSFORM, {"examples": [examples]}, state="complete")
    third = history.ingest("span-3")
    assert history.previous_statistics(third) == ["/statistics/span-2"]


def test_statistics_computed_again_from_this_run_s_examples_are_not_previous(history):
    """E.g. StatisticsGen re-ran after a failure: its new output describes the same data."""
    history.ingest("span-1")
    second = history.ingest("span-2")
    history.describe(second, "span-2-again")
    assert history.previous_statistics(second) == ["/statistics/span-1"]


def test_the_accepted_re_run_of_a_drift_stop_resolves_the_same_statistics(history):
    """The --accept-drift re-run reuses ExampleGen's and StatisticsGen's outputs from the cache: its
    DriftCheck inputs stay those of the stopped run, which is what keeps them cached."""
    first = history.ingest("span-1")
    history.run(TRANSFORM, {"examples": [first]}, state="complete")
    second = history.ingest("span-2")
    assert history.previous_statistics(second) == ["/statistics/span-1"]
    history.run(DRIFT_CHECK, {"statistics": [history.statistics[-1]]}, state="failed")
    history.run(EXAMPLE_GEN, {}, {"examples": [second]}, state="cached")
    history.run(STATISTICS_GEN, {"examples": [second]}, {"statistics": [history.statistics[-1]]},
                state="cached")
    assert history.previous_statistics(second) == ["/statistics/span-1"]


@pytest.mark.parametrize("state", ["complete", "cached"])
def test_examples_a_finished_transform_read_were_judged_and_resolve_none(history, state):
    """A scheduled re-run of an accepted span does not stop again on the drift already accepted."""
    history.ingest("span-1")
    second = history.ingest("span-2")
    history.run(TRANSFORM, {"examples": [second]}, state=state)
    assert history.previous_statistics(second) == []


@pytest.mark.parametrize("state", ["failed", "running"])
def test_a_transform_that_did_not_finish_does_not_count(history, state):
    history.ingest("span-1")
    second = history.ingest("span-2")
    history.run(TRANSFORM, {"examples": [second]}, state=state)
    assert history.previous_statistics(second) == ["/statistics/span-1"]
