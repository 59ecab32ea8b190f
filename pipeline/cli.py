"""`python -m pipeline`: run the pipeline locally and report what happened."""
import dataclasses
import json
import logging
import os
import sys
import time
import typing
from typing import Callable
import warnings

# Before TensorFlow loads: hide its C++ start-up noise (CUDA plugin registration on CPU machines).
# Real failures still surface as Python exceptions; --verbose does not change this, the env var does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from pipeline.config import (BEAM_MODES, DEFAULT_SPEC_DIR,  # noqa: E402
                             DISTRIBUTION_STRATEGIES, PipelineConfig, beam_args_for,
                             with_worker_setup)

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


def _option(field: dataclasses.Field, hint) -> Callable:
    """The click option of one PipelineConfig setting, from its type, default and metadata."""
    meta = field.metadata
    kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # Optional[X]
    flag = meta.get("flag", "--" + field.name.replace("_", "-"))
    declarations = [flag, *meta.get("aliases", ()), field.name]
    if kind is bool:
        return click.option(*declarations, is_flag=True, default=field.default, help=meta["help"],
                            show_default="/" in flag)
    if "choices" in meta:
        kind = click.Choice(meta["choices"])
    elif meta.get("path"):
        kind = click.Path(file_okay=False)
    elif "min" in meta:
        kind = (click.IntRange if kind is int else click.FloatRange)(
            min=meta["min"], min_open=meta.get("min_open", False))
    return click.option(*declarations, type=kind, default=field.default, help=meta["help"],
                        show_default=meta.get("show_default", field.default is not None))


def config_options(*names: str) -> Callable:
    """Click options for PipelineConfig's settings (pipeline.config.setting): every one, or `names`."""
    hints = typing.get_type_hints(PipelineConfig)
    fields = [f for f in dataclasses.fields(PipelineConfig)
              if "help" in f.metadata and (not names or f.name in names)]

    def decorate(command):
        for field in reversed(fields):  # click lists options in decoration order, bottom up
            command = _option(field, hints[field.name])(command)
        return command
    return decorate


spec_option = config_options("spec_dir")


def _config(**kwargs) -> PipelineConfig:
    """PipelineConfig, or exit 2 with the spec's or the value's error."""
    from models.spec import SpecError  # pylint: disable=import-outside-toplevel

    try:
        return PipelineConfig(**kwargs)
    except SpecError as e:
        _error(f"[bold red]Bad dataset spec[/]: {escape(str(e))}")
        sys.exit(EXIT_BAD_INPUT)
    except ValueError as e:
        _error(f"[bold red]Bad setting[/]: {escape(str(e))}")
        sys.exit(EXIT_BAD_INPUT)


@click.group()
def main():
    """A TFX pipeline: a CSV table, declared in a dataset spec, to a validated, evaluated,
    TF-Serving-ready model."""


@main.command(context_settings={"ignore_unknown_options": True})
@config_options()
@click.option("--beam-mode", type=click.Choice(list(BEAM_MODES)), default=None,
              help="Beam's local DirectRunner: in_memory (default; fastest on small data) or "
                   "multi_processing (one worker process per core). Beam arguments may refine it, "
                   "e.g. `-- --direct_num_workers=2`.")
@click.option("--beam-arg", "beam_arg", multiple=True,
              help="A Beam pipeline option, e.g. --beam-arg=--runner=DataflowRunner (repeatable). "
                   "Arguments after `--` are passed to Beam too.")
