"""Renders a RunSummary for people: components, metrics by slice, the blessing decision, the push."""
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.run_summary import RunSummary

# Every task's metrics (models/tasks.py), in this order; a run shows the columns it has.
METRIC_COLUMNS = (("example_count", "examples", "{:.0f}"), ("auc", "AUC", "{:.4f}"),
                  ("auc_precision_recall", "PR-AUC", "{:.4f}"),
                  ("binary_accuracy", "accuracy", "{:.4f}"),
                  ("sparse_categorical_accuracy", "accuracy", "{:.4f}"),
                  ("precision", "precision", "{:.4f}"), ("recall", "recall", "{:.4f}"),
                  ("calibration", "calibration", "{:.3f}"),
                  ("root_mean_squared_error", "RMSE", "{:.4g}"),
                  ("mean_absolute_error", "MAE", "{:.4g}"), ("mean_label", "mean label", "{:.4g}"),
                  ("mean_prediction", "mean prediction", "{:.4g}"))
# Shown for classifiers too (calibration covers them there).
_REGRESSION_ONLY = {"mean_label", "mean_prediction"}
# Below this many eval examples the metrics, and so the gate's verdict, are noisy.
SMALL_EVAL_SPLIT = 200
_STATE_STYLE = {"ran": "green", "cached": "cyan", "failed": "bold red", "running": "yellow"}


def format_value(value, pattern: str) -> str:
    return "-" if value is None or value != value else pattern.format(value)


def slice_order(name: str):
    """Overall first, then by feature, numeric values in numeric order."""
    feature, _, value = name.partition("=")
    return (name != "Overall", feature, not value.lstrip("-").isdigit(),
            int(value) if value.lstrip("-").isdigit() else 0, value)


def components_table(summary: RunSummary) -> Table:
    table = Table(title=f"Run {summary.run_id}", title_justify="left")
    table.add_column("component")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for c in summary.components:
        style = _STATE_STYLE.get(c.state, "")
        table.add_row(c.name, f"[{style}]{c.state}[/]" if style else c.state, f"{c.seconds:.1f}")
    return table


def metric_columns(summary: RunSummary):
    """The (key, label, format) of METRIC_COLUMNS this run's task has; the run report shows the same."""
    present = {key for values in summary.metrics.values() for key in values}
    regression = "root_mean_squared_error" in present
    return [c for c in METRIC_COLUMNS
            if c[0] in present and (regression or c[0] not in _REGRESSION_ONLY)]


def metrics_table(summary: RunSummary) -> Table:
    table = Table(title="Evaluation (eval split)", title_justify="left")
    table.add_column("slice")
    columns = metric_columns(summary)
    for _, label, _ in columns:
        table.add_column(label, justify="right")
    slices = sorted(summary.metrics, key=slice_order)
    for name in slices:
        values = summary.metrics[name]
        table.add_row(escape(name), *(format_value(values.get(key), pattern) for key, _, pattern in columns))
    return table


def render_serving_check(summary: RunSummary, console: Console) -> None:
    """The serving check's figures when it passed; why it blocked the push when it did not."""
    check = summary.serving_check
    if not check or str(check.get("reason", "")).startswith("skipped"):
        return  # not run, or skipped because the Evaluator already refused the model
    if check.get("blessed") == 1:
        console.print(
            f"[green]Serving check passed[/]: {check.get('examples', 0)} eval examples served "
            f"through the REST API match the model's own predictions (max difference "
            f"{check.get('max_abs_diff', float('nan')):.2g}); p50 latency "
            f"{check.get('p50_latency_ms', float('nan')):.1f} ms.", soft_wrap=True)
    else:
        console.print(f"[bold red]Push blocked by the serving check[/], nothing was pushed: "
                      f"{escape(str(check.get('reason') or '(no reason recorded)'))}", soft_wrap=True)


def render_edge_export(summary: RunSummary, console: Console) -> None:
    """The TFLite / TF.js parity figures when they matched; which format and row differed if not."""
    check = summary.edge_export
    if not check or str(check.get("reason", "")).startswith("skipped"):
        return  # not run, or skipped because an earlier check already refused the model
    skipped = {name: check[f"{name}_skipped"] for name in ("tflite", "tfjs")
               if check.get(f"{name}_skipped")}
    for name, why in skipped.items():
        console.print(f"[yellow]{'TFLite' if name == 'tflite' else 'TF.js'} export skipped[/]: "
                      f"{escape(str(why))}", soft_wrap=True)
    if check.get("blessed") == 1 and skipped:
        converted = [n for n in ("tflite", "tfjs") if n not in skipped]
        console.print("[green]The SavedModel is pushed[/]" + "".join(
            f"; the {'TFLite' if n == 'tflite' else 'TF.js'} export matches it on {check.get('rows', 0)} "
            f"rows (max difference {check.get(f'{n}_max_diff')})" for n in converted) + ".",
            soft_wrap=True)
    elif check.get("blessed") == 1:
        console.print(
            f"[green]TFLite and TF.js exports match[/] the SavedModel on {check.get('rows', 0)} rows "
            f"(max difference {check.get('tflite_max_diff')} TFLite, {check.get('tfjs_max_diff')} "
            f"TF.js).", soft_wrap=True)
    else:
        console.print(f"[bold red]Push blocked by the TFLite / TF.js parity check[/], nothing was "
                      f"pushed: {escape(str(check.get('reason') or '(no reason recorded)'))}",
                      soft_wrap=True)


def training_line(training: dict) -> str:
    stopped = ("stopped early: the eval loss had not improved since" if training["epochs_run"] <
               training["epochs"] else "kept the weights of")
    return (f"Trained {training['epochs_run']} of at most {training['epochs']} epochs of "
            f"{training['steps_per_epoch']} steps on {training['train_examples']:,} examples; "
            f"{stopped} epoch {training['best_epoch']}.")


def render(summary: RunSummary, console: Console) -> None:
    console.print(components_table(summary))
    if summary.training:
        console.print(training_line(summary.training), soft_wrap=True)
    if summary.metrics:
        console.print(metrics_table(summary))
        sample = summary.evaluation_examples
        if sample and sample["evaluated"] < sample["split_examples"]:
            console.print(
                f"Evaluated a sample: {sample['evaluated']:,} of the eval split's "
                f"{sample['split_examples']:,} examples, the same rows every run (--max-eval-examples "
                "sets the cap; 0 scores them all).", soft_wrap=True)
        examples = summary.metrics.get("Overall", {}).get("example_count")
        if examples is not None and examples < SMALL_EVAL_SPLIT:
            console.print(
                f"[yellow]Only {examples:.0f} eval examples[/]: these metrics, and the gate's verdict, "
                "can move by several points with another split. More rows, or a larger eval share "
                "(--eval-buckets), steadies them.", soft_wrap=True)
    if summary.blessed is True:
        console.print("[green]Model blessed[/]: it passed the gate's threshold and the "
                      "no-regression check.")
    elif summary.blessed is False:
        console.print("[yellow]Model not blessed, so nothing was pushed[/]. Failed checks:")
        for failure in summary.blessing_failures or ["(no details recorded)"]:
            console.print(f"  - {escape(failure)}", soft_wrap=True)
    render_serving_check(summary, console)
    render_edge_export(summary, console)
    pusher = summary.component("Pusher")
    if summary.pushed_path and pusher and pusher.state == "cached":
        console.print(f"Nothing changed, nothing new pushed; serving {escape(summary.pushed_path)}",
                      soft_wrap=True)
    elif summary.pushed_path:
        console.print(f"[green]Pushed[/] {escape(summary.pushed_path)}", soft_wrap=True)
