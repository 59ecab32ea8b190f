"""The Airflow DAG's settings, from environment variables named after the CLI's flags.

`--train-steps` -> TAXI_PIPELINE_TRAIN_STEPS, and so on (CONFIG_VARIABLES); the DAG's own settings are
in DAG_VARIABLES. Unset variables keep the CLI's defaults. Relative paths are taken relative to
$AIRFLOW_HOME, because Airflow's processes have no meaningful working directory. Imports no Airflow.
"""
import datetime
import os
import shlex
from typing import Callable, Dict, Mapping, Optional, Tuple

from pipeline import spans
from pipeline.config import PipelineConfig, beam_args_for, default_data_root, with_worker_setup

# Variable -> (PipelineConfig field, parser). Unset variables keep the CLI's defaults.
CONFIG_VARIABLES: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "TAXI_PIPELINE_DATA_ROOT": ("data_root", str),
    "TAXI_PIPELINE_OUTPUT_DIR": ("output_dir", str),
    "TAXI_PIPELINE_SERVING_DIR": ("serving_dir", str),
    "TAXI_PIPELINE_MODEL_NAME": ("model_name", str),
    "TAXI_PIPELINE_TRAIN_STEPS": ("train_steps", int),
    "TAXI_PIPELINE_EVAL_STEPS": ("eval_steps", int),
    "TAXI_PIPELINE_EPOCHS": ("epochs", int),
    "TAXI_PIPELINE_BATCH_SIZE": ("batch_size", int),
    "TAXI_PIPELINE_AUC_FLOOR": ("gate_threshold", float),
    "TAXI_PIPELINE_SPAN_WINDOW": ("span_window", int),
    "TAXI_PIPELINE_DISTRIBUTION_STRATEGY": ("distribution_strategy", str),
    "TAXI_PIPELINE_SERVING_CHECK_TOLERANCE": ("serving_check_tolerance", float),
    "TAXI_PIPELINE_SERVING_CHECK_MAX_P50_MS": ("serving_check_max_p50_ms", float),
}
# Beam: a --beam-mode preset and options as on the command line ("--runner=DataflowRunner --project=p"),
# combined as the CLI combines them (pipeline.config.beam_args_for, with_worker_setup).
BEAM_MODE_VARIABLE = "TAXI_PIPELINE_BEAM_MODE"
BEAM_ARGS_VARIABLE = "TAXI_PIPELINE_BEAM_ARGS"
# Variable -> default, for the DAG itself.
DAG_VARIABLES = {
    "TAXI_PIPELINE_SCHEDULE": "@daily",  # a cron expression, an Airflow preset, or None (manual only)
    "TAXI_PIPELINE_RETRIES": "2",  # per task
    "TAXI_PIPELINE_RETRY_DELAY_MINUTES": "5",
}
# Airflow's schedule presets (airflow.utils.dates.cron_presets, plus @once and @continuous, which are
# not cron); any other string Airflow hands to croniter.
AIRFLOW_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly",
                   "@yearly")
PATH_FIELDS = ("data_root", "output_dir", "serving_dir")
# Scheduling starts from here; with catchup off only the latest interval runs.
START_DATE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


class ConfigError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


def _parse(name: str, value: str, parser: Callable[[str], object]):
    try:
        return parser(value)
    except ValueError as e:
        raise ConfigError(f"Environment variable {name}={value!r} is not a valid "
                          f"{getattr(parser, '__name__', 'value')}: {e}") from e


def schedule(value: str) -> Optional[str]:
    """A DAG `schedule` as Airflow checks it when it loads the DAG; "None" means manual runs only.

    Checked here so that a bad value is an import error naming the variable, not Airflow's
    "Invalid timetable expression" naming nothing."""
    if value.lower() == "none":
        return None
    if value in AIRFLOW_PRESETS:
        return value
    # Airflow's cron timetables validate with croniter (CronMixin.validate); it comes with Airflow.
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter  # pylint: disable=import-outside-toplevel
    try:
        croniter(value)
    except (CroniterBadCronError, CroniterBadDateError) as e:
        raise ValueError(f"{str(e).rstrip('.')}; use a cron expression ('30 4 * * 1'), one of "
                         f"{', '.join(AIRFLOW_PRESETS)}, or None for manual runs only") from e
    return value


def config_from_env(environ: Mapping[str, str]) -> PipelineConfig:
    """The PipelineConfig the CLI would build from the same settings."""
    home = environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    kwargs = {field: _parse(name, environ[name], parser)
              for name, (field, parser) in CONFIG_VARIABLES.items() if environ.get(name)}
    kwargs.setdefault("data_root", default_data_root())
    extra = _parse(BEAM_ARGS_VARIABLE, environ.get(BEAM_ARGS_VARIABLE, ""), shlex.split)
    try:
        kwargs["beam_args"] = with_worker_setup(beam_args_for(environ.get(BEAM_MODE_VARIABLE) or None,
                                                              extra))
    except ValueError as e:
        raise ConfigError(f"{e} ({BEAM_MODE_VARIABLE}={environ.get(BEAM_MODE_VARIABLE)!r})") from e
    for field in PATH_FIELDS:
        path = kwargs.get(field, getattr(PipelineConfig, field, None))
        if "://" not in path:
            kwargs[field] = os.path.join(home, path)  # no-op for an absolute path
    try:
        # As the CLI does: span-<N>/ directories in a local data root mean span-versioned input.
        kwargs["span_versioned"] = spans.is_span_versioned(kwargs["data_root"])
    except spans.SpanLayoutError as e:
        raise ConfigError(f"{e} (TAXI_PIPELINE_DATA_ROOT)") from e
    try:
        return PipelineConfig(**kwargs)
    except ValueError as e:
        given = ", ".join(f"{name}={environ[name]!r}" for name in CONFIG_VARIABLES
                          if environ.get(name))
        raise ConfigError(f"{e} (from the environment: {given or 'no TAXI_PIPELINE_* set'})") from e


def dag_settings(environ: Mapping[str, str]) -> dict:
    """Keyword arguments for airflow.models.DAG."""
    values = {name: environ.get(name) or default for name, default in DAG_VARIABLES.items()}
    return {
        "schedule": _parse("TAXI_PIPELINE_SCHEDULE", values["TAXI_PIPELINE_SCHEDULE"], schedule),
        "start_date": START_DATE,
        "catchup": False,
        # Runs on one output directory must not overlap (one SQLite metadata store).
        "max_active_runs": 1,
        "default_args": {
            "retries": _parse("TAXI_PIPELINE_RETRIES", values["TAXI_PIPELINE_RETRIES"], int),
            "retry_delay": datetime.timedelta(minutes=_parse(
                "TAXI_PIPELINE_RETRY_DELAY_MINUTES",
                values["TAXI_PIPELINE_RETRY_DELAY_MINUTES"], float)),
        },
    }