@click.option("--verbose", is_flag=True, help="Show TFX, Beam and TensorFlow logs.")
@click.option("--print-config", is_flag=True, help="Print the resolved configuration as JSON and exit.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def run(beam_mode, beam_arg, verbose, print_config, beam_args, **settings):
    """Run the whole pipeline locally (Beam DirectRunner unless Beam arguments say otherwise)."""
    from pipeline import spans  # pylint: disable=import-outside-toplevel

    settings["data_root"] = _config(spec_dir=settings["spec_dir"],
                                    data_root=settings["data_root"]).data_root
    try:
        span_versioned = spans.is_span_versioned(settings["data_root"])
    except spans.SpanLayoutError:
        span_versioned = True  # a malformed span layout; the input checks below report it
    config = _config(
        **settings, span_versioned=span_versioned,
        beam_args=with_worker_setup(beam_args_for(beam_mode, tuple(beam_arg) + tuple(beam_args))))
    if print_config:
        click.echo(json.dumps(dataclasses.asdict(config), indent=2))
        return

    _quiet_libraries(verbose)
    # Imported here so `--help` and `--print-config` stay fast.
    from pipeline import data_checks  # pylint: disable=import-outside-toplevel

    missing = [problem for feature in config.spec.features for problem in feature.missing_files()]
    if missing:
        _error(f"[bold red]Bad dataset spec[/]: {escape(config.spec.spec_path)}: "
               f"{escape('; '.join(missing))}")
        sys.exit(EXIT_BAD_INPUT)
    try:
        check = data_checks.check_data_root(config.data_root, config.spec)
    except data_checks.InputDataError as e:
        _error(f"[bold red]Bad input data[/]: {escape(str(e))}")
        sys.exit(EXIT_BAD_INPUT)
    for warning in check.warnings:
        _error(f"[yellow]Warning[/]: {escape(warning)}")
    source = escape(check.span_dir or config.data_root)
    if check.span is not None:
        source += (f" (span {check.span}; training on the newest {config.span_window} spans ingested)"
                   if config.span_window > 1 else f" (span {check.span}, the newest)")
    console.print(f"Running [bold]{config.pipeline_name}[/] on {check.rows:,} rows from {source}",
                  soft_wrap=True)
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
        _print_report(outcome.report_path)
        cause = _root_cause(outcome.error)
        if outcome.bad_data:
            _error("[bold red]Bad input data[/] (nothing was trained or pushed): "
                   f"{escape(str(cause))}")
            sys.exit(EXIT_BAD_INPUT)
        where = (f"in {outcome.failed_component}" if outcome.failed_component else
                 "in a component" if outcome.summary is not None else "before it started")
        _error(f"[bold red]Pipeline failed[/] {where}: {type(cause).__name__}: {escape(str(cause))}\n"
               "Re-run with --verbose for the full logs.")
        sys.exit(EXIT_FAILED)
    console.print(f"Finished in {elapsed:.1f} s.")
    _print_report(outcome.report_path)


def _print_report(path) -> None:
    if path:
        console.print(f"Report: {escape(path)}", soft_wrap=True)
    else:
        _error("[yellow]Warning[/]: no run report was written (see the error above).")


@main.command()
@click.option("--data-root", type=click.Path(), required=True, help="Directory of CSV files with a header row.")
@click.option("--label", required=True, help="The column to predict.")
@click.option("--spec", "spec_dir", type=click.Path(file_okay=False), required=True,
              help="Where to write dataset.yaml and schema.pbtxt, e.g. schemas/flights.")
@click.option("--task", type=click.Choice(["binary", "multiclass", "regression"]), default=None,
              help="Default: inferred from the label's values.")
@click.option("--positive-class", default=None,
              help="Binary: the positive class. Default: 1/true/yes when present, else the minority.")
@click.option("--force", is_flag=True, help="Overwrite an existing spec.")
def init(data_root, label, spec_dir, task, positive_class, force):
    """Infer a dataset spec and a curated schema from a table, for review before the first run."""
    _quiet_libraries(False)
    from rich.table import Table  # pylint: disable=import-outside-toplevel

    from models.spec import SpecError  # pylint: disable=import-outside-toplevel
    from pipeline import init_spec  # pylint: disable=import-outside-toplevel

    try:
        spec, decisions = init_spec.write(spec_dir, data_root, label, task, positive_class, force)
    except (init_spec.InitError, SpecError) as e:
        _error(f"[bold red]Cannot write the spec[/]: {escape(str(e))}")
        sys.exit(EXIT_BAD_INPUT)
    table = Table(title=f"{spec.name}: {spec.task.task} on {spec.label.name}", title_justify="left")
    for column in ("column", "use", "why"):
        table.add_column(column)
    for d in decisions:
        table.add_row(escape(d.column), escape(d.use), escape(d.reason))
    console.print(table)
    console.print(f"Wrote {escape(spec.spec_path)} and {escape(spec.schema_path)}. Review them, then: "
                  f"python -m pipeline run --spec {escape(spec_dir)}", soft_wrap=True)


@main.command()
@spec_option
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True)
@click.option("--run-id", default=None, help="A run id from the metadata store; default: the latest.")
def summary(spec_dir, output_dir, run_id):
    """Print the summary of a past run from the metadata store."""
    _quiet_libraries(False)
    from pipeline.summary_view import render  # pylint: disable=import-outside-toplevel

    config = _config(spec_dir=spec_dir, output_dir=output_dir)
    try:
        render(_summarize(config, run_id), console)
    except (FileNotFoundError, LookupError) as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)


