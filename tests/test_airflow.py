"""Airflow: the project's DAG parses as configured, and `airflow dags test` runs it to a pushed model.

Airflow runs in subprocesses with a throwaway AIRFLOW_HOME (SQLite), as in a fresh deployment whose
dags folder holds the documented one-line file.
"""
import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.common.resolver import Resolver
from tfx.orchestration import metadata

from pipeline.airflow_config import START_DATE, ConfigError, config_from_env, dag_settings
from pipeline.config import (BEAM_MODES, DEFAULT_BEAM_ARGS, DEFAULT_SPEC_DIR, PipelineConfig,
                             default_data_root, with_worker_setup)
from pipeline.pipeline import create_pipeline
from pipeline.report import page
from tests import report_browser
from tests.conftest import cli_env, require_extra

AIRFLOW = os.path.join(os.path.dirname(sys.executable), "airflow")
DAG_FILE = "from pipeline.airflow_dag import dag  # noqa: F401\n"
DAG_ID = "taxi_big_tipper"
REPORT_TASK = "report"  # pipeline/airflow_dag.py's (importing it builds the DAG)


@pytest.fixture
def airflow_installed():
    require_extra("airflow", "airflow")


needs_airflow = pytest.mark.usefixtures("airflow_installed")


def airflow_env(home, **variables):
    """A fresh Airflow home with the one-line DAG file, and TAXI_PIPELINE_* settings."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "taxi_pipeline.py").write_text(DAG_FILE)
    env = cli_env()  # without TF_USE_LEGACY_KERAS: the DAG module must set it itself
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Parsing imports TFX and TensorFlow: allow for a loaded 2-core machine.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    })
    env.update(variables)
    return env


PARSE_SCRIPT = textwrap.dedent("""
    import json, os
    from airflow.models import DagBag
    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], include_examples=False)
    dag = bag.dags.get("%s")
    print(json.dumps({
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dags),
        "schedule": str(dag.timetable.summary) if dag else None,
        "catchup": dag.catchup if dag else None,
        "max_active_runs": dag.max_active_runs if dag else None,
        "tasks": {t.task_id: {"retries": t.retries,
                              "retry_delay": t.retry_delay.total_seconds(),
                              "upstream": sorted(t.upstream_task_ids),
                              "trigger_rule": str(t.trigger_rule)}
                  for t in dag.tasks} if dag else {},
        "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"),
    }))
