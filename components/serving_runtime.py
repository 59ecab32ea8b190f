"""The project's serving runtime (`python -m pipeline serve`) as a local subprocess, and REST calls to it.

Used by the serving check (components/serving_check.py) to serve a candidate model exactly as it will be
served after the push: same server, same REST API (TF Serving's), same model directory layout.
"""
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

import requests

STDERR_TAIL_LINES = 20


class ServingRuntimeError(RuntimeError):
    """The server did not start, did not load the model, or did not answer a request."""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the pipeline process dies (even by SIGKILL), so none is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalServer:
    """`python -m pipeline serve` on a free 127.0.0.1 port, REST only; a context manager.

    Entering waits until `model_name` is AVAILABLE (TF Serving's version status) and raises
    ServingRuntimeError with the server's stderr tail if it exits, reports a load error or times out.
    """

    def __init__(self, serving_dir: str, model_name: str, log_path: str,
                 startup_timeout_s: float = 120.0):
        self.serving_dir = serving_dir
        self.model_name = model_name
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self._process: Optional[subprocess.Popen] = None
        self._session = requests.Session()  # keep-alive: latency is the server's, not TCP set-up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/models/{self.model_name}"

    def __enter__(self) -> "LocalServer":
        self.port = free_port()
        command = [sys.executable, "-m", "pipeline", "serve", "--serving-dir", self.serving_dir,
                   "--model-name", self.model_name, "--host", "127.0.0.1",
                   "--rest-port", str(self.port), "--grpc-port", "0"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(  # pylint: disable=consider-using-with
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            self._wait_until_available()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._session.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-STDERR_TAIL_LINES:]) or "(the server printed nothing)"

    def _fail(self, what: str) -> ServingRuntimeError:
        return ServingRuntimeError(
            f"{what}\nServer command: python -m pipeline serve --serving-dir {self.serving_dir} "
            f"--rest-port {self.port}\nLast lines of its output ({self.log_path}):\n{self.log_tail()}")

    def _wait_until_available(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._fail(f"The model server exited with code {code} before serving "
                                 f"'{self.model_name}'.")
            try:
                reply = self._session.get(self.url, timeout=5)
                statuses = reply.json().get("model_version_status", []) if reply.ok else []
            except (requests.RequestException, ValueError):
                statuses = []  # not listening yet
            if any(s.get("state") == "AVAILABLE" for s in statuses):
                return
            errors = [s["status"]["error_message"] for s in statuses
                      if s.get("status", {}).get("error_code", "OK") != "OK"]
            if errors:
                raise self._fail(f"The model server could not load '{self.model_name}': "
                                 + "; ".join(errors))
            if time.monotonic() > deadline:
                raise self._fail(f"The model server did not report '{self.model_name}' AVAILABLE "
                                 f"within {self.startup_timeout_s:g} s (raise the startup timeout "
                                 "if the machine is busy).")
            time.sleep(0.2)

    def predict(self, signature_name: str, instances: Sequence) -> Tuple[List[float], float]:
        """TF Serving's REST predict (row format); returns the predictions and the seconds it took."""
        body = {"signature_name": signature_name, "instances": list(instances)}
        # NaN is the raw signature's missing-float marker; TF Serving's JSON parser accepts the token
        # (requests' own json= encoding refuses it).
        data = json.dumps(body, allow_nan=True).encode()
        started = time.perf_counter()
        try:
            reply = self._session.post(self.url + ":predict", data=data, timeout=60,
                                       headers={"Content-Type": "application/json"})
        except requests.RequestException as e:
            raise self._fail(f"A {signature_name} request to {self.url}:predict failed: {e}") from e
        seconds = time.perf_counter() - started
        if not reply.ok:
            raise ServingRuntimeError(
                f"The model server answered {reply.status_code} to a {signature_name} request of "
                f"{len(instances)} example(s): {reply.text[:500]}")
        try:
            return reply.json()["predictions"], seconds
        except (ValueError, KeyError) as e:
            raise ServingRuntimeError(f"The model server's answer to a {signature_name} request has "
                                      f"no 'predictions': {reply.text[:500]}") from e