def _summarize(config, run_id):
    """The run's summary from the store; a store ML Metadata cannot read is a LookupError that
    names the file and what to do."""
    import ml_metadata as mlmd  # pylint: disable=import-outside-toplevel

    from pipeline.run_summary import summarize, unreadable_store_message  # pylint: disable=import-outside-toplevel

    try:
        return summarize(config.metadata_path, config.pipeline_name, run_id)
    except (RuntimeError, mlmd.errors.StatusError) as e:
        raise LookupError(unreadable_store_message(config.metadata_path, e)) from e


@main.command()
@spec_option
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True)
@click.option("--run-id", default=None, help="A run id from the metadata store; default: the latest.")
@click.option("--open", "open_browser", is_flag=True, help="Open the report in the web browser.")
def report(spec_dir, output_dir, run_id, open_browser):
    """Write (or re-write) a past run's HTML report from the metadata store and its run record."""
    _quiet_libraries(False)
    from pipeline.report import page  # pylint: disable=import-outside-toplevel

    config = _config(spec_dir=spec_dir, output_dir=output_dir)
    try:
        past = _summarize(config, run_id)
    except (FileNotFoundError, LookupError) as e:
        past = None  # a run that stopped before it started has a record only
        if not (run_id and page.read_record(config.output_dir, run_id)):
            _error(f"[red]{escape(str(e))}[/]")
            sys.exit(EXIT_FAILED)
    # The run's record adds what the store does not keep (its error); a store-only run has none.
    record = ({**page.read_record(config.output_dir, past.run_id), **past.to_record()}
              if past is not None else page.read_record(config.output_dir, run_id))
    path = page.write(config, past, record)
    console.print(f"Report: {escape(path)}", soft_wrap=True)
    if open_browser:
        import webbrowser  # pylint: disable=import-outside-toplevel

        webbrowser.open("file://" + os.path.abspath(path))


@main.command()
@spec_option
@click.option("--output-dir", type=click.Path(), default="pipeline_output", show_default=True)
def runs(spec_dir, output_dir):
    """List past runs from the metadata store: what ran, the gated metric, blessed or not, what was
    pushed."""
    _quiet_libraries(False)
    from rich.table import Table  # pylint: disable=import-outside-toplevel

    import ml_metadata as mlmd  # pylint: disable=import-outside-toplevel

    from pipeline.run_summary import (  # pylint: disable=import-outside-toplevel
        open_store, run_ids, summarize, unreadable_store_message)

    config = _config(spec_dir=spec_dir, output_dir=output_dir)
    if not os.path.exists(config.metadata_path):
        _error(f"[red]No metadata store at {escape(config.metadata_path)}: has the pipeline run here?[/]")
        sys.exit(EXIT_FAILED)
    table = Table(title=f"Runs of {config.pipeline_name} in {escape(config.output_dir)}")
    gated = config.spec.task.gated_metric.name
    for column in ("run id", "ran", "cached", "failed", gated, "blessed", "pushed"):
        table.add_column(column)
    try:
        pasts = [summarize(config.metadata_path, config.pipeline_name, run_id)
                 for run_id in run_ids(open_store(config.metadata_path), config.pipeline_name)]
    except (RuntimeError, mlmd.errors.StatusError) as e:
        _error(f"[red]{escape(unreadable_store_message(config.metadata_path, e))}[/]")
        sys.exit(EXIT_FAILED)
    for past in pasts:
        run_id = past.run_id
        states = [c.state for c in past.components]
        value = past.metrics.get("Overall", {}).get(gated)
        pushed = past.to_record()["pushed_this_run"]
        table.add_row(run_id, str(states.count("ran")), str(states.count("cached")),
                      str(states.count("failed")), "-" if value is None else f"{value:.4f}",
                      {True: "yes", False: "no", None: "-"}[past.blessed],
                      escape(os.path.basename(past.pushed_path)) if pushed else "-")
    console.print(table)