""" % DAG_ID)


def parse_dag(env):
    result = subprocess.run([sys.executable, "-c", PARSE_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_airflow
def test_dag_parses_with_the_configured_schedule_retries_and_the_pipeline_s_tasks(tmp_path):
    variables = {"TAXI_PIPELINE_SCHEDULE": "30 4 * * 1", "TAXI_PIPELINE_RETRIES": "3",
                 "TAXI_PIPELINE_RETRY_DELAY_MINUTES": "1.5", "TAXI_PIPELINE_TRAIN_STEPS": "42",
                 "TAXI_PIPELINE_OUTPUT_DIR": "relative_output"}
    parsed = parse_dag(airflow_env(tmp_path, **variables))
    assert parsed["import_errors"] == {}
    assert parsed["dag_ids"] == [DAG_ID]
    assert parsed["schedule"] == "30 4 * * 1"
    assert parsed["catchup"] is False and parsed["max_active_runs"] == 1
    assert parsed["legacy_keras"] == "1"

    # The same settings give the same pipeline in this process; its components are the tasks.
    config = config_from_env({**variables, "AIRFLOW_HOME": str(tmp_path)})
    assert config.train_steps == 42
    assert config.output_dir == str(tmp_path / "relative_output")  # relative to AIRFLOW_HOME
    components = create_pipeline(config).components
    assert set(parsed["tasks"]) == {c.id for c in components} | {REPORT_TASK}
    for component in components:
        task = parsed["tasks"][component.id]
        assert task["upstream"] == sorted(n.id for n in component.upstream_nodes), component.id
        assert task["retries"] == 3 and task["retry_delay"] == 90
        assert task["trigger_rule"] == "all_success", component.id
    # The report comes last, whatever the components did (failed runs get one too), once.
    report = parsed["tasks"][REPORT_TASK]
    assert report["upstream"] == sorted(c.id for c in components)
    assert report["trigger_rule"] == "all_done" and report["retries"] == 0


def test_unset_variables_keep_the_cli_s_defaults(tmp_path):
    config = config_from_env({"AIRFLOW_HOME": str(tmp_path)})
    assert config.output_dir == str(tmp_path / "pipeline_output")
    assert config.serving_dir == str(tmp_path / "serving_model")
    assert config.data_root == default_data_root()  # the taxi spec's
    assert config.train_steps == PipelineConfig.train_steps
    assert config.beam_args == with_worker_setup(DEFAULT_BEAM_ARGS)  # as the CLI's default
    settings = dag_settings({})
    assert settings["schedule"] == "@daily" and settings["catchup"] is False
    assert settings["default_args"] == {"retries": 2, "retry_delay": datetime.timedelta(minutes=5)}


def test_every_setting_of_the_config_has_a_variable_named_after_it_and_the_old_names_still_work(
        tmp_path):
    from pipeline.airflow_config import CONFIG_VARIABLES, LEGACY_NAMES  # pylint: disable=import-outside-toplevel

    settable = {f.name for f in dataclasses.fields(PipelineConfig)} - {"span_versioned", "beam_args"}
    assert {field for field, _ in CONFIG_VARIABLES.values()} == settable
    assert CONFIG_VARIABLES["PIPELINE_TRAIN_STEPS"][0] == "train_steps"
    spec_copy = tmp_path / "spec"
    shutil.copytree(DEFAULT_SPEC_DIR, spec_copy)
    config = config_from_env({"AIRFLOW_HOME": str(tmp_path), "PIPELINE_SPEC_DIR": "spec",
                              "PIPELINE_GATE_THRESHOLD": "0.9", "PIPELINE_ACCEPT_DRIFT": "true",
                              "TAXI_PIPELINE_TRAIN_STEPS": "7", "PIPELINE_MAX_EPOCHS": "3",
                              "TAXI_PIPELINE_EPOCHS": "9"})
    assert config.spec_dir == str(spec_copy)  # relative to AIRFLOW_HOME
    assert (config.gate_threshold, config.accept_drift, config.train_steps) == (0.9, True, 7)
    assert config.max_epochs == 3  # the current name wins over the earlier one
    assert config_from_env({"AIRFLOW_HOME": str(tmp_path), "PIPELINE_EPOCHS": "5"}).max_epochs == 5
    assert LEGACY_NAMES["TAXI_PIPELINE_AUC_FLOOR"] == "PIPELINE_GATE_THRESHOLD"
    with pytest.raises(ConfigError, match=r"PIPELINE_ACCEPT_DRIFT='maybe' is not a valid _boolean: "
                                          r"use true or false"):
        config_from_env({"PIPELINE_ACCEPT_DRIFT": "maybe"})


def test_remote_paths_and_beam_args_pass_through():
    config = config_from_env({"TAXI_PIPELINE_DATA_ROOT": "gs://b/data",
                              "TAXI_PIPELINE_BEAM_ARGS": "--runner=DataflowRunner --project=p"})
    assert config.data_root == "gs://b/data"
    # As from the CLI: workers get the project from its setup.py and the worker plugin.
    assert config.beam_args == with_worker_setup(("--runner=DataflowRunner", "--project=p"))
    assert any(arg.startswith("--setup_file=") for arg in config.beam_args)


def test_the_beam_mode_preset_comes_before_the_beam_args():
    config = config_from_env({"TAXI_PIPELINE_BEAM_MODE": "multi_processing",
                              "TAXI_PIPELINE_BEAM_ARGS": "--direct_num_workers=2"})
    assert config.beam_args == with_worker_setup(BEAM_MODES["multi_processing"]
                                                 + ("--direct_num_workers=2",))


def test_a_span_versioned_data_root_is_detected_as_the_cli_does(tmp_path):
    (tmp_path / "span-1").mkdir()
    config = config_from_env({"TAXI_PIPELINE_DATA_ROOT": str(tmp_path),
                              "TAXI_PIPELINE_SPAN_WINDOW": "3"})
    assert config.span_versioned is True and config.span_window == 3
    (tmp_path / "stray.csv").write_text("fare\n1\n")
    with pytest.raises(ConfigError, match="mixes span directories"):
        config_from_env({"TAXI_PIPELINE_DATA_ROOT": str(tmp_path)})


# (reader, variable, bad value, what the error says is wrong): each setting alone, through the one
# function that reads it.
BAD_SETTINGS = [
    (config_from_env, "TAXI_PIPELINE_TRAIN_STEPS", "many", "is not a valid int"),
    (config_from_env, "TAXI_PIPELINE_TRAIN_STEPS", "-1", r"must be at least 0"),
    (config_from_env, "TAXI_PIPELINE_AUC_FLOOR", "2", "a threshold on auc must be in [0, 1]"),
    (config_from_env, "TAXI_PIPELINE_DISTRIBUTION_STRATEGY", "tpu", "distribution_strategy must be"),
    (config_from_env, "TAXI_PIPELINE_BEAM_MODE", "turbo", "Unknown Beam mode 'turbo'"),
    (config_from_env, "TAXI_PIPELINE_BEAM_ARGS", '--project="p', "No closing quotation"),
    (dag_settings, "TAXI_PIPELINE_RETRIES", "x", "is not a valid int"),
    (dag_settings, "TAXI_PIPELINE_RETRY_DELAY_MINUTES", "soon", "is not a valid float"),
    (dag_settings, "TAXI_PIPELINE_SCHEDULE", "daily", "is not a valid schedule"),
    (dag_settings, "TAXI_PIPELINE_SCHEDULE", "61 * * * *", "out of range"),
    (dag_settings, "TAXI_PIPELINE_SCHEDULE", "@fortnightly", "is not a valid schedule"),
]
# As Airflow spells schedules: its presets, cron with 5 to 7 fields, and "None" for manual runs only.
GOOD_SCHEDULES = {"@daily": "@daily", "@quarterly": "@quarterly", "@once": "@once",
                  "@continuous": "@continuous", "@annually": "@annually", "30 4 * * 1": "30 4 * * 1",
                  "*/15 6-18 * * 1-5": "*/15 6-18 * * 1-5", "0 0 * * * 30": "0 0 * * * 30",
                  "None": None, "none": None}
BAD_SCHEDULES = [value for _, variable, value, _ in BAD_SETTINGS if variable == "TAXI_PIPELINE_SCHEDULE"]


@pytest.mark.parametrize("read,variable,value,reason", BAD_SETTINGS,
                         ids=[f"{variable}={value}" for _, variable, value, _ in BAD_SETTINGS])
def test_a_bad_setting_names_the_variable(read, variable, value, reason):
    with pytest.raises(ConfigError, match=re.escape(f"{variable}={value!r}")) as error:
        read({variable: value})
    assert reason in str(error.value)


def test_a_schedule_is_an_airflow_preset_a_cron_expression_or_none_for_manual_runs():
    for value, expected in GOOD_SCHEDULES.items():
        assert dag_settings({"TAXI_PIPELINE_SCHEDULE": value})["schedule"] == expected, value


AIRFLOW_SCHEDULE_SCRIPT = textwrap.dedent("""
    import datetime, json, sys
    from airflow.exceptions import AirflowTimetableInvalid
    from airflow.models.dag import DAG
    verdicts = {}
    for n, (name, schedule) in enumerate(json.loads(sys.argv[1])):
        try:
            DAG(f"d{n}", schedule=schedule, start_date=datetime.datetime.fromisoformat(sys.argv[2]),
                max_active_runs=1).validate()  # what DagBag checks before it takes a DAG
            verdicts[name] = "valid"
        except AirflowTimetableInvalid as e:
            verdicts[name] = str(e)
    print(json.dumps(verdicts))
