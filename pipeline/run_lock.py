"""One run at a time per output directory: the SQLite metadata store and the artifacts are not shared.

A second `python -m pipeline run` on the same --output-dir fails at once, naming the run that holds it,
instead of racing on metadata.sqlite. The lock is an OS file lock, released when the process exits,
even when it is killed, so a crash never leaves a stale lock behind.
"""
import contextlib
import fcntl
import os
import time

LOCK_FILE = ".run.lock"


class RunLockedError(RuntimeError):
    """Another run holds the output directory."""


@contextlib.contextmanager
def exclusive_run(output_dir: str):
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLockedError(
                f"Another run is using {output_dir} ({holder}). Wait for it to finish, or pass a "
                "different --output-dir.") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
