"""Transform's analyzer cache: which cache a run's Transform gets (LatestOtherWindowCacheStrategy on a
real MLMD store, executions recorded as TFX's launcher records them), and what the cache does in the
pipeline (slow: real runs on span-versioned taxi data with a two-span window)."""
import os
import pickle

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.portable import execution_publish_utils as publish
from tfx.types import standard_artifacts

from components.analyzer_cache import LatestOtherWindowCacheStrategy

EXAMPLE_GEN = "tfx.components.example_gen.csv_example_gen.component.CsvExampleGen"
TRANSFORM = "tfx.components.transform.component.Transform"
RESOLVER = "tfx.dsl.components.common.resolver.Resolver"


class History:
    """Component runs in an in-memory MLMD store."""

    def __init__(self, handle):
        self.handle = handle
        self.caches = []  # every TransformCache artifact, as the resolver's channel sees them

    def _register(self, component_type, inputs):
        return publish.register_execution(
            self.handle, metadata_store_pb2.ExecutionType(name=component_type), [],
            input_artifacts=inputs)

    def ingest(self, name):
        examples = standard_artifacts.Examples()
        examples.uri = f"/examples/{name}"
        execution = self._register(EXAMPLE_GEN, {})
        published, _ = publish.publish_succeeded_execution(self.handle, execution.id, [],
                                                           output_artifacts={"examples": [examples]})
        return published["examples"][0]

    def transform(self, window, cache=None, state="complete", reuse=None):
        """Transform on `window` (fed `cache`); "cached" reuses the cache artifact `reuse` wrote."""
        inputs = {"examples": list(window), "analyzer_cache": [cache] if cache else []}
        execution = self._register(TRANSFORM, inputs)
        if state == "complete":
            written = standard_artifacts.TransformCache()
            written.uri = f"/cache/{len(self.caches)}"
            published, _ = publish.publish_succeeded_execution(
                self.handle, execution.id, [], output_artifacts={"updated_analyzer_cache": [written]})
            (written,) = published["updated_analyzer_cache"]
            self.caches.append(written)
            return written
        if state == "cached":
            publish.publish_cached_executions(
                self.handle, [], [execution],
                output_artifacts_maps=[{"updated_analyzer_cache": [reuse]}])
        elif state == "failed":
            publish.publish_failed_execution(self.handle, [], execution.id)
        return None  # "running": registered, never published

    def resolve(self, window):
        """The cache uris the resolver hands a Transform on `window`; the resolver's own run is
        recorded as TFX records it (INTERNAL_OUTPUT)."""
        resolved = LatestOtherWindowCacheStrategy().resolve_artifacts(
            self.handle.store, {"examples": list(window), "analyzer_cache": list(self.caches)})
        assert [a.id for a in resolved["examples"]] == [a.id for a in window]
        execution = self._register(RESOLVER, {})
        publish.publish_internal_execution(self.handle, [], execution.id, output_artifacts=resolved)
        return [a.uri for a in resolved["analyzer_cache"]]


@pytest.fixture
def history():
    config = metadata_store_pb2.ConnectionConfig(fake_database=metadata_store_pb2.FakeDatabaseConfig())
    with metadata.Metadata(config) as handle:
        yield History(handle)


def test_a_window_gets_no_cache_until_it_moves_and_then_keeps_the_same_one(history):
    """Two-span window over three spans, each run followed by an unchanged (cached) re-run."""
    s1 = history.ingest("span-1")
    assert history.resolve([s1]) == []
    c1 = history.transform([s1])
    assert history.resolve([s1]) == []  # unchanged re-run: the same inputs
    history.transform([s1], state="cached", reuse=c1)
    assert history.resolve([s1]) == []

    s2 = history.ingest("span-2")
    assert history.resolve([s1, s2]) == ["/cache/0"]  # span 1 repeats
    c2 = history.transform([s1, s2], cache=c1)
    assert history.resolve([s1, s2]) == ["/cache/0"]
    history.transform([s1, s2], cache=c1, state="cached", reuse=c2)
    assert history.resolve([s1, s2]) == ["/cache/0"]

    s3 = history.ingest("span-3")
    assert history.resolve([s2, s3]) == ["/cache/1"]  # span 2 repeats


def test_a_transform_that_ran_again_on_the_same_window_does_not_change_its_cache(history):
    """E.g. preprocessing code changed: Transform re-runs on the same window and writes a new cache;
    the next unchanged run still gets the earlier window's, so it stays cached. The next window gets
    the newest cache (tf.Transform's keys tell the old code's entries from the new)."""
    s1, s2 = history.ingest("span-1"), history.ingest("span-2")
    c1 = history.transform([s1])
    history.transform([s1, s2], cache=c1)
    history.transform([s1, s2], cache=c1)  # the edit
    assert history.resolve([s1, s2]) == ["/cache/0"]
    s3 = history.ingest("span-3")
    assert history.resolve([s2, s3]) == ["/cache/2"]


@pytest.mark.parametrize("state", ["failed", "running"])
def test_a_transform_that_did_not_finish_does_not_count(history, state):
    """The retry of a window whose Transform failed (or was killed) gets the window before's cache."""
    s1, s2 = history.ingest("span-1"), history.ingest("span-2")
    history.transform([s1])
    history.transform([s1, s2], state=state)
    assert history.resolve([s1, s2]) == ["/cache/0"]


def test_a_cache_of_windows_that_share_no_span_is_not_fed(history):
    """Nothing in it would be used, and a re-delivered span is a new artifact (a new dataset key)."""
    s1 = history.ingest("span-1")
    history.transform([s1])
    assert history.resolve([history.ingest("span-2")]) == []
    assert history.resolve([history.ingest("span-1-again")]) == []


def _components(tmp_path, **kwargs):
    from pipeline.config import PipelineConfig  # pylint: disable=import-outside-toplevel
    from pipeline.pipeline import create_pipeline  # pylint: disable=import-outside-toplevel
    config = PipelineConfig(data_root=str(tmp_path), output_dir=str(tmp_path / "out"),
                            span_versioned=True, **kwargs)
    return {c.id: c for c in create_pipeline(config).components}


def test_transform_reads_the_resolved_cache_only_where_spans_repeat(tmp_path):
    components = _components(tmp_path, span_window=2)
    resolver = components["analyzer_cache_resolver"]
    assert {n.id for n in resolver.upstream_nodes} == {"span_window_resolver"}
    assert (components["Transform"].inputs["analyzer_cache"].producer_component_id
            == "analyzer_cache_resolver")
    # A one-span window never repeats a span; --no-cache recomputes the analyzers too.
    for kwargs in ({"span_window": 1}, {"span_window": 2, "enable_cache": False}):
        components = _components(tmp_path, **kwargs)
        assert "analyzer_cache_resolver" not in components
        assert "analyzer_cache" not in components["Transform"].inputs
