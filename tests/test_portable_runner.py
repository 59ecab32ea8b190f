"""The pipeline's Beam work through Beam's portable runner, the submission path of a Flink or Spark cluster.

A job service (`local_job_service_main`) takes the jobs, a separate worker pool process
(`worker_pool_main`, `--environment_type=EXTERNAL`) runs them. The worker pool has no PYTHONPATH and runs in
an empty directory, so its workers can import the project only as the installed package, as on a cluster.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from components.serving_runtime import free_ports
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

VENV_BIN = os.path.dirname(sys.executable)


def _start(module_args, cwd, log_path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # The worker pool starts each SDK worker as `python -c ...`: that must be this venv's python.
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    # Workers load the trained model with TFMA: Keras 2, as every worker image must set (README).
    env["TF_USE_LEGACY_KERAS"] = "1"
    with open(log_path, "w", encoding="utf-8") as log:
        # Own session: teardown stops the service and the worker processes it started, nothing else.
        return subprocess.Popen([sys.executable, "-m", *module_args], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:  # SDK workers the pool started, if any outlived it
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def beam_services(tmp_path):
    """A job service and an external worker pool on free local ports; both stopped afterwards."""
    port_file = tmp_path / "job_service.port"
    job_log, pool_log = tmp_path / "job_service.log", tmp_path / "worker_pool.log"
    pool_dir = tmp_path / "worker_pool"
    pool_dir.mkdir()
    (pool_port,) = free_ports(1)
    job_service = _start(["apache_beam.runners.portability.local_job_service_main", "--port=0",
                          f"--port_file={port_file}"], tmp_path, job_log)
    worker_pool = _start(["apache_beam.runners.worker.worker_pool_main",
                          f"--service_port={pool_port}"], pool_dir, pool_log)
    try:
        deadline = time.time() + 120
        while not port_file.exists():
            assert job_service.poll() is None, job_log.read_text()
            assert time.time() < deadline, "the job service did not start:\n" + job_log.read_text()
            time.sleep(0.2)
        while True:  # the pool is up once its port accepts connections
            assert worker_pool.poll() is None, pool_log.read_text()
            try:
                socket.create_connection(("127.0.0.1", pool_port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the worker pool did not start:\n" + pool_log.read_text()
                time.sleep(0.2)
        yield {"job_port": int(port_file.read_text()), "pool_port": pool_port,
               "job_log": job_log, "pool_log": pool_log}
    finally:
        _stop(job_service)
        _stop(worker_pool)


def test_pipeline_runs_through_the_portable_runner_and_pushes(tmp_path, small_data_root,
                                                              beam_services):
    result = run_cli(
        "--data-root", small_data_root, "--output-dir", str(tmp_path / "out"),
        "--serving-dir", str(tmp_path / "serving"), "--train-steps", "200", "--eval-steps", "5",
        "--", "--runner=PortableRunner", f"--job_endpoint=localhost:{beam_services['job_port']}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{beam_services['pool_port']}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Pushed" in result.stdout
    (version,) = os.listdir(tmp_path / "serving" / "big_tipper")
    assert os.path.isfile(tmp_path / "serving" / "big_tipper" / version / "saved_model.pb")

    # The Beam work went through the job service, one job per Beam pipeline: ExampleGen,
    # StatisticsGen, Transform (analysis and transform) and Evaluator ...
    jobs = re.findall(r"Running job '(job-[0-9a-f-]+)'", beam_services["job_log"].read_text())
    assert len(set(jobs)) >= 4, jobs
    # ... and the bundles ran in SDK workers the external pool started, not in this process.
    workers = re.findall(r"Starting worker with command .*worker_id=\"(\w+)\"",
                         beam_services["pool_log"].read_text())
    assert len(workers) >= len(set(jobs)), (jobs, workers)