def _trainer_output(config, run_id, key, what):
    """(the run's summary, its Trainer, the URI of the Trainer's output `key`); exits 1 naming `what`
    is missing when the run has none."""
    from pipeline.run_summary import summarize  # pylint: disable=import-outside-toplevel

    try:
        past = summarize(config.metadata_path, config.pipeline_name, run_id)
    except (FileNotFoundError, LookupError) as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)
    trainer = past.component("Trainer")
    outputs = trainer.outputs.get(key) if trainer else None
    if not outputs or not os.path.isdir(outputs[0].uri):
        _error(f"[red]Run {escape(past.run_id)} has no {what}: its Trainer did not run"
               f"{' (' + trainer.state + ')' if trainer else ''}. Pick another with --run-id "
               "(`python -m pipeline runs` lists them).[/]")
        sys.exit(EXIT_FAILED)
    return past, trainer, outputs[0].uri

@main.command()
@config_options("spec_dir", "output_dir")
@click.option("--run-id", default=None, help="A run id from the metadata store; default: the latest.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=6006, show_default=True,
              help="0: any free port.")
def tensorboard(spec_dir, output_dir, run_id, host, port):
    """Start TensorBoard on a run's training logs: loss and metric curves per epoch (train and eval),
    the model graph, and the embedding tables labelled in the Embedding Projector."""
    _quiet_libraries(False)
    past, trainer, logs = _trainer_output(_config(spec_dir=spec_dir, output_dir=output_dir), run_id,
                                          "model_run", "training logs")
    from tensorboard import program  # pylint: disable=import-outside-toplevel

    board = program.TensorBoard()
    board.configure(logdir=logs, host=host, port=port)
    url = board.launch()
    console.print(f"TensorBoard on the training logs of run {escape(past.run_id)} ({trainer.state}): "
                  f"{url}  (Ctrl+C stops it)", soft_wrap=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@main.command("export-encoder")
@config_options("spec_dir", "output_dir")
@click.option("--run-id", default=None, help="A run id from the metadata store; default: the latest.")
@click.option("--model-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="A SavedModel the pipeline exported (e.g. a pushed version) instead of a run's.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Where to write the module (a new directory).")
def export_encoder(spec_dir, output_dir, run_id, model_dir, out_dir):
    """Save a trained model's feature encoder (raw features -> the representation its head reads) as a
    TF Hub-format module another model loads with tf.saved_model.load or hub.KerasLayer."""
    _quiet_libraries(False)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        _error(f"[red]{escape(out_dir)} is not empty; name a new directory.[/]")
        sys.exit(EXIT_BAD_INPUT)
    source = f"the SavedModel {model_dir}"
    if model_dir is None:
        from tfx.utils import path_utils  # pylint: disable=import-outside-toplevel

        past, trainer, model = _trainer_output(_config(spec_dir=spec_dir, output_dir=output_dir),
                                               run_id, "model", "trained model")
        model_dir = path_utils.serving_model_path(model)
        source = f"the model of run {past.run_id} ({trainer.state})"
    from models import encoder  # pylint: disable=import-outside-toplevel

    try:
        output = encoder.export(model_dir, out_dir)
    except ValueError as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)
    console.print(f"The feature encoder of {escape(source)} -> {escape(out_dir)}: raw features (the "
                  f"inputs of serving_raw) to {output.shape[-1]} floats per example. Load it with "
                  "tf.saved_model.load(DIR) or hub.KerasLayer(DIR).", soft_wrap=True)


@main.command()
@spec_option
@click.option("--serving-dir", type=click.Path(), default="serving_model", show_default=True,
              help="Where the pipeline pushed: the page runs the newest version's TF.js export.")
@click.option("--model-name", default=None, help="Default: the spec's label name.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="On 127.0.0.1; 0: any free port.")
def demo(spec_dir, serving_dir, model_name, port):
    """Serve a page with a form of the spec's features that predicts in the browser: the newest
    pushed version's TF.js model runs in the page. Its address holds the values
    (?fare=12.5&payment_type=Cash), so a prediction can be linked."""
    _quiet_libraries(False)
    from pipeline.demo import server  # pylint: disable=import-outside-toplevel

    config = _config(spec_dir=spec_dir, model_name=model_name)
    try:
        demo_server = server.start(config.spec, os.path.abspath(serving_dir), config.model_name, port)
    except server.DemoError as e:
        _error(f"[bold red]No demo page[/]: {escape(str(e))}")
        sys.exit(EXIT_FAILED)
    console.print(f"Demo page of {escape(config.model_name)} version {demo_server.export.version} "
                  f"(TF.js, in the browser): {demo_server.url}  (Ctrl+C stops it)", soft_wrap=True)
    try:
        demo_server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        demo_server.server_close()


@main.command()
@spec_option
@click.option("--serving-dir", type=click.Path(), default="serving_model", show_default=True)
@click.option("--model-name", default=None, help="Default: the spec's label name.")
def rollback(spec_dir, serving_dir, model_name):
    """Serve the previous pushed version again: the newest moves to <serving-dir>/.rolled_back/."""
    from pipeline import serving_dir as serving  # pylint: disable=import-outside-toplevel

    model_name = _config(spec_dir=spec_dir, model_name=model_name).model_name
    try:
        moved, now_serving = serving.rollback(os.path.abspath(serving_dir), model_name)
    except serving.RollbackError as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)
    console.print(f"Rolled back: {escape(moved)} moved aside; now serving {escape(now_serving)}",
                  soft_wrap=True)


@main.command("compile")
@spec_option
@click.option("--target", type=click.Choice(["kubeflow"]), required=True,
              help="kubeflow: a Kubeflow Pipelines v2 / Vertex AI pipeline spec (needs the [kfp] extra).")
@click.option("--image", required=True,
              help="Container image every component runs in (built from the repo's Dockerfile).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default="pipeline.json",
              show_default=True,
              help=".json: a PipelineJob (Vertex AI); .yaml: a PipelineSpec (Kubeflow Pipelines).")
@click.option("--pipeline-root", default="pipeline_output", show_default=True,
              help="Where the components write artifacts, e.g. gs://bucket/flights.")
@click.option("--data-root", default=None,
              help="Default of the `data_root` pipeline parameter. Default: the spec's, as seen in "
                   "the image.")
# The settings compiled into the spec (data_root and train_steps are pipeline parameters' defaults);
# a span window and the local cache are the local runner's.
@config_options("serving_dir", "pipeline_name", "model_name", "train_buckets", "eval_buckets",
                "train_steps", "eval_steps", "max_epochs", "batch_size", "distribution_strategy",
                "gate_threshold", "gate_max_regression", "max_eval_examples", "beam_batch_size",
                "serving_check_examples", "serving_check_tolerance", "serving_check_max_p50_ms")
def compile_(target, image, output_path, pipeline_root, data_root, **settings):
    """Write the pipeline for an orchestrator: the same DAG `run` executes locally."""
    del target  # one target so far; the option keeps the command open to others
    _quiet_libraries(False)
    try:
        from pipeline import kubeflow  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        _error(f"[red]Compiling for Kubeflow needs the kfp extra: "
               f"{escape(f'pip install .[kfp] ({e})')}[/]")
        sys.exit(EXIT_FAILED)
    config = _config(**settings, data_root=data_root or kubeflow.image_data_root(settings["spec_dir"]),
                     output_dir=pipeline_root)
    for warning in kubeflow.local_path_warnings(config):
        _error(f"[yellow]Warning[/]: {escape(warning)}")
    path = kubeflow.compile_pipeline(config, image, output_path)
    console.print(f"Wrote {escape(path)} (image {escape(image)}; pipeline parameters: "
                  f"{', '.join(kubeflow.RUNTIME_PARAMETERS)})", soft_wrap=True)


@main.command()
@click.option("--serving-dir", type=click.Path(), default="serving_model", show_default=True,
              help="Serves every <serving-dir>/<model>/<numeric version>/ SavedModel.")
@click.option("--model-name", "model_names", multiple=True,
              help="Serve only this model (repeatable). Default: every model directory found.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 serves other machines too.")
@click.option("--rest-port", type=click.IntRange(0, 65535), default=8501, show_default=True,
              help="TF Serving's REST port; 0 disables REST.")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="TF Serving's gRPC port; 0 disables gRPC.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="How often the serving directory is checked for new or removed versions.")
@click.option("--num-versions", type=click.IntRange(min=0), default=2, show_default=True,
              help="Serve the newest N loadable versions (0 = all); requests without a version get "
                   "the newest.")
@click.option("--enable-batching/--no-enable-batching", default=True, show_default=True,
              help="Batch concurrent requests into one model call.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Most examples in one batched model call.")
@click.option("--batch-timeout-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How long a batch waits for more requests; 0 batches only what is already queued.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=8 * 1024 * 1024,
              show_default=True, help="Larger request bodies get 413.")
@click.option("--verbose", is_flag=True, help="Show TensorFlow logs and every load/unload detail.")
def serve(serving_dir, model_names, host, rest_port, grpc_port, poll_seconds, num_versions,
          enable_batching, max_batch_size, batch_timeout_ms, max_request_bytes, verbose):
    """Serve pushed models with TF Serving's REST and gRPC APIs; new versions load without a restart."""
    _quiet_libraries(verbose)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("pipeline.serving").setLevel(logging.INFO)
    from pipeline.serving import server  # pylint: disable=import-outside-toplevel

    options = server.ServerOptions(
        serving_dir=os.path.abspath(serving_dir), model_names=tuple(model_names), host=host,
        rest_port=rest_port, grpc_port=grpc_port, poll_seconds=poll_seconds, num_versions=num_versions,
        enable_batching=enable_batching, max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms, max_request_bytes=max_request_bytes)
    try:
        server.run(options)
    except server.ServerStartError as e:
        _error(f"[bold red]Cannot serve[/]: {escape(str(e))}")
        sys.exit(EXIT_FAILED)


@main.command()
@spec_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--url", default="http://127.0.0.1:8501", show_default=True,
              help="The server: `python -m pipeline serve` or TF Serving's REST address.")