""")


@needs_airflow
def test_the_schedule_check_agrees_with_airflow_s_own(tmp_path):
    """Airflow takes every schedule the check passes (as dag_settings hands it over) and refuses every
    one it rejects: the check refuses nothing Airflow would run, and passes nothing it would not."""
    passed = {}
    for value in [*GOOD_SCHEDULES, *BAD_SCHEDULES]:
        try:
            passed[value] = dag_settings({"TAXI_PIPELINE_SCHEDULE": value})["schedule"]
        except ConfigError:
            pass
    cases = [(value, passed.get(value, value)) for value in [*GOOD_SCHEDULES, *BAD_SCHEDULES]]
    result = subprocess.run([sys.executable, "-c", AIRFLOW_SCHEDULE_SCRIPT, json.dumps(cases),
                             START_DATE.isoformat()], env=airflow_env(tmp_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    assert {value for value, verdict in verdicts.items() if verdict == "valid"} == set(passed)
    assert set(passed) == set(GOOD_SCHEDULES)


@needs_airflow
def test_a_bad_schedule_makes_the_dag_an_import_error_naming_the_variable(tmp_path):
    parsed = parse_dag(airflow_env(tmp_path, TAXI_PIPELINE_SCHEDULE="0 25 * * *"))
    assert parsed["dag_ids"] == []
    (error,) = parsed["import_errors"].values()
    assert "TAXI_PIPELINE_SCHEDULE='0 25 * * *' is not a valid schedule" in error


@needs_airflow
@pytest.mark.slow
def test_airflow_dags_test_runs_the_pipeline_and_pushes_a_model(tmp_path, small_data_root):
    home = tmp_path / "airflow"
    serving = tmp_path / "serving"
    env = airflow_env(home, TAXI_PIPELINE_DATA_ROOT=small_data_root,
                      TAXI_PIPELINE_OUTPUT_DIR=str(tmp_path / "output"),
                      TAXI_PIPELINE_SERVING_DIR=str(serving),
                      TAXI_PIPELINE_TRAIN_STEPS="60", TAXI_PIPELINE_EVAL_STEPS="5",
                      # A failing task fails the test at once, not after two 5-minute retry delays.
                      TAXI_PIPELINE_RETRIES="0",
                      # 60 steps on 3,000 rows: well above chance, not the full model's 0.95.
                      TAXI_PIPELINE_AUC_FLOOR="0.6")
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    run = subprocess.run([AIRFLOW, "dags", "test", DAG_ID, "2026-11-20"], env=env,
                         capture_output=True, text=True, timeout=1800)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]

    # What Airflow recorded (`dags test` does not serialize the DAG, so `dags list-runs` can't see
    # it): read its SQLite database.
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        runs = db.execute("SELECT state FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()
        (run_id,) = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchone()
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?",
                                (DAG_ID,)).fetchall())
    assert runs == [("success",)], log[-5000:]
    components = create_pipeline(config_from_env(env)).components
    assert tasks == {**{c.id: "success" for c in components}, REPORT_TASK: "success"}

    # The settings reached the components: the Trainer ran with TAXI_PIPELINE_TRAIN_STEPS.
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(tmp_path / "output" / "metadata.sqlite")))
    (trainer,) = store.get_executions_by_type("components.trainer.Trainer")
    assert trainer.properties["train_steps"].string_value == "60"

    versions = [v for v in os.listdir(serving / "big_tipper") if v.isdigit()]
    assert len(versions) == 1, os.listdir(serving / "big_tipper")
    assert os.path.isfile(serving / "big_tipper" / versions[0] / "saved_model.pb")
    assert os.path.isfile(tmp_path / "output" / "metadata.sqlite")

    # The last task wrote the run's record and report, read from the store TFX's Airflow runner
    # wrote (its `run` context is named after Airflow's run id).
    output = tmp_path / "output"
    (record_file,) = os.listdir(output / "runs")
    with open(output / "runs" / record_file, encoding="utf-8") as f:
        record = json.load(f)
    assert record["run_id"] == run_id and record["error"] is None and record["blessed"] is True
    states = {c["name"]: c["state"] for c in record["components"]}  # in the order Airflow ran them
    assert set(states) == {c.id for c in components}
    assert {states[c.id] for c in components if not isinstance(c, Resolver)} == {"ran"}
    assert record["data"]["input_base"] == small_data_root
    path = page.report_path(str(output), run_id)
    assert f"Report: {path}" in log
    loaded = report_browser.load(path)
    assert loaded.outside_requests == [] and loaded.console_errors == []
    assert loaded.outcome == f"Pushed version {versions[0]} to {serving / 'big_tipper' / versions[0]}"
    assert [row[:2] for row in loaded.tables["components"][1:]] == [
        [c["name"], c["state"]] for c in record["components"]]
    assert {"curve-loss", "ROC", "Calibration"} <= set(loaded.figures)
    assert loaded.tables["history-table"][1][0] == f"{run_id} (this run)"


def test_run_history_commands_on_a_store_only_airflow_wrote(tmp_path):
    """TFX's Airflow runner records runs as `run` contexts, not the local runner's `pipeline_run`:
    `python -m pipeline runs` lists no local runs instead of failing on the missing type."""
    from pipeline.run_summary import open_store, run_ids  # pylint: disable=import-outside-toplevel

    path = str(tmp_path / "metadata.sqlite")
    store = open_store(path, read_only=False)
    for type_name, name in (("pipeline", DAG_ID), ("run", f"{DAG_ID}.manual__2026-11-20")):
        type_id = store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=name)])
    assert run_ids(open_store(path), DAG_ID) == []
