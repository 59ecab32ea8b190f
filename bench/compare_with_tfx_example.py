"""Our pipeline vs TFX's taxi_pipeline_native_keras example, side by side, on the same taxi data.

    .venv/bin/python bench/compare_with_tfx_example.py [--pairs N] [--append] [--skip-example-rerun]
        [--keep]

For each: cold runs (fresh output directory), then a re-run with nothing changed. Prints wall time,
per-component time (from each run's own MLMD store), peak memory of the whole process tree, the
evaluation AUC and what was pushed; the ratio of cold wall times. The cold runs alternate, ours then
theirs, `--pairs` times, and the median of the pairs' ratios is the figure: on a 2-core machine one
pair's ratio moves by +-0.1 with whatever else runs. Writes bench/results/compare.json; with
`--append`, this call's pairs and re-runs join the ones already there and the median is over all of
them (e.g. one pair per call, when the machine is shared between calls). The runs' output
directories and logs go to a temporary directory, removed at the end unless `--keep` or a run failed.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.memory import run_sampled  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.run_summary import summarize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def run_measured(command, log_path):
    """Wall seconds, exit code and peak RSS (MB) summed over the process and its children."""
    wall, exit_code, sampler = run_sampled(command, log_path)
    if exit_code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            sys.stderr.write(f.read()[-3000:])
    return {"wall_s": wall, "exit_code": exit_code, "peak_rss_mb": sampler.peak_mb()}


def pushed_versions(serving_dir):
    found = []
    for root, dirs, _ in os.walk(serving_dir):
        found += [os.path.join(root, d) for d in dirs if d.isdigit()]
    return sorted(found)


def measure(name, command, output_dir, serving_dir, metadata_path, pipeline_name):
    slug = "".join(c if c.isalnum() else "_" for c in name)
    result = run_measured(command, os.path.join(os.path.dirname(output_dir), f"{slug}.log"))
    summary = summarize(metadata_path, pipeline_name)
    overall = summary.metrics.get("Overall", {})
    result.update({
        "name": name,
        "components": {c.name: {"state": c.state, "seconds": round(c.seconds, 1)}
                       for c in summary.components},
        "auc": overall.get("auc"), "binary_accuracy": overall.get("binary_accuracy"),
        "blessed": summary.blessed, "pushed_versions": len(pushed_versions(serving_dir)),
    })
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="cold runs of each, alternating")
    parser.add_argument("--append", action="store_true",
                        help="add to the pairs in bench/results/compare.json instead of replacing them")
    parser.add_argument("--skip-example-rerun", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the runs' output directories and logs (printed at the end)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_compare_")
    failed = True
    try:
        failed = any(r["exit_code"] for r in _compare(args, work))
    finally:
        if args.keep or failed:
            print(f"Runs and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _compare(args, work: str) -> list:
    """Runs the pairs and the re-runs in `work`, prints and saves the figures; returns this call's
    runs."""
    results_path = os.path.join(RESULTS, "compare.json")
    earlier = {"runs": [], "cold_ratios": []}
    if args.append and os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            earlier = json.load(f)

    def ours(label, pair):
        output_dir = os.path.join(work, f"ours_{pair}")
        serving_dir = os.path.join(output_dir, "serving_model")
        config = PipelineConfig(output_dir=output_dir)
        return measure(label, [sys.executable, "-m", "pipeline", "run", "--output-dir", output_dir,
                               "--serving-dir", serving_dir],
                       output_dir, serving_dir, config.metadata_path, config.pipeline_name)

    def theirs(label, pair):
        output_dir = os.path.join(work, f"tfx_example_{pair}")
        return measure(label, [sys.executable, os.path.join(HERE, "run_tfx_taxi_example.py"),
                               output_dir],
                       output_dir, os.path.join(output_dir, "serving_model"),
                       os.path.join(output_dir, "metadata.sqlite"), "chicago_taxi_native_keras")

    runs, ratios = [], []
    first = len(earlier["cold_ratios"]) + 1
    for pair in range(first, first + args.pairs):
        runs += [ours(f"ours: cold #{pair}", pair), theirs(f"tfx example: cold #{pair}", pair)]
        ratios.append(runs[-2]["wall_s"] / runs[-1]["wall_s"])
    cold = runs[-2]
    rerun = ours(f"ours: re-run #{pair}, unchanged", pair)
    runs.append(rerun)
    if not args.skip_example_rerun:
        runs.append(theirs(f"tfx example: re-run #{pair}, unchanged", pair))
    this_call = runs
    runs, ratios = earlier["runs"] + runs, earlier["cold_ratios"] + ratios

    console = Console(width=140)
    table = Table(title="Taxi pipeline: ours vs TFX's taxi_pipeline_native_keras (same data, same machine)")
    for column in ("run", "wall s", "peak RSS MB", "eval AUC", "blessed", "versions pushed", "exit"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for r in runs:
        table.add_row(r["name"], f"{r['wall_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                      "-" if r["auc"] is None else f"{r['auc']:.4f}", str(r["blessed"]),
                      str(r["pushed_versions"]), str(r["exit_code"]))
    console.print(table)
    for r in runs:
        console.print(f"[bold]{r['name']}[/] per component (s): " + ", ".join(
            f"{name} {c['seconds']} ({c['state']})" for name, c in r["components"].items()))
    ratio = statistics.median(ratios)
    console.print("Cold wall-time ratio ours / tfx example: [bold]{:.2f}x[/] (median of {}; goal <= 0.5x)"
                  .format(ratio, ", ".join(f"{r:.2f}" for r in ratios)))
    # A resolver has no executor and is never cached: it re-queries MLMD (milliseconds).
    not_cached = [name for name, c in rerun["components"].items()
                  if c["state"] != "cached" and not name.endswith("_resolver")]
    console.print(f"Unchanged re-run: {rerun['wall_s']:.1f} s (goal <= 15 s), "
                  + (f"not cached: {', '.join(not_cached)}" if not_cached else "every component cached")
                  + f", versions pushed {cold['pushed_versions']} -> {rerun['pushed_versions']} "
                  "(goal: no new one)")
    os.makedirs(RESULTS, exist_ok=True)
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "cold_ratio": ratio, "cold_ratios": ratios,
                   "rerun_not_cached": not_cached,
                   "cpu_count": os.cpu_count()}, f, indent=2)
    return this_call


if __name__ == "__main__":
    main()
