"""Transform's analyzer cache: which cache a run's Transform gets (LatestOtherWindowCacheStrategy on a
real MLMD store, executions recorded as TFX's launcher records them), the tf.Transform behaviour it
relies on, and what the cache does in the pipeline (slow: the pipeline's DAG up to Transform, run by
TFX's LocalDagRunner on span-versioned taxi data with a two-span window)."""
import os
import pickle

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from ml_metadata.proto import metadata_store_pb2
from tensorflow_transform.beam import analyzer_cache
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import execution_publish_utils as publish
from tfx.types import standard_artifacts

from bench.analyzer_cache import up_to_transform
from components.analyzer_cache import LatestOtherWindowCacheStrategy
from pipeline.config import DEFAULT_BEAM_ARGS, PipelineConfig, with_worker_setup
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import artifacts_of, open_store, summarize
from tests.conftest import write_csv

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


def test_transform_writes_a_cache_only_for_a_window_that_can_read_it(tmp_path):
    # --no-cache still writes one: the next window's runs read it.
    for kwargs in ({"span_window": 2}, {"span_window": 2, "enable_cache": False}):
        assert "updated_analyzer_cache" in _components(tmp_path, **kwargs)["Transform"].outputs
    assert "updated_analyzer_cache" not in _components(tmp_path, span_window=1)["Transform"].outputs


def _manifest(dataset_cache_dir):
    """tf.Transform's index of a dataset's cache entries: entry key -> file number."""
    path = os.path.join(dataset_cache_dir, "MANIFEST")
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        return pickle.load(f)


# What the resolver relies on in tf.Transform (the pinned version): cache entries are per dataset key
# (TFX's is the span artifact's file pattern, new for every ingestion) and per analyzer, keyed by a hash
# of the analyzer and the graph before it, so a changed preprocessing_fn or input type misses.
def _mean_of_x(inputs):
    return {"m": tft.mean(inputs["x"]) + tf.zeros_like(tf.cast(inputs["x"], tf.float32))}


def _mean_of_twice_x(inputs):
    return {"m": tft.mean(inputs["x"] * 2) + tf.zeros_like(tf.cast(inputs["x"], tf.float32))}


def _analyzed_mean(tmp_path, preprocessing_fn, dtype, rows, cache_dir=None):
    """tft's AnalyzeDatasetWithCache on `rows` as dataset "span-1", with the cache in `cache_dir`;
    writes its new entries to a fresh directory. Returns (the mean, entries it computed)."""
    key = analyzer_cache.DatasetKey("span-1")
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(
        {"x": tf.io.FixedLenFeature([], dtype)})
    call = len([name for name in os.listdir(tmp_path) if name.startswith("cache-")])
    out_dir, transform_fn_dir = str(tmp_path / f"cache-{call}"), str(tmp_path / f"transform_fn-{call}")
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(tmp_path / "tmp"),
                                                       force_tf_compat_v1=True):
        cache = (pipeline | analyzer_cache.ReadAnalysisCacheFromFS(cache_dir, [key])
                 if cache_dir else {})
        transform_fn, output_cache = (
            ({key: pipeline | "Rows" >> beam.Create(rows)}, cache, metadata)
            | tft_beam.AnalyzeDatasetWithCache(preprocessing_fn))
        _ = output_cache | analyzer_cache.WriteAnalysisCacheToFS(pipeline, out_dir, [key])
        _ = transform_fn | tft_beam.WriteTransformFn(transform_fn_dir)
    layer = tft.TFTransformOutput(transform_fn_dir).transform_features_layer()
    mean = layer({"x": tf.constant([rows[0]["x"]], dtype)})["m"].numpy()[0]
    return float(mean), len(_manifest(os.path.join(out_dir, "span-1")))


@pytest.mark.parametrize("preprocessing_fn, dtype, cached", [
    (_mean_of_x, tf.float32, True),  # the same analyzer on the same dataset key: reused
    (_mean_of_twice_x, tf.float32, False),  # the graph before the analyzer changed
    (_mean_of_x, tf.int64, False),  # the input's type changed (a schema edit)
])
def test_tf_transform_reuses_a_cache_entry_only_for_the_same_analyzer(
        tmp_path, preprocessing_fn, dtype, cached):
    first = [{"x": v} for v in (1, 2, 3)]
    mean, written = _analyzed_mean(tmp_path, _mean_of_x, tf.float32, first)
    assert (mean, written) == (2.0, 1)
    # The same key with other rows tells a reused entry (the first rows' mean) from a computed one.
    other = [{"x": v} for v in (10, 20, 30)]
    mean, written = _analyzed_mean(tmp_path, preprocessing_fn, dtype, other,
                                   cache_dir=str(tmp_path / "cache-0"))
    factor = 2 if preprocessing_fn is _mean_of_twice_x else 1
    assert (mean, written) == ((2.0, 0) if cached else (20.0 * factor, 1))


# The pipeline: a two-span window over span-versioned taxi rows, as a daily schedule meets it.
PIPELINE_NAME = "taxi_big_tipper"


def _transform_inputs(metadata_path, summary, key):
    store = open_store(metadata_path)
    (execution,) = store.get_executions_by_id([summary.component("Transform").execution_id])
    return [a.id for a in artifacts_of(store, execution, (metadata_store_pb2.Event.INPUT,)).get(key, [])]


