"""The Airflow DAG's settings, from environment variables derived from PipelineConfig's fields.

Each setting field `f` is read from PIPELINE_<F> (`train_steps` -> PIPELINE_TRAIN_STEPS, `spec_dir` ->
PIPELINE_SPEC_DIR), parsed by the field's type; the DAG's own settings are in DAG_VARIABLES. Names
from before the project took any table (TAXI_PIPELINE_*) are still read. Unset variables keep the
CLI's defaults. Relative paths are taken relative to $AIRFLOW_HOME, because Airflow's processes have
no meaningful working directory. Imports no Airflow.
"""
import dataclasses
import datetime
import os
import shlex
import typing
from typing import Callable, Dict, Mapping, Optional, Tuple

from pipeline import spans
from pipeline.config import PipelineConfig, beam_args_for, with_worker_setup

PREFIX = "PIPELINE_"
LEGACY_PREFIX = "TAXI_PIPELINE_"


def _boolean(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes"):
        return True
    if value.strip().lower() in ("0", "false", "no"):
        return False
    raise ValueError("use true or false")


_PARSERS = {str: str, int: int, float: float, bool: _boolean}


def _settings() -> Dict[str, Tuple[str, Callable[[str], object]]]:
    """Variable -> (PipelineConfig field, parser of the field's type), for every setting field."""
    hints = typing.get_type_hints(PipelineConfig)
    variables = {}
    # Every user setting (pipeline.config.setting); span_versioned is detected from the data root and
    # beam_args built from the Beam variables below.
    for field in dataclasses.fields(PipelineConfig):
        if "help" not in field.metadata:
            continue
        kind = hints[field.name]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # Optional[X]
        variables[PREFIX + field.name.upper()] = (field.name, _PARSERS[kind])
    return variables


CONFIG_VARIABLES = _settings()
# Beam: a --beam-mode preset and options as on the command line ("--runner=DataflowRunner --project=p"),
# combined as the CLI combines them (pipeline.config.beam_args_for, with_worker_setup).
BEAM_MODE_VARIABLE = PREFIX + "BEAM_MODE"
BEAM_ARGS_VARIABLE = PREFIX + "BEAM_ARGS"
# Variable -> default, for the DAG itself.
DAG_VARIABLES = {
    PREFIX + "SCHEDULE": "@daily",  # a cron expression, an Airflow preset, or None (manual only)
    PREFIX + "RETRIES": "2",  # per task
    PREFIX + "RETRY_DELAY_MINUTES": "5",
}
# Earlier names, still read: each TAXI_PIPELINE_X for PIPELINE_X, the AUC floor for the gate, and
# EPOCHS for MAX_EPOCHS.
LEGACY_NAMES = {
    **{LEGACY_PREFIX + name[len(PREFIX):]: name
       for name in [*CONFIG_VARIABLES, BEAM_MODE_VARIABLE, BEAM_ARGS_VARIABLE, *DAG_VARIABLES]},
    LEGACY_PREFIX + "AUC_FLOOR": PREFIX + "GATE_THRESHOLD",
    LEGACY_PREFIX + "EPOCHS": PREFIX + "MAX_EPOCHS", PREFIX + "EPOCHS": PREFIX + "MAX_EPOCHS",
}
# Airflow's schedule presets (airflow.utils.dates.cron_presets, plus @once and @continuous, which are
# not cron); any other string Airflow hands to croniter.
AIRFLOW_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly",
                   "@yearly")
PATH_FIELDS = ("spec_dir", "data_root", "output_dir", "serving_dir")
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


def _variables(environ: Mapping[str, str]) -> Dict[str, Tuple[str, str]]:
    """Variable -> (the name it was set under, its value), for every set variable; a current name
    wins over its earlier spelling."""
    found = {LEGACY_NAMES[name]: (name, value) for name, value in environ.items()
             if name in LEGACY_NAMES and value}
    found.update({name: (name, value) for name, value in environ.items()
                  if value and (name in CONFIG_VARIABLES or name in DAG_VARIABLES
                                or name in (BEAM_MODE_VARIABLE, BEAM_ARGS_VARIABLE))})
    return found


def config_from_env(environ: Mapping[str, str]) -> PipelineConfig:
    """The PipelineConfig the CLI would build from the same settings."""
    home = environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    variables = _variables(environ)
    kwargs = {field: _parse(*variables[name], parser)
              for name, (field, parser) in CONFIG_VARIABLES.items() if name in variables}
    mode_name, mode = variables.get(BEAM_MODE_VARIABLE, (BEAM_MODE_VARIABLE, None))
    extra = _parse(*variables.get(BEAM_ARGS_VARIABLE, (BEAM_ARGS_VARIABLE, "")), shlex.split)
    try:
        kwargs["beam_args"] = with_worker_setup(beam_args_for(mode, extra))
    except ValueError as e:
        raise ConfigError(f"{e} ({mode_name}={mode!r})") from e
    for field in PATH_FIELDS:
        if field in kwargs and "://" not in kwargs[field]:
            kwargs[field] = os.path.join(home, kwargs[field])  # no-op for an absolute path
    for field in ("output_dir", "serving_dir"):  # their defaults are relative too
        kwargs.setdefault(field, os.path.join(home, getattr(PipelineConfig, field)))
    given = ", ".join(f"{name}={value!r}" for name, value in variables.values())
    try:
        config = PipelineConfig(**kwargs)
        # As the CLI does: span-<N>/ directories in a local data root mean span-versioned input.
        return dataclasses.replace(config, span_versioned=spans.is_span_versioned(config.data_root))
    except spans.SpanLayoutError as e:
        raise ConfigError(f"{e} ({PREFIX}DATA_ROOT)") from e
    except ValueError as e:
        raise ConfigError(f"{e} (from the environment: {given or f'no {PREFIX}* set'})") from e


def dag_settings(environ: Mapping[str, str]) -> dict:
    """Keyword arguments for airflow.models.DAG."""
    variables = _variables(environ)
    values = {name: variables.get(name, (name, default)) for name, default in DAG_VARIABLES.items()}
    return {
        "schedule": _parse(*values[PREFIX + "SCHEDULE"], schedule),
        "start_date": START_DATE,
        "catchup": False,
        # Runs on one output directory must not overlap (one SQLite metadata store).
        "max_active_runs": 1,
        "default_args": {
            "retries": _parse(*values[PREFIX + "RETRIES"], int),
            "retry_delay": datetime.timedelta(minutes=_parse(
                *values[PREFIX + "RETRY_DELAY_MINUTES"], float)),
        },
    }
