"""Serving benchmark: `python -m pipeline serve` on a pushed model, over loopback HTTP.

    .venv/bin/python bench/serving_latency.py [SERVING_DIR] [--requests 1000] [--seconds 10]

SERVING_DIR defaults to serving_model/ (what `make run` pushes). Measures, with raw JSON examples
(serving_raw): single-request latency p50/p99 for one example (one client, sequential, keep-alive);
throughput with concurrent client threads sending one example per request (batching is then the
server's doing) and 16 per request; the in-process signature call as the limit (same SavedModel, no
HTTP); and the server's memory. Prints a table; writes bench/results/serving.json.
Goals (issue 4): p50 <= 5 ms, >= 2,000 examples/s.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.memory import TreeMemorySampler  # noqa: E402
from components.serving_runtime import LocalServer, ServingRuntimeError  # noqa: E402
from pipeline.config import PipelineConfig, default_data_root  # noqa: E402
from pipeline.serving import client  # noqa: E402

TYPES = client.serving_column_types(PipelineConfig().spec)

RESULTS = os.path.join(REPO, "bench", "results")
GOAL_P50_MS, GOAL_EXAMPLES_PER_S = 5.0, 2000


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def single_latency(url, model_name, bodies, n):
    """Milliseconds per request, one client, sequential requests on one keep-alive connection."""
    host, port = url.split("//")[1].split(":")
    path = client.predict_url("", model_name)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    latencies = []
    for i in range(n + 50):
        started = time.perf_counter()
        connection.request("POST", path, body=bodies[i % len(bodies)],
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"server answered {response.status}")
        if i >= 50:  # the first 50 warm the connection and the server
            latencies.append(elapsed * 1000)
    connection.close()
    return latencies


def throughput(url, model_name, bodies, concurrency, seconds):
    """Requests/s from `concurrency` client threads, each on its own keep-alive connection.

    http.client, not httpx's AsyncClient: measured here, one asyncio httpx client tops out near 100
    requests/s on this machine (the client, not the server, was the limit), while threads with
    http.client send each request in one write.
    """
    host, port = url.split("//")[1].split(":")
    path = client.predict_url("", model_name)
    done, errors = [0] * concurrency, [0] * concurrency
    deadline = time.perf_counter() + seconds

    def worker(k):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        i = k
        while time.perf_counter() < deadline:
            connection.request("POST", path, body=bodies[i % len(bodies)],
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                done[k] += 1
            else:
                errors[k] += 1
            i += concurrency
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started), sum(errors)


def model_calls(url):
    text = httpx.get(f"{url}/monitoring/prometheus/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("serving_model_calls_total{") and 'signature="serving_raw"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def in_process(model_dir, rows, n):
    """The same signature called in this process: the floor for latency, the ceiling for throughput."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    import models  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    version = max((v for v in os.listdir(model_dir) if v.isdigit()), key=int)
    signature = tf.saved_model.load(os.path.join(model_dir, version)).signatures["serving_raw"]
    spec = signature.structured_input_signature[1]
    instances = client.raw_request(rows, TYPES)["instances"]

    def batch(start, size):
        chosen = [instances[(start + k) % len(instances)] for k in range(size)]
        return {c: tf.constant(np.array([i[c] for i in chosen]), dtype=spec[c].dtype) for c in spec}

    one = [batch(i, 1) for i in range(64)]
    for inputs in one[:20]:
        signature(**inputs)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        signature(**one[i % len(one)])
        latencies.append((time.perf_counter() - started) * 1000)
    big = batch(0, 128)
    signature(**big)
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < 3:
        signature(**big)
        calls += 1
    return latencies, calls * 128 / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("serving_dir", nargs="?", default=os.path.join(REPO, "serving_model"))
    parser.add_argument("--model-name", default=PipelineConfig().model_name)
    parser.add_argument("--requests", type=int, default=1000, help="sequential single requests")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--examples-per-request", type=int, nargs="+", default=[1, 16],
                        help="request sizes of the throughput runs")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `pipeline serve` flag, e.g. --server-arg=--batch-timeout-ms=2")
    args = parser.parse_args()
    serving_dir = os.path.abspath(args.serving_dir)
    model_dir = os.path.join(serving_dir, args.model_name)
    if not os.path.isdir(model_dir):
        raise SystemExit(f"No model at {model_dir}: run `make run` first, or pass the serving directory "
                         "a pipeline run pushed to.")

    import csv  # pylint: disable=import-outside-toplevel

    with open(os.path.join(default_data_root(), "data.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:512]
    bodies = [json.dumps(client.raw_request([row], TYPES)).encode() for row in rows]

    log_path = os.path.join(tempfile.mkdtemp(prefix="bench_serving_"), "server.log")
    try:
        server = LocalServer(serving_dir, args.model_name, log_path, startup_timeout_s=300,
                             extra_args=args.server_arg).start()
    except ServingRuntimeError as e:
        raise SystemExit(str(e)) from e
    url = server.url
    try:
        with TreeMemorySampler(server.process.pid) as memory:
            latencies = single_latency(url, args.model_name, bodies, args.requests)
            concurrent = []
            for size in args.examples_per_request:
                sized = [json.dumps(client.raw_request(rows[i:i + size], TYPES)).encode()
                         for i in range(0, len(rows) - size, size)]
                calls_before = model_calls(url)
                requests_per_s, errors = throughput(url, args.model_name, sized, args.concurrency,
                                                    args.seconds)
                calls = model_calls(url) - calls_before
                examples = requests_per_s * args.seconds * size
                concurrent.append({"examples_per_request": size, "clients": args.concurrency,
                                   "seconds": args.seconds, "requests_per_s": requests_per_s,
                                   "examples_per_s": requests_per_s * size, "errors": errors,
                                   "examples_per_model_call": examples / calls if calls else None})
    finally:
        server.stop()
    rss_mb, peak_mb = memory.samples[-1][1] / 2**20, memory.peak_mb()  # at the end; peak while measured
    local_latencies, local_examples_per_s = in_process(model_dir, rows, args.requests)

    results = {
        "serving_dir": serving_dir,
        "single_request_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                              "mean": statistics.mean(latencies), "n": len(latencies)},
        "concurrent": concurrent,
        "in_process": {"single_call_ms_p50": percentile(local_latencies, 50),
                       "single_call_ms_p99": percentile(local_latencies, 99),
                       "batch_128_examples_per_s": local_examples_per_s},
        "server_memory_mb": {"rss": rss_mb, "peak_rss": peak_mb},
        "server_args": args.server_arg,
        "goals": {"p50_ms": GOAL_P50_MS, "examples_per_s": GOAL_EXAMPLES_PER_S},
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "serving.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)

    table = Table(title=f"Serving {args.model_name} from {serving_dir} (raw JSON examples, serving_raw)")
    for column in ("measure", "server over HTTP", "in-process signature call", "goal"):
        table.add_column(column)
    single = results["single_request_ms"]
    table.add_row("latency p50", f"{single['p50']:.2f} ms",
                  f"{results['in_process']['single_call_ms_p50']:.2f} ms", f"<= {GOAL_P50_MS} ms")
    table.add_row("latency p99", f"{single['p99']:.2f} ms",
                  f"{results['in_process']['single_call_ms_p99']:.2f} ms", "")
    for run in concurrent:
        table.add_row(f"throughput, {run['clients']} clients x {run['examples_per_request']} "
                      "example(s)/request",
                      f"{run['examples_per_s']:,.0f} examples/s "
                      f"({run['examples_per_model_call'] or 0:.1f} per model call)",
                      f"{local_examples_per_s:,.0f} examples/s (batches of 128)",
                      f">= {GOAL_EXAMPLES_PER_S:,} examples/s")
    table.add_row("server memory", f"{rss_mb:,.0f} MB RSS (peak {peak_mb:,.0f} MB while measured)", "", "")
    Console().print(table)
    print(f"Wrote {os.path.join(RESULTS, 'serving.json')}")


if __name__ == "__main__":
    main()
