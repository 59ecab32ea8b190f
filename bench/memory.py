"""The benchmarks' one memory sampler: the resident memory of a process and all its children over time."""
import subprocess
import threading
import time
from typing import List, Tuple

import psutil

SAMPLE_SECONDS = 0.2


class TreeMemorySampler:
    """Samples `pid` and its descendants every `interval` s in a thread, while entered.

    `samples` holds (time, RSS of the whole tree, RSS of `pid` alone) in bytes; the process's own share
    tells an orchestrating process apart from the workers it starts (Beam's, the serving check's).
    """

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: List[Tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = own = 0
            try:
                for p in [self.process] + self.process.children(recursive=True):
                    try:
                        rss = p.memory_info().rss
                    except psutil.Error:  # exited between listing and reading
                        continue
                    total += rss
                    own = rss if p.pid == self.process.pid else own
            except psutil.Error:  # the process itself is gone
                pass
            self.samples.append((time.time(), total, own))
            self._stop.wait(self.interval)

    def peak_mb(self) -> float:
        """The largest whole-tree RSS seen, in MiB (0 before the first sample)."""
        return max((total for _, total, _ in self.samples), default=0) / 2**20


def run_sampled(command: List[str], log_path: str):
    """Runs `command` (output to `log_path`) under the sampler; returns wall seconds, exit code and
    the sampler (its `samples` and `peak_mb()`)."""
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log, \
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as process, \
            TreeMemorySampler(process.pid) as sampler:
        process.wait()
    return time.time() - started, process.returncode, sampler
