"""The project's serving runtime (`python -m pipeline serve`) as a local subprocess, and REST calls to it.

Used by the serving check (components/serving_check.py) to serve a candidate model exactly as it will be
served after the push: same server, same REST API (TF Serving's), same model directory layout. The
serving tests and bench/serving_latency.py start their servers with it too.
"""
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from typing import List, Mapping, Optional, Sequence, Tuple

import requests

STDERR_TAIL_LINES = 20


class ServingRuntimeError(RuntimeError):
    """The server did not start, did not load the model, or did not answer a request."""


def free_ports(count: int) -> List[int]:
    """`count` distinct ports that were free a moment ago on 127.0.0.1 (the OS picks them)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:  # all bound at once, so the OS cannot hand out one port twice
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the pipeline process dies (even by SIGKILL), so none is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalServer:
    """`python -m pipeline serve` on free 127.0.0.1 ports (REST; gRPC too with `grpc`); a context manager.

    Starting waits until `model_name` is AVAILABLE (TF Serving's version status) and raises
    ServingRuntimeError with the server's output tail if it exits, reports a load error or times out.
    `extra_args` are more `serve` flags; `env` replaces the inherited environment.
    """

    def __init__(self, serving_dir: str, model_name: str, log_path: str,
                 startup_timeout_s: float = 120.0, grpc: bool = False, extra_args: Sequence[str] = (),
                 env: Optional[Mapping[str, str]] = None):
        self.serving_dir = serving_dir
        self.model_name = model_name
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.grpc = grpc
        self.extra_args = tuple(extra_args)
        self.env = env
        self.rest_port = self.grpc_port = 0
        self.command: List[str] = []
        self.process: Optional[subprocess.Popen] = None
        self._session = requests.Session()  # keep-alive: latency is the server's, not TCP set-up

    @property
    def url(self) -> str:
        """The server's REST address, as `pipeline predict --url` takes it."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v1/models/{self.model_name}"

    def start(self) -> "LocalServer":
        """Launches the server and waits until it serves the model."""
        self.launch()
        self.wait_until_available()
        return self

    def launch(self) -> None:
        """Starts the server process without waiting for it (see `wait_until_available`)."""
        ports = free_ports(2 if self.grpc else 1)
        self.rest_port, self.grpc_port = ports[0], (ports[1] if self.grpc else 0)
        self.command = [sys.executable, "-m", "pipeline", "serve", "--serving-dir", self.serving_dir,
                        "--model-name", self.model_name, "--host", "127.0.0.1",
                        "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
                        *self.extra_args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=None if self.env is None else dict(self.env),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def wait_until_available(self) -> None:
        """Returns once the model is AVAILABLE; stops the server and raises if it never is."""
        try:
            self._wait_until_available()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, kill: bool = False) -> Optional[int]:
        """Stops the server (SIGTERM, then SIGKILL after 15 s); returns its exit code.

        `kill`: SIGKILL at once, for a throwaway server whose answers are all in (a graceful
        shutdown takes ~1.5 s).
        """
        self._session.close()
        if self.process is None:
            return None
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        """Everything the server has printed so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self) -> str:
        lines = self.log().splitlines()
        return "\n".join(lines[-STDERR_TAIL_LINES:]) or "(the server printed nothing)"

    def _fail(self, what: str) -> ServingRuntimeError:
        command = " ".join(["python"] + self.command[1:])
        return ServingRuntimeError(
            f"{what}\nServer command: {command}\nLast lines of its output ({self.log_path}):\n"
            f"{self.log_tail()}")

    def _wait_until_available(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise self._fail(f"The model server exited with code {code} before serving "
                                 f"'{self.model_name}'.")
            try:
                reply = self._session.get(self.model_url, timeout=5)
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
            reply = self._session.post(self.model_url + ":predict", data=data, timeout=60,
                                       headers={"Content-Type": "application/json"})
        except requests.RequestException as e:
            raise self._fail(f"A {signature_name} request to {self.model_url}:predict failed: {e}") from e
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