@click.option("--model-name", default=None, help="Default: the spec's label name.")
@click.option("--model-version", type=click.IntRange(min=1), default=None,
              help="Ask for this version; default: the newest the server has.")
@click.option("--format", "request_format", type=click.Choice(["raw", "b64"]), default="raw",
              show_default=True,
              help="raw: JSON features to serving_raw; b64: serialized tf.Examples to serving_default.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Rows per request.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"predictions\": [...]} as JSON.")
def predict(spec_dir, file, url, model_name, model_version, request_format, batch_size, as_json):
    """The model's answers for the rows of a CSV or JSON FILE, from a model server."""
    _quiet_libraries(False)
    from pipeline.serving import client  # pylint: disable=import-outside-toplevel

    config = _config(spec_dir=spec_dir, model_name=model_name)
    try:
        rows = client.read_rows(file)
        predictions = client.predict(url, config.model_name, rows, config.spec, request_format,
                                     model_version, batch_size)
    except client.ClientError as e:
        _error(f"[red]{escape(str(e))}[/]")
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps({"predictions": predictions}))
        return
    from rich.table import Table  # pylint: disable=import-outside-toplevel

    label = config.spec.label.name
    table = Table(title=f"{config.model_name} at {escape(url)}: {label}, {len(rows)} rows")
    table.add_column("row", justify="right")
    if predictions and isinstance(predictions[0], dict):  # multiclass: the most likely class
        table.add_column(label)
        table.add_column("probability", justify="right")
        for i, p in enumerate(predictions, start=1):
            best = max(range(len(p["probabilities"])), key=p["probabilities"].__getitem__)
            table.add_row(str(i), escape(str(p["classes"][best])), f"{p['probabilities'][best]:.4f}")
    else:
        table.add_column(config.spec.task.prediction_key, justify="right")
        for i, p in enumerate(predictions, start=1):
            table.add_row(str(i), f"{p:.4f}")
    console.print(table)
