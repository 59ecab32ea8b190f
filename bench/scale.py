"""How the pipeline scales with data: wall time, rows/s and peak memory per data size and Beam mode.

    .venv/bin/python bench/scale.py [--sizes 15000,150000,1500000] [--modes in_memory,multi_processing]

For each size, writes replicated-and-perturbed taxi rows (bench/generate_taxi_data.py; kept in
--work-dir and reused), then for each mode runs the real pipeline through the CLI in a fresh output
directory with --no-cache, sampling the resident memory of the whole process tree (the CLI and every
Beam worker process) every 0.2 s. multi_processing uses `--direct_num_workers` (--workers, default 2).
Prints a table, the time per row relative to the smallest size (flat = linear scaling), each
component's duration and its peak memory (from the run's ML Metadata), and merges the figures into
bench/results/scale.json (keyed by size and mode, so sizes and modes can be measured one at a time).

After each run, on the same files and the run's own outputs, bench/limits.py measures what the machine
can do for each Beam component's work with the same libraries and no Beam; each component's time is
printed as a multiple of that limit (goal: within 3x at 1.5M rows).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import generate_taxi_data  # noqa: E402
from bench.memory import run_sampled  # noqa: E402
from pipeline.config import BEAM_MODES, PipelineConfig  # noqa: E402
from pipeline.run_summary import latest_run_id, open_store  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "scale.json")
GOAL_PEAK_MB = 4096
GOAL_LIMIT_RATIO = 3


def data_dir(work_dir: str, rows: int, seed: int) -> str:
    """The generated data for `rows`, written once; a marker file says the directory is complete.

    The marker sits beside the directory: CsvExampleGen reads every file inside it, hidden ones too.
    """
    path = os.path.join(work_dir, f"taxi-{rows}-seed{seed}")
    if not os.path.exists(path + ".complete"):
        shutil.rmtree(path, ignore_errors=True)
        generate_taxi_data.main(["--rows", str(rows), "--output", path, "--seed", str(seed)])
        open(path + ".complete", "w", encoding="utf-8").close()
    return path


def component_windows(metadata_path: str, pipeline_name: str):
    """(component, state, start s, end s) for each execution of the latest run, from ML Metadata."""
    store = open_store(metadata_path)
    context = store.get_context_by_type_and_name("pipeline_run",
                                                 latest_run_id(store, pipeline_name))
    windows = []
    for execution in sorted(store.get_executions_by_context(context.id),
                            key=lambda e: (e.create_time_since_epoch, e.id)):
        name = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                     if store.get_context_types_by_id([c.type_id])[0].name == "node"),
                    execution.type)
        windows.append((name, execution.last_known_state, execution.create_time_since_epoch / 1e3,
                        execution.last_update_time_since_epoch / 1e3))
    return windows


def measure(data: str, rows: int, mode: str, workers: int, work_dir: str, keep: bool,
            limits: bool = True) -> dict:
    out = os.path.join(work_dir, f"run-{rows}-{mode}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    config = PipelineConfig(output_dir=out)
    command = [sys.executable, "-m", "pipeline", "run", "--data-root", data, "--output-dir", out,
               "--serving-dir", os.path.join(out, "serving_model"), "--no-cache", "--beam-mode", mode]
    if mode == "multi_processing":
        command += ["--", f"--direct_num_workers={workers}"]
    wall, exit_code, sampler = run_sampled(command, os.path.join(work_dir, f"run-{rows}-{mode}.log"))
    samples = sampler.samples
    result = {"rows": rows, "mode": mode, "command": command, "exit_code": exit_code,
              "wall_s": round(wall, 1), "rows_per_s": round(rows / wall),
              "peak_rss_mb": round(max(rss for _, rss, _ in samples) / 2**20),
              "peak_cli_process_rss_mb": round(max(main for _, _, main in samples) / 2**20),
              "components": {}}
    if exit_code != 0:
        with open(os.path.join(work_dir, f"run-{rows}-{mode}.log"), encoding="utf-8") as f:
            sys.stderr.write(f.read()[-3000:])
    if os.path.exists(config.metadata_path):
        for name, _, start, end in component_windows(config.metadata_path, config.pipeline_name):
            during = [(rss, main) for t, rss, main in samples if start <= t <= end]
            result["components"][name] = {
                "seconds": round(end - start, 1),
                "peak_rss_mb": round(max(r for r, _ in during) / 2**20) if during else None,
                "peak_cli_process_rss_mb": round(max(m for _, m in during) / 2**20) if during else None}
    pushed = os.path.join(out, "serving_model", config.model_name)
    result["pushed"] = os.path.isdir(pushed) and bool(os.listdir(pushed))
    if exit_code == 0 and limits:
        result["limits"] = measure_limits(data, out, work_dir)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


def measure_limits(data: str, out: str, work_dir: str) -> dict:
    """bench/limits.py in a fresh process, as the pipeline ran: {component: seconds}."""
    log = os.path.join(work_dir, "limits.log")
    with open(log, "w", encoding="utf-8") as stderr:
        done = subprocess.run([sys.executable, "-m", "bench.limits", "--data-root", data,
                               "--output-dir", out], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              cwd=os.path.dirname(HERE), check=False)
    if done.returncode != 0:
        with open(log, encoding="utf-8") as f:
            sys.stderr.write(f.read()[-3000:])
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_results() -> list:
    if not os.path.exists(RESULTS):
        return []
    with open(RESULTS, encoding="utf-8") as f:
        return json.load(f)["runs"]


def save_results(runs: list) -> None:
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "cpu_count": os.cpu_count(),
                   "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}, f, indent=2)


def _mb(value) -> str:
    return "-" if value is None else f"{value:,}"


def report(runs: list, console: Console) -> None:
    runs = sorted(runs, key=lambda r: (r["mode"], r["rows"]))
    table = Table(title="Pipeline scale: the CLI on replicated taxi rows, fresh output, --no-cache")
    for column in ("mode", "rows", "wall s", "rows/s", "s per 10k rows", "vs smallest",
                   "peak RSS MB", "of it CLI", "peak during", "pushed", "exit"):
        table.add_column(column, justify="left" if column in ("mode", "peak during") else "right")
    smallest = {}
    for r in runs:
        per_row = r["wall_s"] / r["rows"]
        base = smallest.setdefault(r["mode"], per_row)
        peak_in = max(r["components"].items(), key=lambda kv: kv[1]["peak_rss_mb"] or 0,
                      default=("-", None))[0]
        table.add_row(r["mode"], f"{r['rows']:,}", f"{r['wall_s']:.1f}", f"{r['rows_per_s']:,}",
                      f"{per_row * 1e4:.2f}", f"{per_row / base:.2f}x",
                      f"{r['peak_rss_mb']:,}", _mb(r.get("peak_cli_process_rss_mb")), peak_in,
                      str(r["pushed"]), str(r["exit_code"]))
    console.print(table)
    console.print("'peak RSS' sums the CLI process and Beam's worker processes; 'of it CLI' is the "
                  "CLI process alone.")
    console.print("'vs smallest': time per row relative to the mode's smallest size; <= 1.00x means "
                  "time grew no worse than linearly. Peak RSS goal: under "
                  f"{GOAL_PEAK_MB:,} MB at 1.5M rows.")
    for r in runs:
        console.print(f"[bold]{r['mode']} {r['rows']:,}[/] per component (s / peak MB): " + ", ".join(
            f"{name} {c['seconds']} / {c['peak_rss_mb']}" for name, c in r["components"].items()
            if c["seconds"] >= 0.5))
    report_limits(runs, console)


def report_limits(runs: list, console: Console) -> None:
    """Each Beam component's time as a multiple of what the machine does without Beam."""
    measured = [r for r in runs if r.get("limits")]
    if not measured:
        return
    table = Table(title="Beam components against their limit (bench/limits.py: the same libraries "
                        "and files, no Beam)")
    for column in ("mode", "rows", "component", "seconds", "limit s", "x limit"):
        table.add_column(column, justify="left" if column in ("mode", "component") else "right")
    for r in measured:
        for name, limit in r["limits"].items():
            # "Trainer (tf.data read)" and "Trainer (model from memory)" are both the Trainer's.
            seconds = r["components"].get(name.split(" (")[0], {}).get("seconds")
            ratio = f"{seconds / limit:.1f}x" if seconds is not None and limit > 0 else "-"
            table.add_row(r["mode"], f"{r['rows']:,}", name, "-" if seconds is None else f"{seconds}",
                          f"{limit}", ratio)
    console.print(table)
    console.print(f"Goal: every Beam component within {GOAL_LIMIT_RATIO}x of its limit at 1.5M rows. "
                  "Transform has two: its graph on every example (no analysis pass, no writing) "
                  "and that plus the analysis pass's reading and graph and the writing of its "
                  "output (the analyzers' combining left out); the Evaluator has two: its model's "
                  "signature on its sample, and that plus reading every eval row once for the "
                  "sample, the labels, the slices and TFMA's metrics per slice; the Trainer has two, "
                  "for the steps its epochs took: a pure tf.data read of its records (no model) and "
                  "its model fed its batches from memory (no input pipeline).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="15000,150000,1500000",
                        help="comma-separated row counts (default 15000,150000,1500000)")
    parser.add_argument("--modes", default="in_memory,multi_processing",
                        help=f"comma-separated, from {', '.join(BEAM_MODES)}")
    parser.add_argument("--workers", type=int, default=2,
                        help="--direct_num_workers for multi_processing (default 2)")
    parser.add_argument("--work-dir", default=os.path.join("/tmp", "bench_scale"),
                        help="where generated data (reused) and run outputs go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep each run's output directory")
    parser.add_argument("--no-limits", dest="limits", action="store_false",
                        help="skip bench/limits.py after each run (the 3x goal is at 1.5M rows; "
                        "at 10M its in-memory yardsticks add minutes)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in BEAM_MODES]
    if unknown or not sizes or min(sizes) < 1:
        parser.error(f"--modes must be from {', '.join(BEAM_MODES)} (got {', '.join(unknown)}) and "
                     "--sizes positive row counts")
    os.makedirs(args.work_dir, exist_ok=True)
    console = Console(width=150)
    runs = load_results()
    for rows in sizes:
        data = data_dir(args.work_dir, rows, args.seed)
        for mode in modes:
            console.print(f"Running {mode} on {rows:,} rows ...")
            result = measure(data, rows, mode, args.workers, args.work_dir, args.keep,
                             args.limits)
            runs = [r for r in runs if (r["rows"], r["mode"]) != (rows, mode)] + [result]
            save_results(runs)  # after each run, so an interrupted sweep keeps what it measured
    report(runs, console)
    console.print(f"Figures: {RESULTS}")


if __name__ == "__main__":
    main()
