"""Compiles `create_pipeline(config, kubeflow=True)` into a Kubeflow Pipelines v2 / Vertex AI spec.

TFX's KubeflowV2DagRunner only writes the spec; every component then runs on the platform as
`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...` in the image named
here, which must carry this project and the locked dependencies (the repo's Dockerfile builds one).
Needs the `[kfp]` extra.
"""
import dataclasses
import os
import re
from typing import Any, Dict, List

from tfx.orchestration import data_types
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from models.spec import PACKAGE_PREFIX
from models.spec import load as load_spec
from pipeline.config import PipelineConfig, default_data_root
from pipeline.pipeline import create_pipeline

# The Python of the image the repo's Dockerfile builds (python:3.11-slim), and where it installs
# packages: a spec's `data_root: package:<pkg>/<path>` is there in the image.
IMAGE_PYTHON = "3.11"
IMAGE_SITE_PACKAGES = f"/usr/local/lib/python{IMAGE_PYTHON}/site-packages"
# Pipeline parameters a run can set (Vertex: PipelineJob(parameter_values=...)).
RUNTIME_PARAMETERS = ("data_root", "train_steps")


def image_data_root(spec_dir: str) -> str:
    """The default of the `data_root` pipeline parameter: the spec's data root, as seen in the image."""
    spec = load_spec(spec_dir)
    if spec.data_root and spec.data_root.startswith(PACKAGE_PREFIX):
        return os.path.join(IMAGE_SITE_PACKAGES, spec.data_root[len(PACKAGE_PREFIX):])
    return default_data_root(spec_dir)


def compile_pipeline(config: PipelineConfig, image: str, output_path: str) -> str:
    """Writes the spec to `output_path`: `.json` a PipelineJob (Vertex), `.yaml` a PipelineSpec."""
    output_path = os.path.abspath(output_path)
    # Kubeflow names allow [a-z0-9-] only: flights_delayed -> flights-delayed.
    config = dataclasses.replace(
        config, pipeline_name=re.sub(r"[^a-z0-9-]", "-", config.pipeline_name.lower()))
    tfx_pipeline = create_pipeline(config, kubeflow=True)
    defaults = runtime_parameter_defaults(tfx_pipeline)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        # Schema 2.1: parameters typed as STRING / NUMBER_INTEGER, what KFP 2 and Vertex expect.
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True))
    job = runner.run(tfx_pipeline, parameter_values=defaults, write_out=False)
    # TFX 1.16 types the parameters but drops their defaults from the spec, so a run would have to
    # set every one; KFP's own compiler writes them here, where KFP and Vertex look for them.
    parameters = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    for name, default in defaults.items():
        parameters[name]["defaultValue"] = default
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    # TFX's own writer: JSON as is, YAML as the bare PipelineSpec with KFP's comment header.
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file(  # pylint: disable=protected-access
        job, f"{config.pipeline_name}: a CSV table to a validated, evaluated, pushed "
             f"{config.spec.task.task} model.",
        output_path)
    return output_path


def runtime_parameter_defaults(tfx_pipeline) -> Dict[str, Any]:
    """name -> default of every RuntimeParameter the components take."""
    return {value.name: value.default for component in tfx_pipeline.components
            for value in component.exec_properties.values()
            if isinstance(value, data_types.RuntimeParameter)}


def local_path_warnings(config: PipelineConfig) -> List[str]:
    """Paths the platform's containers cannot share: each step runs in a fresh container."""
    return [f"--{flag} {path} is a local path; on Kubeflow / Vertex every component runs in its own "
            f"container, so use a shared location such as gs://bucket/..."
            for flag, path in (("pipeline-root", config.output_dir),
                               ("serving-dir", config.serving_dir))
            if "://" not in path]
