"""Two runs on one output directory: the second fails at once with a clear message."""
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.run_lock import RunLockedError, exclusive_run

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pipeline.run_lock import exclusive_run
    with exclusive_run(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def other_run(tmp_path):
    """A real second process holding the output directory's lock."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "out")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_second_run_is_refused_while_the_first_holds_the_directory(tmp_path, other_run):
    with pytest.raises(RunLockedError, match=rf"pid {other_run.pid}.*different --output-dir"):
        with exclusive_run(str(tmp_path / "out")):
            pass


def test_the_cli_exits_busy(tmp_path, other_run, small_data_root):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--data-root", small_data_root,
         "--output-dir", str(tmp_path / "out"), "--serving-dir", str(tmp_path / "serving")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    assert f"Another run is using {tmp_path / 'out'} (pid {other_run.pid}" in result.stderr
    assert not (tmp_path / "serving").exists()


def test_lock_is_released_when_the_holder_dies(tmp_path, other_run):
    other_run.kill()
    other_run.wait()
    with exclusive_run(str(tmp_path / "out")):
        assert os.path.exists(tmp_path / "out" / ".run.lock")
