"""A run killed inside a component resumes without redoing finished work, and pushes one whole version."""
import os
import signal
import subprocess
import time

import ml_metadata as mlmd
import pytest

from components.atomic_pusher import STAGING_PREFIX
from pipeline.run_summary import summarize
from pipeline.serving_dir import versions
from tests.conftest import cli_command, cli_env, run_cli

pytestmark = pytest.mark.slow

PIPELINE_NAME = "taxi_big_tipper"


def _states(metadata_path):
    """Each component's state in the latest run; {} until the run has recorded one."""
    try:
        return {c.name: c.state for c in summarize(metadata_path, PIPELINE_NAME).components}
    except (FileNotFoundError, LookupError):
        return {}  # no store yet, or no run in it yet
    except (RuntimeError, mlmd.errors.StatusError):
        return {}  # the run is creating the store's tables: ML Metadata cannot open it yet


def _process(pid):
    """(state, parent pid, command line) of a live process, None once it is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    return None if state == "Z" else (state, int(ppid), command)


def _model_server_of(pid):
    """The pid of the serving check's `python -m pipeline serve` child of process `pid`, if running."""
    for entry in os.listdir("/proc"):
        process = _process(entry) if entry.isdigit() else None
        if process and process[1] == pid and process[2][1:4] == ["-m", "pipeline", "serve"]:
            return int(entry)
    return None


def _kill_when(ready, args, timeout=600, poll_seconds=0.2):
    """Starts a run and SIGKILLs it once `ready(pid)` returns something true; returns that value."""
    # What the killed run cannot clean up (the serving check's temporary copy of the model) stays
    # beside its output, in pytest's temporary directory, not in /tmp.
    temp = os.path.join(os.path.dirname(args[args.index("--output-dir") + 1]), "tmp")
    os.makedirs(temp, exist_ok=True)
    process = subprocess.Popen(cli_command(*args), env={**cli_env(), "TMPDIR": temp},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            seen = ready(process.pid)
            if seen:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return seen
            assert process.poll() is None, "the run ended before the moment to kill it"
            time.sleep(poll_seconds)
        raise AssertionError("the moment to kill the run never came")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _kill_during(component, args, metadata_path):
    """SIGKILLs a run about a second into `component`; returns the run's states then."""
    def running(_):
        states = _states(metadata_path)
        if states.get(component) == "running":
            time.sleep(1.0)  # well inside the component, not at its first instruction
            return states
        return None
    return _kill_when(running, args)


def _files(directory):
    return {os.path.relpath(os.path.join(root, name), directory): os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(directory) for name in names}


def test_killed_runs_resume_from_the_last_finished_component(tmp_path, small_data_root):
    metadata_path = str(tmp_path / "out" / "metadata.sqlite")
    push_dir = str(tmp_path / "serving" / "big_tipper")
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

    # Killed while the serving check's model server answers: the server dies with the run.
    server = _kill_when(_model_server_of, args)
    states = _states(metadata_path)
    assert states["Evaluator"] == "ran" and states["ServingCheck"] == "running", states
    deadline = time.time() + 60
    while _process(server) and time.time() < deadline:
        time.sleep(0.2)
    assert _process(server) is None, "the serving check's model server outlived the killed run"
    assert not (tmp_path / "serving").exists()

    # Killed in the Pusher while it copies into the serving directory (its staging directory): no
    # version appears, whole or partial. A model big enough that the copy takes a while makes the
    # kill land inside it whatever the machine's load (a 1 MB model copies in a few milliseconds,
    # which a busy machine's poll can miss).
    # (EdgeExport copies the trained model, padding included, beside its exports; the Pusher
    # pushes that copy.)
    (model,) = summarize(metadata_path, PIPELINE_NAME).component("Trainer").outputs["model"]
    with open(os.path.join(model.uri, "Format-Serving", "padding.bin"), "wb") as f:
        f.write(os.urandom(128 << 20))
    written = _kill_when(lambda _: os.path.isdir(push_dir) and os.listdir(push_dir), args,
                         poll_seconds=0.001)
    states = _states(metadata_path)
    assert states["ServingCheck"] == "ran" and states["Pusher"] == "running", states
    assert versions(push_dir) == [], written
    assert all(name.startswith(STAGING_PREFIX) for name in written), written

    final = run_cli(*args)
    assert final.returncode == 0, final.stdout + final.stderr
    summary = summarize(metadata_path, PIPELINE_NAME)
    states = {c.name: c.state for c in summary.components}
    assert all(states[c] == "cached" for c in ("CsvExampleGen", "Transform", "Trainer", "Evaluator",
                                               "ServingCheck", "EdgeExport")), states
    assert states["Pusher"] == "ran"
    # Exactly one version, with every file of the trained model; the killed push's staging is gone.
    (version,) = versions(push_dir)
    assert os.listdir(push_dir) == [str(version)]
    assert summary.pushed_path == os.path.join(push_dir, str(version))
    (model,) = summary.component("EdgeExport").outputs["exported_model"]
    assert _files(summary.pushed_path) == _files(os.path.join(model.uri, "Format-Serving"))
