"""The CLI's options reach the pipeline config; Beam arguments pass through untouched."""
import dataclasses
import json
import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from click.testing import CliRunner

from pipeline.cli import main, run
from pipeline.config import (BEAM_MODES, BEAM_WORKER_PLUGIN, DEFAULT_BEAM_ARGS, PROJECT_SETUP_FILE,
                             PipelineConfig)

PLUGIN_ARG = f"--beam_plugins={BEAM_WORKER_PLUGIN}"
SETUP_FILE_ARG = f"--setup_file={PROJECT_SETUP_FILE}"
WORKER_SETUP = [PLUGIN_ARG, SETUP_FILE_ARG]


def _config(*args):
    result = CliRunner().invoke(main, ["run", "--print-config", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _beam_args(*args):
    """The Beam arguments the CLI resolves, without the project's worker set-up."""
    beam_args = _config(*args)["beam_args"]
    assert beam_args[-2:] == WORKER_SETUP
    return beam_args[:-2]


def test_defaults():
    config = _config()
    assert config["data_root"].endswith("chicago_taxi_pipeline/data/simple")
    assert config["enable_cache"] is True
    assert config["beam_args"] == [*DEFAULT_BEAM_ARGS, *WORKER_SETUP]


def test_every_setting_is_a_run_option_with_the_config_s_default():
    options = {p.name: p for p in run.params}
    settings = [f for f in dataclasses.fields(PipelineConfig) if "help" in f.metadata]
    assert len(settings) > 15
    for field in settings:
        assert options[field.name].default == field.default, field.name
        assert options[field.name].help == field.metadata["help"], field.name
    # One spelling each: --eval-buckets sets eval_buckets, --no-cache turns enable_cache off.
    config = _config("--eval-buckets", "3", "--max-epochs", "7", "--gate-max-regression", "0.01",
                     "--no-cache")
    assert (config["eval_buckets"], config["max_epochs"], config["gate_max_regression"],
            config["enable_cache"]) == (3, 7, 0.01, False)
    assert _config("--epochs", "4", "--auc-floor", "0.8")["max_epochs"] == 4  # earlier spellings


def test_options_and_beam_arguments(tmp_path):
    config = _config("--data-root", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                     "--serving-dir", str(tmp_path / "s"), "--train-steps", "9", "--no-cache",
                     "--beam-arg=--direct_num_workers=2", "--",
                     "--runner=FlinkRunner", "--flink_master=localhost:8081")
    assert config["data_root"] == str(tmp_path)
    assert config["serving_dir"] == str(tmp_path / "s")
    assert config["train_steps"] == 9 and config["enable_cache"] is False
    assert config["beam_args"] == ["--direct_num_workers=2", "--runner=FlinkRunner",
                                   "--flink_master=localhost:8081", *WORKER_SETUP]


def test_beam_mode_presets_and_refinements():
    assert _beam_args("--beam-mode", "in_memory") == list(BEAM_MODES["in_memory"])
    # Later options win in Beam's parser, so arguments after `--` refine the preset.
    beam_args = _beam_args("--beam-mode", "multi_processing", "--", "--direct_num_workers=2")
    assert beam_args == [*BEAM_MODES["multi_processing"], "--direct_num_workers=2"]
    options = PipelineOptions(beam_args).view_as(DirectOptions)
    assert (options.direct_running_mode, options.direct_num_workers) == ("multi_processing", 2)
    # Another runner's options replace the local default rather than mix with it.
    assert _beam_args("--", "--runner=PortableRunner") == ["--runner=PortableRunner"]


def test_workers_get_the_project_from_its_setup_py_unless_told_otherwise():
    # Beam workers install the project (and with it TFX) from setup.py; TFX would otherwise build and
    # stage a source package of itself for every Beam component.
    assert os.path.isfile(PROJECT_SETUP_FILE)
    for option in ("--setup_file=/src/setup.py", "--sdk_container_image=gcr.io/p/taxi:1",
                   "--extra_package=dist/taxi.tar.gz", "--requirements_file=req.txt"):
        assert _config("--", "--runner=DataflowRunner", option)["beam_args"] == [
            "--runner=DataflowRunner", option, PLUGIN_ARG]


def test_unknown_beam_mode_is_a_usage_error():
    result = CliRunner().invoke(main, ["run", "--beam-mode", "threads"])
    assert result.exit_code == 2 and "--beam-mode" in result.output


def test_invalid_values_are_usage_errors():
    result = CliRunner().invoke(main, ["run", "--train-steps", "-1"])
    assert result.exit_code == 2 and "--train-steps" in result.output


def test_span_layout_is_detected_and_the_new_flags_reach_the_config(tmp_path):
    flat = _config("--data-root", str(tmp_path))
    assert flat["span_versioned"] is False and flat["span_window"] == 1
    assert flat["distribution_strategy"] == "default" and flat["accept_drift"] is False
    (tmp_path / "span-1").mkdir()
    config = _config("--data-root", str(tmp_path), "--span-window", "3", "--accept-drift",
                     "--distribution-strategy", "multi_worker_mirrored")
    assert config["span_versioned"] is True and config["span_window"] == 3
    assert config["accept_drift"] is True
    assert config["distribution_strategy"] == "multi_worker_mirrored"


def test_bad_span_window_and_strategy_are_usage_errors():
    result = CliRunner().invoke(main, ["run", "--span-window", "0"])
    assert result.exit_code == 2 and "--span-window" in result.output
    result = CliRunner().invoke(main, ["run", "--distribution-strategy", "tpu"])
    assert result.exit_code == 2 and "multi_worker_mirrored" in result.output


def test_a_malformed_span_layout_exits_2_naming_the_directory(tmp_path):
    (tmp_path / "span-1").mkdir()
    (tmp_path / "stray.csv").write_text("fare\n1\n")
    result = CliRunner().invoke(main, ["run", "--data-root", str(tmp_path), "--output-dir",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "mixes span directories" in result.output and str(tmp_path) in result.output


def test_summary_runs_and_report_without_a_metadata_store_exit_1_naming_it(tmp_path):
    for command in ("summary", "runs", "report"):
        result = CliRunner().invoke(main, [command, "--output-dir", str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert f"No metadata store at {tmp_path / 'metadata.sqlite'}" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_report_summary_and_runs_name_a_damaged_store_or_an_unknown_run_and_what_to_do(tmp_path):
    """No traceback: the file or the run id, and the way out, in one line; exit code 1."""
    from pipeline.run_summary import open_store  # pylint: disable=import-outside-toplevel

    damaged, empty = tmp_path / "damaged", tmp_path / "empty"
    damaged.mkdir()
    (damaged / "metadata.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x17" * 300)
    empty.mkdir()
    open_store(str(empty / "metadata.sqlite"), read_only=False)  # a valid store without a run
    for command in ("report", "summary", "runs"):
        result = CliRunner().invoke(main, [command, "--output-dir", str(damaged)])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert (f"Cannot read the metadata store at {damaged / 'metadata.sqlite'}"
                in " ".join(result.output.split())), result.output
        assert "Restore it from a copy, or pass another --output-dir" in " ".join(result.output.split())
        if command == "runs":
            continue  # lists every run: no --run-id
        result = CliRunner().invoke(main, [command, "--output-dir", str(empty), "--run-id", "nope"])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "No run of pipeline 'taxi_big_tipper' with id 'nope'" in result.output
        assert "`python -m pipeline runs` lists the runs" in " ".join(result.output.split())
    assert not (damaged / "reports").exists() and not (empty / "reports").exists()
