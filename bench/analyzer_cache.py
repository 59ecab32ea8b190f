"""Transform's time for a new span with the analyzer cache and without, on a window of three spans.

    .venv/bin/python bench/analyzer_cache.py [--rows-per-span 150000] [--work-dir /tmp/bench_cache]

Writes three spans of replicated-and-perturbed taxi rows (bench/generate_taxi_data.py, one file per
span), then runs the pipeline's own DAG up to Transform (LocalDagRunner, --span-window 3, caching on)
in a fresh output directory: span 1, span 2, span 3 (Transform fed the cache of the window [1, 2]:
spans 1 and 2 hit), then the same window alternately with --no-cache (span 3 ingested again, no
analyzer cache), with the cache (spans 1 and 2 hit, the re-ingested span 3 analyzed) and with --no-cache
again. Prints Transform's seconds per run.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfx.dsl.compiler import compiler  # noqa: E402
from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: E402
from tfx.proto.orchestration import pipeline_pb2  # noqa: E402

from bench import generate_taxi_data  # noqa: E402
from pipeline import beam_tuning  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402
from pipeline.run_summary import summarize  # noqa: E402


def up_to_transform(config: PipelineConfig) -> pipeline_pb2.Pipeline:
    """The pipeline's DAG, compiled, without what follows Transform (training would dominate)."""
    full = create_pipeline(config)
    kept, pending = set(), [next(c for c in full.components if c.id == "Transform")]
    while pending:
        node = pending.pop()
        if node.id not in kept:
            kept.add(node.id)
            pending.extend(node.upstream_nodes)
    ir = compiler.Compiler().compile(full)
    nodes = [n for n in ir.nodes if n.pipeline_node.node_info.id in kept]
    del ir.nodes[:]
    ir.nodes.extend(nodes)
    return ir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-span", type=int, default=150_000)
    parser.add_argument("--work-dir", default=os.path.join("/tmp", "bench_cache"))
    args = parser.parse_args(argv)
    beam_tuning.install()  # as pipeline/local_runner.py does for every run
    generated = os.path.join(args.work_dir, f"taxi-3x{args.rows_per_span}")
    if not os.path.exists(generated + ".complete"):
        shutil.rmtree(generated, ignore_errors=True)
        generate_taxi_data.main(["--rows", str(3 * args.rows_per_span), "--files", "3",
                                 "--output", generated])
        open(generated + ".complete", "w", encoding="utf-8").close()
    data, out = os.path.join(args.work_dir, "spans"), os.path.join(args.work_dir, "out")
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    files = sorted(os.listdir(generated))
    results = []
    for label, span, cache in (("span 1", 1, True), ("span 2: window [1, 2], span 1 cached", 2, True),
                               ("span 3: window [1, 2, 3], spans 1-2 cached", 3, True),
                               ("window again, --no-cache (span 3 re-ingested)", 3, False),
                               ("window again, cache (spans 1-2 cached)", 3, True),
                               ("window again, --no-cache", 3, False)):
        if not os.path.exists(os.path.join(data, f"span-{span}")):
            os.makedirs(os.path.join(data, f"span-{span}"))
            os.symlink(os.path.join(generated, files[span - 1]),
                       os.path.join(data, f"span-{span}", files[span - 1]))
        config = PipelineConfig(data_root=data, output_dir=out, span_versioned=True, span_window=3,
                                enable_cache=cache)
        LocalDagRunner().run_with_ir(up_to_transform(config))
        summary = summarize(config.metadata_path, config.pipeline_name)
        transform = summary.component("Transform")
        results.append((label, transform.state, transform.seconds))
        print(f"{label}: Transform {transform.state} in {transform.seconds:.1f} s", flush=True)
    print("\n| run | Transform |\n|---|---|")
    for label, state, seconds in results:
        print(f"| {label} | {seconds:.1f} s ({state}) |")


if __name__ == "__main__":
    main()
