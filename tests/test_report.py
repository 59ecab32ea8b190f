"""The run report's parts without a pipeline run: figures are inline, repeatable SVG; a page renders
offline in Chromium, with nothing loaded from elsewhere, even for a run that never started. The
reports of real runs are tested with them (tests/test_end_to_end.py, test_any_table.py,
test_run_records.py)."""
import os

import pytest

from pipeline.config import PipelineConfig
from pipeline.report import contents, figures, page
from tests import report_browser

pytestmark = pytest.mark.skipif(not os.path.exists(report_browser.CHROMIUM),
                                reason="no chromium (make chromium installs it)")


def test_a_figure_is_inline_svg_and_the_same_bytes_each_time():
    edges, counts = [0.0, 1.0, 2.5, 4.0], [3.0, 10.0, 2.0]
    first, second = figures.histogram(edges, counts), figures.histogram(edges, counts)
    assert first == second
    assert first.startswith("<svg") and first.rstrip().endswith("</svg>")
    assert "<?xml" not in first and "<!DOCTYPE" not in first  # it sits inside the HTML page
    assert "<image" not in first and "url(http" not in first and "@font-face" not in first
    assert first != figures.histogram(edges, [3.0, 10.0, 9.0])


def test_calibration_merges_tfmas_buckets_into_bins_of_the_prediction():
    buckets = [{"lowerThresholdInclusive": 0.01 * i, "numWeightedExamples": 2.0,
                "totalWeightedLabel": 1.0, "totalWeightedRefinedPrediction": 0.02 * i + 0.01}
               for i in range(100)]
    predictions, labels, _ = figures._calibration_points(buckets)  # pylint: disable=protected-access
    assert len(predictions) == figures.CALIBRATION_BINS
    # Bin k holds buckets 10k..10k+9: mean prediction = mean of (0.01 i + 0.005) over them.
    assert predictions[3] == pytest.approx(sum(0.01 * i + 0.005 for i in range(30, 40)) / 10)
    assert labels == pytest.approx([0.5] * figures.CALIBRATION_BINS)


def test_regression_buckets_merge_into_bins_of_about_equal_examples_keeping_the_totals():
    """TFMA's fine prediction buckets (most empty, one below the label's range) become the report's
    bins: every example kept, label and prediction totals kept, about the same examples per bin."""
    buckets = [{"lowerThresholdInclusive": "-Infinity", "upperThresholdExclusive": 0.0,
                "numWeightedExamples": 6.0, "totalWeightedLabel": 3.0,
                "totalWeightedRefinedPrediction": -1.5}]
    buckets += [{"lowerThresholdInclusive": 0.1 * i, "upperThresholdExclusive": 0.1 * (i + 1),
                 "numWeightedExamples": float(i % 4), "totalWeightedLabel": 0.12 * i * (i % 4),
                 "totalWeightedRefinedPrediction": (0.1 * i + 0.05) * (i % 4)} for i in range(600)]
    rows = contents.prediction_buckets(buckets)
    assert len(rows) == contents.PREDICTION_BINS
    examples = [r["examples"] for r in rows]
    assert sum(examples) == sum(b["numWeightedExamples"] for b in buckets)
    for mean, total in (("mean_label", "totalWeightedLabel"),
                        ("mean_prediction", "totalWeightedRefinedPrediction")):
        assert sum(r[mean] * r["examples"] for r in rows) == pytest.approx(
            sum(b.get(total, 0.0) for b in buckets))
    assert max(examples) <= 1.2 * min(examples)
    assert rows[0]["low"] == float("-inf") and rows[-1]["high"] == pytest.approx(60.0)
    assert all(a["high"] <= b["low"] + 1e-9 for a, b in zip(rows, rows[1:]))


def test_a_run_that_never_started_gets_a_report_that_says_why(tmp_path):
    config = PipelineConfig(data_root=str(tmp_path), output_dir=str(tmp_path / "out"))
    record = {"run_id": "not-started-2026-11-30T10-00-00",
              "error": "RuntimeError: file is not a database", "failed_component": None}
    path = page.write(config, None, record)
    assert path == str(tmp_path / "out" / "reports" / "not-started-2026-11-30T10-00-00.html")
    loaded = report_browser.load(path)
    assert loaded.outside_requests == [] and loaded.console_errors == []
    assert loaded.outcome == ("The run failed before any component ran: RuntimeError: file is not "
                              "a database")
    assert loaded.tables["components"][1:] == [["No component ran."]]
    assert report_browser.distinct_colors(loaded.screenshot) > 20  # text and colours, not blank
