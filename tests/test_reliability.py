"""A run killed inside a long component resumes without redoing finished work, and still pushes."""
import os
import signal
import subprocess
import time

import pytest

from pipeline.run_summary import summarize
from tests.conftest import cli_command, cli_env, run_cli

pytestmark = pytest.mark.slow

PIPELINE_NAME = "taxi_big_tipper"


def _states(metadata_path):
    try:
        return {c.name: c.state for c in summarize(metadata_path, PIPELINE_NAME).components}
    except Exception:  # pylint: disable=broad-except  (store not created yet, or mid-write)
        return {}


def _kill_during(component, args, metadata_path, timeout=600):
    """Starts a run, SIGKILLs it once `component` is executing, returns that run's states."""
    process = subprocess.Popen(cli_command(*args), env=cli_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            states = _states(metadata_path)
            if states.get(component) == "running":
                time.sleep(1.0)  # well inside the component, not at its first instruction
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return states
            assert process.poll() is None, f"the run ended before {component} started"
            time.sleep(0.2)
        raise AssertionError(f"{component} never started")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_killed_runs_resume_from_the_last_finished_component(tmp_path, small_data_root):
    metadata_path = str(tmp_path / "out" / "metadata.sqlite")
    args = ["--data-root", small_data_root, "--output-dir", str(tmp_path / "out"),
            "--serving-dir", str(tmp_path / "serving"), "--train-steps", "200", "--eval-steps", "5"]

    _kill_during("Transform", args, metadata_path)
    assert not (tmp_path / "serving").exists()

    # Each re-run reuses everything finished before the kill and dies in the next long component.
    states = _kill_during("Trainer", args, metadata_path)
    assert states["CsvExampleGen"] == states["StatisticsGen"] == "cached"
    assert states["Transform"] == "ran"

    states = _kill_during("Evaluator", args, metadata_path)
    assert states["Transform"] == "cached" and states["Trainer"] == "ran"

    final = run_cli(*args)
    assert final.returncode == 0, final.stdout + final.stderr
    states = _states(metadata_path)
    assert all(states[c] == "cached" for c in ("CsvExampleGen", "Transform", "Trainer")), states
    assert states["Evaluator"] == states["Pusher"] == "ran"
    assert len(os.listdir(tmp_path / "serving" / "big_tipper")) == 1
