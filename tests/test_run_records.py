"""Every run leaves a record, failed or not; a failed run exits 1 and names what failed; `summary`
reads a past run back. The failures are real: a Beam runner that does not exist (CsvExampleGen fails
at once), a metadata store that is not one, a schema file that is gone."""
import json
import shutil

import pytest
from click.testing import CliRunner

from pipeline import local_runner
from pipeline.cli import main
from pipeline.config import DEFAULT_SPEC_DIR, PipelineConfig
from pipeline.report import page
from pipeline.run_summary import summarize
from tests import report_browser
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

PIPELINE_NAME = "taxi_big_tipper"
NO_SUCH_RUNNER = "Unexpected pipeline runner: NoSuchRunner"


def _records(output_dir):
    return [json.loads(p.read_text()) for p in sorted((output_dir / "runs").glob("*.json"))]


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory, small_data_root):
    """A run whose first component fails: Beam is told to use a runner that does not exist."""
    root = tmp_path_factory.mktemp("failed_run")
    result = run_cli("--data-root", small_data_root, "--output-dir", str(root / "out"),
                     "--serving-dir", str(root / "serving"), "--beam-arg=--runner=NoSuchRunner",
                     timeout=300)
    return {"root": root, "out": root / "out", "result": result}


def test_a_failed_component_exits_1_naming_the_component_and_the_cause(failed_run):
    result = failed_run["result"]
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Pipeline failed in CsvExampleGen: ValueError: {NO_SUCH_RUNNER}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "CsvExampleGen" in result.stdout and "failed" in result.stdout  # the components table
    assert not (failed_run["root"] / "serving").exists()


def test_a_failed_run_leaves_a_record_of_what_failed(failed_run):
    (record,) = _records(failed_run["out"])
    assert record["run_id"] == summarize(str(failed_run["out"] / "metadata.sqlite"),
                                         PIPELINE_NAME).run_id
    assert record["failed_component"] == "CsvExampleGen"
    assert record["error"].startswith(f"ValueError: {NO_SUCH_RUNNER}")
    assert [(c["name"], c["state"]) for c in record["components"]] == [("CsvExampleGen", "failed")]
    assert record["blessed"] is None and record["pushed_this_run"] is False
    assert record["config"]["beam_args"][0] == "--runner=NoSuchRunner"


def test_a_failed_run_has_a_report_of_how_far_it_got(failed_run):
    (record,) = _records(failed_run["out"])
    path = page.report_path(str(failed_run["out"]), record["run_id"])
    assert f"Report: {path}" in failed_run["result"].stdout
    loaded = report_browser.load(path)
    assert loaded.console_errors == [] and loaded.outside_requests == []
    assert loaded.outcome.startswith(f"The run failed in CsvExampleGen: ValueError: {NO_SUCH_RUNNER}")
    assert loaded.tables["components"][1][:2] == ["CsvExampleGen", "failed"]
    assert "No statistics: the run stopped before StatisticsGen." in loaded.text


def test_summary_prints_a_past_run_and_rejects_an_unknown_one(failed_run):
    out = str(failed_run["out"])
    (record,) = _records(failed_run["out"])
    for args in ([], ["--run-id", record["run_id"]]):
        result = CliRunner().invoke(main, ["summary", "--output-dir", out, *args])
        assert result.exit_code == 0, result.output
        assert f"Run {record['run_id']}" in result.output
        assert "CsvExampleGen" in result.output and "failed" in result.output
    result = CliRunner().invoke(main, ["summary", "--output-dir", out, "--run-id", "no-such-run"])
    assert result.exit_code == 1
    assert f"No run of pipeline '{PIPELINE_NAME}'" in result.output


def test_a_run_that_cannot_open_its_metadata_store_exits_1_and_leaves_a_record(tmp_path,
                                                                               small_data_root):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.sqlite").write_text("not a database\n")
    result = run_cli("--data-root", small_data_root, "--output-dir", str(out),
                     "--serving-dir", str(tmp_path / "serving"), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Pipeline failed before it started: RuntimeError:" in result.stderr
    assert "file is not a database" in result.stderr and "Traceback" not in result.stderr
    (record,) = _records(out)
    assert record["run_id"].startswith("not-started-") and "components" not in record
    assert record["error"].startswith("RuntimeError:") and "file is not a database" in record["error"]
    assert record["failed_component"] is None and record["config"]["output_dir"] == str(out)
    with open(page.report_path(str(out), record["run_id"]), encoding="utf-8") as f:
        assert "The run failed before any component ran: RuntimeError:" in f.read()


def test_a_run_stopped_before_it_started_is_not_recorded_as_the_previous_run(failed_run, tmp_path,
                                                                             small_data_root):
    """The store's latest run is an older one; the record says this run never started."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(failed_run["out"] / "metadata.sqlite", out / "metadata.sqlite")
    spec = tmp_path / "spec"
    shutil.copytree(DEFAULT_SPEC_DIR, spec)
    config = PipelineConfig(spec_dir=str(spec), data_root=small_data_root, output_dir=str(out),
                            serving_dir=str(tmp_path / "serving"))
    (spec / "schema.pbtxt").unlink()  # after the spec was read: the pipeline cannot be built
    outcome = local_runner.run(config)
    assert isinstance(outcome.error, FileNotFoundError) and outcome.summary is None
    (record,) = _records(out)
    assert record["run_id"].startswith("not-started-")
    assert record["error"].startswith("FileNotFoundError:") and "spec/schema.pbtxt" in record["error"]
    # Its report, from the record alone; `report` rewrites it from the record (the store has no
    # such run).
    assert outcome.report_path == page.report_path(str(out), record["run_id"])
    with open(outcome.report_path, encoding="utf-8") as f:
        written = f.read()
    assert "The run failed before any component ran: FileNotFoundError:" in written
    result = CliRunner().invoke(main, ["report", "--output-dir", str(out), "--run-id", record["run_id"]])
    assert result.exit_code == 0, result.output
    with open(outcome.report_path, encoding="utf-8") as f:
        assert f.read() == written
    assert record["failed_component"] is None and "components" not in record