def _dataset_caches(cache):
    """A TransformCache artifact's dataset directories (one per span it analyzed) -> their manifest."""
    return {name: _manifest(os.path.join(cache.uri, name)) for name in os.listdir(cache.uri)}


def _transformed_values(summary):
    """Each split's transformed feature values over the window's spans, sorted per feature: equal
    analyzers give equal multisets, in whatever order Beam wrote the rows."""
    values = {}
    for artifact in summary.component("Transform").outputs["transformed_examples"]:
        for split in ("train", "eval"):
            files = tf.io.gfile.glob(os.path.join(artifact.uri, f"Split-{split}", "*"))
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
                example = tf.train.Example.FromString(record.numpy())
                for name, feature in example.features.feature.items():
                    kind = feature.WhichOneof("kind")
                    values.setdefault((split, name), []).extend(getattr(feature, kind).value)
    return {key: np.sort(np.array(v)) for key, v in values.items()}


@pytest.fixture(scope="module")
def window_runs(tmp_path_factory, taxi_rows):
    """Span 1, an unchanged re-run, span 2 (the window [1, 2]), an unchanged re-run, and that window
    again with --no-cache (the reference). The DAG up to Transform (bench/analyzer_cache.py's), with
    the CLI's Beam arguments, run in this process by TFX's LocalDagRunner: what follows Transform
    reads its outputs, so it is cached when Transform is, and training would take most of the time.
    Interleaved rows; at 1,500 rows a span's histograms are too coarse for the drift check (not what
    this tests), so every run accepts drift."""
    fieldnames, rows = taxi_rows
    root = tmp_path_factory.mktemp("analyzer_cache")
    data = root / "data"
    runs = {}

    def run(name, enable_cache=True):
        config = PipelineConfig(data_root=str(data), output_dir=str(root / "out"),
                                span_versioned=True, span_window=2, accept_drift=True,
                                enable_cache=enable_cache,
                                beam_args=with_worker_setup(DEFAULT_BEAM_ARGS))
        LocalDagRunner().run_with_ir(up_to_transform(config))
        runs["metadata"] = config.metadata_path
        runs[name] = summarize(config.metadata_path, PIPELINE_NAME)

    write_csv(str(data / "span-1" / "trips.csv"), fieldnames, rows[0::10])
    run("span_1")
    run("span_1_again")
    write_csv(str(data / "span-2" / "trips.csv"), fieldnames, rows[5::10])
    run("window")
    run("window_again")
    run("window_no_cache", enable_cache=False)
    return runs


def _states(summary):
    return {c.name: c.state for c in summary.components}


def _executed(summary):
    """Components that ran rather than reuse their outputs (resolvers resolve on every run)."""
    return {name for name, state in _states(summary).items()
            if state != "cached" and not name.endswith("_resolver")}


@pytest.mark.slow
def test_the_first_window_and_its_re_run_get_no_cache_and_the_re_run_is_cached(window_runs):
    assert _transform_inputs(window_runs["metadata"], window_runs["span_1"], "analyzer_cache") == []
    assert _executed(window_runs["span_1_again"]) == set()
    assert _transform_inputs(window_runs["metadata"], window_runs["span_1_again"],
                             "analyzer_cache") == []


@pytest.mark.slow
def test_a_new_span_reuses_the_analyzers_of_the_span_that_repeats(window_runs):
    (first_cache,) = window_runs["span_1"].component("Transform").outputs["updated_analyzer_cache"]
    window = window_runs["window"]
    assert _states(window)["Transform"] == "ran"
    assert _transform_inputs(window_runs["metadata"], window, "analyzer_cache") == [first_cache.id]
    (cache,) = window.component("Transform").outputs["updated_analyzer_cache"]
    before, after = _dataset_caches(first_cache), _dataset_caches(cache)
    ((span_1, entries),) = before.items()
    assert entries  # tf.Transform cached span 1's analyzers in the first run
    # Span 1's entries are those run 1 wrote, none added: every analyzer of span 1 was a cache hit
    # (a miss appends the recomputed entry). Span 2's analyzers were computed: the same entries.
    assert after.pop(span_1) == entries
    ((_, span_2_entries),) = after.items()
    assert set(span_2_entries) == set(entries)


@pytest.mark.slow
def test_an_unchanged_re_run_after_a_new_span_is_fully_cached(window_runs):
    # DriftCheck's previous statistics are gone once Transform has read span 2
    # (components/previous_statistics.py); nothing depends on its output.
    assert _executed(window_runs["window_again"]) == {"DriftCheck"}
    assert (_transform_inputs(window_runs["metadata"], window_runs["window_again"], "analyzer_cache")
            == _transform_inputs(window_runs["metadata"], window_runs["window"], "analyzer_cache"))


@pytest.mark.slow
def test_the_cached_analyzers_transform_as_a_run_without_the_cache(window_runs):
    reference = window_runs["window_no_cache"]
    assert _states(reference)["Transform"] == "ran"
    assert _transform_inputs(window_runs["metadata"], reference, "analyzer_cache") == []
    cached, uncached = _transformed_values(window_runs["window"]), _transformed_values(reference)
    assert cached.keys() == uncached.keys() and len(cached) > 20
    for key, values in cached.items():
        np.testing.assert_allclose(values, uncached[key], rtol=1e-5, atol=1e-6, err_msg=str(key))
