"""An Airflow DAG that runs `create_pipeline(config)` on a schedule, built by TFX's AirflowDagRunner.

Each component is one Airflow task (task id = component id). To deploy, install the project with the
`[airflow]` extra where Airflow runs and put a one-line file in Airflow's dags folder:

    from pipeline.airflow_dag import dag  # noqa: F401

Settings come from PIPELINE_* environment variables (pipeline/airflow_config.py), read whenever
Airflow parses the DAG.
"""
import os

# `pipeline` first: importing it sets TF_USE_LEGACY_KERAS=1 before TFX loads TensorFlow.
from pipeline import beam_tuning
from pipeline.airflow_config import config_from_env, dag_settings
from pipeline.pipeline import create_pipeline
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig


def build_dag(environ):
    # Airflow runs the components in the processes that import this module; see beam_tuning.
    beam_tuning.install()
    return AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_settings(environ))).run(
        create_pipeline(config_from_env(environ)))


dag = build_dag(os.environ)
