"""The CLI's options reach the pipeline config; Beam arguments pass through untouched."""
import json

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import DEFAULT_BEAM_ARGS


def _config(*args):
    result = CliRunner().invoke(main, ["run", "--print-config", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_defaults():
    config = _config()
    assert config["data_root"].endswith("chicago_taxi_pipeline/data/simple")
    assert config["enable_cache"] is True
    assert config["beam_args"] == list(DEFAULT_BEAM_ARGS)


def test_options_and_beam_arguments(tmp_path):
    config = _config("--data-root", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                     "--serving-dir", str(tmp_path / "s"), "--train-steps", "9", "--no-cache",
                     "--beam-arg=--direct_num_workers=2", "--",
                     "--runner=FlinkRunner", "--flink_master=localhost:8081")
    assert config["data_root"] == str(tmp_path)
    assert config["serving_dir"] == str(tmp_path / "s")
    assert config["train_steps"] == 9 and config["enable_cache"] is False
    assert config["beam_args"] == ["--direct_num_workers=2", "--runner=FlinkRunner",
                                   "--flink_master=localhost:8081"]


def test_invalid_values_are_usage_errors():
    result = CliRunner().invoke(main, ["run", "--train-steps", "0"])
    assert result.exit_code == 2 and "--train-steps" in result.output
