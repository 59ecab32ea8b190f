"""Span-versioned input: layout detection, its errors, ExampleGen's input config, the span window."""
import json

import pytest
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import standard_artifacts

from components.span_window import SpanWindowStrategy
from pipeline import data_checks, spans
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from tests.conftest import write_csv
from tests.serving_helpers import TAXI_SPEC


@pytest.fixture
def sample(taxi_rows):
    fieldnames, rows = taxi_rows
    return fieldnames, rows[:30]


def _span_root(tmp_path, sample, spans_rows):
    for span, count in spans_rows.items():
        write_csv(str(tmp_path / f"span-{span}" / "trips.csv"), sample[0], sample[1][:count])
    return str(tmp_path)


def test_a_flat_directory_is_not_span_versioned(tmp_path, sample):
    write_csv(str(tmp_path / "trips.csv"), *sample)
    assert spans.span_dirs(str(tmp_path)) == {} and not spans.is_span_versioned(str(tmp_path))
    check = data_checks.check_data_root(str(tmp_path), TAXI_SPEC)
    assert check.rows == 30 and check.span is None


def test_the_newest_span_is_the_one_checked_and_read(tmp_path, sample):
    root = _span_root(tmp_path, sample, {1: 10, 2: 20, 10: 5})  # numeric order, not text order
    assert sorted(spans.span_dirs(root)) == [1, 2, 10]
    check = data_checks.check_data_root(root, TAXI_SPEC)
    assert (check.span, check.rows) == (10, 5)
    assert check.span_dir == str(tmp_path / "span-10")


def test_a_bad_file_in_an_older_span_is_not_read(tmp_path, sample):
    root = _span_root(tmp_path, sample, {2: 5})
    (tmp_path / "span-1").mkdir()
    (tmp_path / "span-1" / "broken.csv").write_text("")
    assert data_checks.check_data_root(root, TAXI_SPEC).span == 2


@pytest.mark.parametrize("make, expected", [
    (lambda root: (root / "stray.csv").write_text("a\n1\n"), "mixes span directories"),
    (lambda root: (root / "span-latest").mkdir(), "span-latest is not a span directory"),
    (lambda root: (root / "span-3").write_text("x"), "span-3 is not a span directory"),
    (lambda root: (root / "span-01").mkdir(), "are both span 1"),
])
def test_a_malformed_span_layout_is_bad_input_naming_the_entry(tmp_path, sample, make, expected):
    root = _span_root(tmp_path, sample, {1: 5})
    make(tmp_path)
    with pytest.raises(data_checks.InputDataError, match=expected):
        data_checks.check_data_root(root, TAXI_SPEC)


def test_an_empty_newest_span_names_its_directory(tmp_path, sample):
    root = _span_root(tmp_path, sample, {1: 5})
    (tmp_path / "span-2").mkdir()
    with pytest.raises(data_checks.InputDataError, match="span-2 has no files"):
        data_checks.check_data_root(root, TAXI_SPEC)


def _example_gen_and_components(tmp_path, **kwargs):
    config = PipelineConfig(data_root=str(tmp_path), output_dir=str(tmp_path / "out"),
                            serving_dir=str(tmp_path / "serving"), **kwargs)
    components = {c.id: c for c in create_pipeline(config).components}
    return components["CsvExampleGen"], components


def test_example_gen_reads_the_newest_span_pattern(tmp_path):
    example_gen, components = _example_gen_and_components(tmp_path, span_versioned=True)
    props = example_gen.exec_properties
    assert [s["pattern"] for s in json.loads(props["input_config"])["splits"]] == ["span-{SPAN}/*"]
    assert json.loads(props["range_config"]) == {"rolling_range": {"num_spans": 1}}
    # A window of one span: Transform reads this run's examples directly.
    assert "span_window_resolver" not in components
    assert components["Transform"].inputs["examples"].producer_component_id == "CsvExampleGen"


def test_a_flat_data_root_keeps_the_default_input(tmp_path):
    example_gen, _ = _example_gen_and_components(tmp_path)
    assert "{SPAN}" not in example_gen.exec_properties["input_config"]
    assert not example_gen.exec_properties.get("range_config")


def test_a_wider_window_feeds_transform_from_the_span_window(tmp_path):
    _, components = _example_gen_and_components(tmp_path, span_versioned=True, span_window=3)
    window = components["span_window_resolver"]
    assert {n.id for n in window.upstream_nodes} == {"CsvExampleGen"}
    # Compiles to an IR whose resolver reads both of its inputs (no input-key clash).
    from tfx.dsl.compiler.compiler import Compiler  # pylint: disable=import-outside-toplevel
    ir = Compiler().compile(create_pipeline(PipelineConfig(
        data_root=str(tmp_path), output_dir=str(tmp_path / "out"), span_versioned=True,
        span_window=3)))
    (node,) = [n.pipeline_node for n in ir.nodes
               if n.pipeline_node.node_info.id == "span_window_resolver"]
    assert sum(1 for spec in node.inputs.inputs.values() if spec.channels) == 2
    assert components["Transform"].inputs["examples"].producer_component_id == "span_window_resolver"
    # Evaluation stays on the newest span: is the new model better on the newest data?
    assert components["Evaluator"].inputs["examples"].producer_component_id == "CsvExampleGen"
    with pytest.raises(ValueError, match="span_window"):
        PipelineConfig(span_window=0)


def _examples(artifact_id, span):
    examples = standard_artifacts.Examples()
    examples.id = artifact_id
    examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, span)
    examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME, f"span {span}")
    return examples


def _window(num_spans, current, ingested):
    result = SpanWindowStrategy(num_spans).resolve_artifacts(
        None, {"examples": [current], "ingested": ingested})
    return [(a.id, span) for a in result["ingested"] for span in [a.get_int_custom_property("span")]]


def test_window_takes_the_latest_ingestion_of_each_span_before_this_one():
    current = _examples(9, 4)
    ingested = [_examples(1, 1), _examples(2, 2), _examples(3, 3), _examples(5, 3),  # span 3 re-sent
                _examples(7, 5), current]  # span 5 ingested by an earlier run on other data
    transformed = standard_artifacts.Examples()  # Transform's output: no fingerprint
    transformed.id = 8
    transformed.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, 3)
    ingested.append(transformed)
    assert _window(3, current, ingested) == [(2, 2), (5, 3), (9, 4)]
    assert _window(1, current, ingested) == [(9, 4)]


def test_window_has_only_the_spans_ingested_so_far():
    current = _examples(3, 2)
    assert _window(5, current, [current]) == [(3, 2)]
