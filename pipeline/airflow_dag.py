"""An Airflow DAG that runs `create_pipeline(config)` on a schedule, built by TFX's AirflowDagRunner.

Each component is one Airflow task (task id = component id). To deploy, install the project with the
`[airflow]` extra where Airflow runs and put a one-line file in Airflow's dags folder:

    from pipeline.airflow_dag import dag  # noqa: F401

Settings come from PIPELINE_* environment variables (pipeline/airflow_config.py), read whenever
Airflow parses the DAG. A last task, `report`, writes the run's record and HTML report to
`<output-dir>/runs/` and `<output-dir>/reports/<run id>.html` whatever the components did.
"""
import os

# `pipeline` first: importing it sets TF_USE_LEGACY_KERAS=1 before TFX loads TensorFlow.
from pipeline import beam_tuning
from pipeline.airflow_config import config_from_env, dag_settings
from pipeline.pipeline import create_pipeline
from airflow.operators.python import PythonOperator
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig


REPORT_TASK = "report"


def write_report(config, dag_run, **_):
    """The run's record and report from the metadata store, as a local run writes them; then fails
    if a component did (the report task is the DAG's only leaf: Airflow judges the run by it)."""
    from airflow.exceptions import AirflowException  # pylint: disable=import-outside-toplevel

    from pipeline import local_runner  # pylint: disable=import-outside-toplevel
    from pipeline.report import page  # pylint: disable=import-outside-toplevel
    from pipeline.run_summary import summarize  # pylint: disable=import-outside-toplevel

    failed = sorted(ti.task_id for ti in dag_run.get_task_instances()
                    if ti.task_id != REPORT_TASK and ti.state in ("failed", "upstream_failed"))
    try:
        summary = summarize(config.metadata_path, config.pipeline_name, dag_run.run_id)
    except (FileNotFoundError, LookupError):
        summary = None  # no component got as far as recording itself
    error = (AirflowException(f"Airflow tasks failed: {', '.join(failed)} (see their logs)")
             if failed else None)
    # The component that stopped: its execution never completed (failed, or left running).
    stopped = ([c.name for c in summary.components if c.state in ("failed", "running")]
               if summary else [])
    outcome = local_runner.RunOutcome(summary=summary, error=error,
                                      failed_component=(stopped + failed + [None])[0])
    record = local_runner.write_record(config, outcome, run_id=dag_run.run_id)
    print(f"Report: {page.write(config, summary, record)}")
    if error:
        raise error


def build_dag(environ):
    # Airflow runs the components in the processes that import this module; see beam_tuning.
    beam_tuning.install()
    config = config_from_env(environ)
    dag = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_settings(environ))).run(
        create_pipeline(config))
    components = list(dag.tasks)
    # all_done: failed and stopped runs get their report too; no retry: it reads, it computes nothing.
    report = PythonOperator(task_id=REPORT_TASK, python_callable=write_report,
                            op_kwargs={"config": config}, trigger_rule="all_done", retries=0,
                            dag=dag)
    report.set_upstream(components)
    return dag


dag = build_dag(os.environ)
