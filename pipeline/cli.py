"""`python -m pipeline`: run the pipeline locally and report what happened."""
import dataclasses
import json
import logging
import os
import sys
import time
import warnings

# Before TensorFlow loads: hide its C++ start-up noise (CUDA plugin registration on CPU machines).
# Real failures still surface as Python exceptions; --verbose does not change this, the env var does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from pipeline.config import DEFAULT_BEAM_ARGS, PipelineConfig  # noqa: E402

# Piped output (CI logs, files) gets a width that fits the metrics table instead of rich's 80.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
        return
    warnings.filterwarnings("ignore")
    import absl.logging  # pylint: disable=import-outside-toplevel

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)


def _error(message: str) -> None:
    # soft_wrap: keep paths and messages on one line so they can be copied and grepped.
    err_console.print(message, soft_wrap=True)


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@click.group()
def main():
    """A TFX pipeline: taxi CSV to a validated, evaluated, TF-Serving-ready model."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--data-root", type=click.Path(), default=None,
              help="Directory of CSV files (header row required). Default: the taxi sample in tfx.")
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True,
              help="Pipeline root (artifacts) and the SQLite metadata store.")
@click.option("--serving-dir", type=click.Path(), default="serving_model", show_default=True,
              help="Blessed models are pushed to <serving-dir>/<model-name>/<version>/.")
@click.option("--model-name", default=PipelineConfig.model_name, show_default=True)
@click.option("--train-steps", type=click.IntRange(min=1), default=PipelineConfig.train_steps,
              show_default=True)
@click.option("--eval-steps", type=click.IntRange(min=1), default=PipelineConfig.eval_steps,
              show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=PipelineConfig.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=PipelineConfig.batch_size,
              show_default=True)
@click.option("--auc-floor", type=click.FloatRange(0, 1), default=PipelineConfig.auc_floor,
              show_default=True, help="Evaluator blesses only models with at least this AUC.")
@click.option("--no-cache", is_flag=True, help="Re-run every component even if its inputs are unchanged.")
@click.option("--beam-arg", "beam_arg", multiple=True,
              help="A Beam pipeline option, e.g. --beam-arg=--runner=DataflowRunner (repeatable). "
                   "Arguments after `--` are passed to Beam too.")
@click.option("--verbose", is_flag=True, help="Show TFX, Beam and TensorFlow logs.")
@click.option("--print-config", is_flag=True, help="Print the resolved configuration as JSON and exit.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def run(data_root, output_dir, serving_dir, model_name, train_steps, eval_steps, epochs, batch_size,
        auc_floor, no_cache, beam_arg, verbose, print_config, beam_args):
    """Run the whole pipeline locally (Beam DirectRunner unless Beam arguments say otherwise)."""
    from pipeline.config import default_data_root  # pylint: disable=import-outside-toplevel

    extra_beam_args = tuple(beam_arg) + tuple(beam_args)
    config = PipelineConfig(
        data_root=data_root or default_data_root(), output_dir=output_dir, serving_dir=serving_dir,
        model_name=model_name, train_steps=train_steps, eval_steps=eval_steps, epochs=epochs,
        batch_size=batch_size, auc_floor=auc_floor, enable_cache=not no_cache,
        beam_args=extra_beam_args or DEFAULT_BEAM_ARGS)
    if print_config:
        click.echo(json.dumps(dataclasses.asdict(config), indent=2))
        return

    _quiet_libraries(verbose)
    # Imported here so `--help` and `--print-config` stay fast.
    from pipeline import data_checks  # pylint: disable=import-outside-toplevel

    try:
        check = data_checks.check_data_root(config.data_root)
    except data_checks.InputDataError as e:
        _error(f"[bold red]Bad input data[/]: {escape(str(e))}")
        sys.exit(EXIT_BAD_INPUT)
    for warning in check.warnings:
        _error(f"[yellow]Warning[/]: {escape(warning)}")
    console.print(f"Running [bold]{config.pipeline_name}[/] on {check.rows:,} rows from "
                  f"{escape(config.data_root)}", soft_wrap=True)
    console.print(f"Artifacts and metadata: {escape(config.output_dir)}", soft_wrap=True)

    from pipeline import local_runner, run_lock  # pylint: disable=import-outside-toplevel

    started = time.time()
    try:
        outcome = local_runner.run(config)
    except run_lock.RunLockedError as e:
        _error(f"[bold red]Busy[/]: {escape(str(e))}")
        sys.exit(EXIT_BUSY)
    elapsed = time.time() - started
    if outcome.summary is not None:
        from pipeline.summary_view import render  # pylint: disable=import-outside-toplevel

        render(outcome.summary, console)
    if outcome.error is not None:
        cause = _root_cause(outcome.error)
        if outcome.bad_data:
            _error("[bold red]Bad input data[/] (nothing was trained or pushed): "
                   f"{escape(str(cause))}")
            sys.exit(EXIT_BAD_INPUT)
        _error(f"[bold red]Pipeline failed[/] in {outcome.failed_component or 'a component'}: "
               f"{type(cause).__name__}: {escape(str(cause))}\n"
               "Re-run with --verbose for the full logs.")
        sys.exit(EXIT_FAILED)
    console.print(f"Finished in {elapsed:.1f} s.")


@main.command()
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True)
@click.option("--run-id", default=None, help="A run id from the metadata store; default: the latest.")
def summary(output_dir, run_id):
    """Print the summary of a past run from the metadata store."""
    _quiet_libraries(False)
    from pipeline.run_summary import summarize  # pylint: disable=import-outside-toplevel
    from pipeline.summary_view import render  # pylint: disable=import-outside-toplevel

    config = PipelineConfig(output_dir=output_dir)
    try:
        render(summarize(config.metadata_path, config.pipeline_name, run_id), console)
    except (FileNotFoundError, LookupError) as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True)
def runs(output_dir):
    """List past runs from the metadata store: what ran, the AUC, blessed or not, what was pushed."""
    _quiet_libraries(False)
    from rich.table import Table  # pylint: disable=import-outside-toplevel

    from pipeline.run_summary import open_store, run_ids, summarize  # pylint: disable=import-outside-toplevel

    config = PipelineConfig(output_dir=output_dir)
    if not os.path.exists(config.metadata_path):
        _error(f"[red]No metadata store at {escape(config.metadata_path)}: has the pipeline run here?[/]")
        sys.exit(EXIT_FAILED)
    table = Table(title=f"Runs of {config.pipeline_name} in {escape(config.output_dir)}")
    for column in ("run id", "ran", "cached", "failed", "AUC", "blessed", "pushed"):
        table.add_column(column)
    for run_id in run_ids(open_store(config.metadata_path), config.pipeline_name):
        past = summarize(config.metadata_path, config.pipeline_name, run_id)
        states = [c.state for c in past.components]
        auc = past.metrics.get("Overall", {}).get("auc")
        pushed = past.to_record()["pushed_this_run"]
        table.add_row(run_id, str(states.count("ran")), str(states.count("cached")),
                      str(states.count("failed")), "-" if auc is None else f"{auc:.4f}",
                      {True: "yes", False: "no", None: "-"}[past.blessed],
                      escape(os.path.basename(past.pushed_path)) if pushed else "-")
    console.print(table)


@main.command()
@click.option("--serving-dir", type=click.Path(), default="serving_model", show_default=True)
@click.option("--model-name", default=PipelineConfig.model_name, show_default=True)
def rollback(serving_dir, model_name):
    """Serve the previous pushed version again: the newest moves to <serving-dir>/.rolled_back/."""
    from pipeline import serving_dir as serving  # pylint: disable=import-outside-toplevel

    try:
        moved, now_serving = serving.rollback(os.path.abspath(serving_dir), model_name)
    except serving.RollbackError as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)
    console.print(f"Rolled back: {escape(moved)} moved aside; now serving {escape(now_serving)}",
                  soft_wrap=True)


@main.command("compile")
@click.option("--target", type=click.Choice(["kubeflow"]), required=True,
              help="kubeflow: a Kubeflow Pipelines v2 / Vertex AI pipeline spec (needs the [kfp] extra).")
@click.option("--image", required=True,
              help="Container image every component runs in (built from the repo's Dockerfile).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default="taxi_pipeline.json",
              show_default=True,
              help=".json: a PipelineJob (Vertex AI); .yaml: a PipelineSpec (Kubeflow Pipelines).")
@click.option("--pipeline-root", default="pipeline_output", show_default=True,
              help="Where the components write artifacts, e.g. gs://bucket/taxi.")
@click.option("--serving-dir", default="serving_model", show_default=True,
              help="Blessed models are pushed to <serving-dir>/<model-name>/<version>/, e.g. gs://...")
@click.option("--data-root", default=None,
              help="Default of the `data_root` pipeline parameter. Default: the taxi sample in the image.")
@click.option("--train-steps", type=click.IntRange(min=1), default=PipelineConfig.train_steps,
              show_default=True, help="Default of the `train_steps` pipeline parameter.")
@click.option("--model-name", default=PipelineConfig.model_name, show_default=True)
@click.option("--auc-floor", type=click.FloatRange(0, 1), default=PipelineConfig.auc_floor,
              show_default=True)
def compile_(target, image, output_path, pipeline_root, serving_dir, data_root, train_steps,
             model_name, auc_floor):
    """Write the pipeline for an orchestrator: the same DAG `run` executes locally."""
    del target  # one target so far; the option keeps the command open to others
    _quiet_libraries(False)
    try:
        from pipeline import kubeflow  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        _error(f"[red]Compiling for Kubeflow needs the kfp extra: "
               f"{escape(f'pip install .[kfp] ({e})')}[/]")
        sys.exit(EXIT_FAILED)
    config = PipelineConfig(
        data_root=data_root or kubeflow.IMAGE_TAXI_SAMPLE, output_dir=pipeline_root,
        serving_dir=serving_dir, model_name=model_name, train_steps=train_steps,
        auc_floor=auc_floor)
    for warning in kubeflow.local_path_warnings(config):
        _error(f"[yellow]Warning[/]: {escape(warning)}")
    path = kubeflow.compile_pipeline(config, image, output_path)
    console.print(f"Wrote {escape(path)} (image {escape(image)}; pipeline parameters: "
                  f"{', '.join(kubeflow.RUNTIME_PARAMETERS)})", soft_wrap=True)
