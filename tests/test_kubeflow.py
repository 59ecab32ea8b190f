"""Kubeflow Pipelines v2 / Vertex: the compiled spec has the local pipeline's components, images,
typed parameters wired where they are used, and the same DAG; the Dockerfile builds what it runs."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format

from tests.conftest import cli_env, require_extra

require_extra("kfp", "kfp")
from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402

from components import edge_formats, schema_importer  # noqa: E402
from components.fingerprints import file_sha256  # noqa: E402
from components.trainer import fold_train_steps  # noqa: E402
from pipeline import cli, kubeflow  # noqa: E402
from pipeline.config import DEFAULT_SPEC_DIR, PROJECT_ROOT, PipelineConfig  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402

IMAGE = "europe-docker.pkg.dev/my-project/ml/taxi-tfx-pipeline:1.2.3"
# The Kubeflow V2 compiler splits a LatestBlessedModelStrategy resolver into two query tasks.
SPLIT_RESOLVER_SUFFIXES = ("-model-blessing-resolver", "-model-resolver")


@pytest.fixture(scope="module")
def config():
    return PipelineConfig(data_root="gs://bucket/taxi/data", output_dir="gs://bucket/taxi/root",
                          serving_dir="gs://bucket/taxi/serving", train_steps=321)


@pytest.fixture(scope="module")
def job(config, tmp_path_factory):
    path = kubeflow.compile_pipeline(config, IMAGE,
                                     str(tmp_path_factory.mktemp("kfp") / "taxi_pipeline.json"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def spec(job):
    return job["pipelineSpec"]


@pytest.fixture(scope="module")
def tasks(spec):
    return spec["root"]["dag"]["tasks"]


def _node_id(task_name):
    for suffix in SPLIT_RESOLVER_SUFFIXES:
        if task_name.endswith(suffix):
            return task_name[:-len(suffix)]
    return task_name


@pytest.fixture(scope="module")
def local_components(config, tmp_path_factory):
    """The same pipeline for the local runner (local paths: it creates its SQLite store)."""
    local = tmp_path_factory.mktemp("local")
    local_config = dataclasses.replace(config, output_dir=str(local / "out"),
                                       serving_dir=str(local / "serving"))
    return {c.id: c for c in create_pipeline(local_config).components}


def test_every_component_of_the_local_pipeline_is_a_task(local_components, tasks):
    assert {_node_id(name) for name in tasks} == set(local_components)


def test_every_component_runs_in_the_given_image_with_tfx_s_entrypoint(local_components, spec):
    executors = spec["deploymentSpec"]["executors"]
    containers = [e["container"] for e in executors.values() if "container" in e]
    resolvers = [e for e in executors.values() if "resolver" in e]
    # Resolvers are metadata queries the platform runs itself; everything else is a container.
    assert len(containers) + len(resolvers) == len(executors)
    assert len(containers) == len(local_components) - 2
    assert {c["image"] for c in containers} == {IMAGE}
    for container in containers:
        command = container.get("command", [])
        assert "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor" in command \
            or "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in command, command
    assert IMAGE in json.dumps(spec)
    assert "gcr.io/tfx-oss-public" not in json.dumps(spec)  # TFX's default image never sneaks in


def test_runtime_parameters_are_typed_with_defaults(spec, config):
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(kubeflow.RUNTIME_PARAMETERS) <= set(parameters)
    assert parameters["data_root"]["parameterType"] == "STRING"
    assert parameters["data_root"]["defaultValue"] == config.data_root
    assert parameters["train_steps"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["train_steps"]["defaultValue"] == 321


def test_runtime_parameters_are_wired_where_they_are_used(tasks):
    example_gen = tasks["CsvExampleGen"]["inputs"]["parameters"]
    assert example_gen["input_base"] == {"componentInputParameter": "data_root"}
    trainer = tasks["Trainer"]["inputs"]["parameters"]
    assert trainer["train_steps"] == {"componentInputParameter": "train_steps"}
    # train_args still holds the config's steps for the local runner; the executor overrides them.
    assert '"num_steps": 321' in trainer["train_args"]["runtimeValue"]["constant"]
    # No task takes either parameter as a JSON-dumped object, the bug of parameters inside protos.
    assert "RuntimeParameter" not in json.dumps(tasks)


def test_train_steps_parameter_overrides_train_args_as_kubeflow_delivers_it():
    exec_properties = {"train_args": '{"num_steps": 321}', "train_steps": 40.0, "run_fn": "m.f"}
    folded = fold_train_steps(exec_properties)
    assert json.loads(folded["train_args"]) == {"num_steps": 40}
    assert "train_steps" not in folded and folded["run_fn"] == "m.f"
    assert fold_train_steps({"train_args": '{"num_steps": 5}'}) == {"train_args": '{"num_steps": 5}'}
    # 0: no cap; TFX reads an unset num_steps as None and run_fn sizes training by the data.
    assert json.loads(fold_train_steps({"train_args": '{"num_steps": 321}', "train_steps": 0})[
        "train_args"]).get("num_steps", 0) == 0
    for bad in (2.5, -3):
        with pytest.raises(ValueError, match=r"train_steps must be an integer >= 0 \(0: no cap\)"):
            fold_train_steps({"train_args": "{}", "train_steps": bad})


def test_dag_edges_equal_the_local_pipeline_s(local_components, tasks):
    local = local_components
    local_resolvers = {"previous_data_statistics_resolver", "latest_blessed_model_resolver"}
    for name, task in tasks.items():
        upstream = {_node_id(t) for t in task.get("dependentTasks", [])}
        if _node_id(name) in local_resolvers:
            # Query tasks: they read the metadata store, not this run's outputs (see create_pipeline).
            assert upstream == set(), name
        else:
            assert upstream == {n.id for n in local[name].upstream_nodes}, name
    # The explicit gate edges (no data flows along them) survive compilation.
    assert {"DataValidationGate", "DriftCheck"} <= set(tasks["Transform"]["dependentTasks"])


def test_paths_and_pipeline_root(job, tasks, config):
    assert job["runtimeConfig"]["gcsOutputDirectory"] == config.output_dir
    push = tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constant"]
    assert "gs://bucket/taxi/serving/big_tipper" in push
    # The schema is named inside the project, which the image carries, and resolves there.
    schema = tasks["ImportCuratedSchema"]["inputs"]["parameters"]
    relative = schema["schema_file"]["runtimeValue"]["constant"]
    assert relative == "schemas/taxi/schema.pbtxt"
    resolved = os.path.join(schema_importer.PROJECT_ROOT, relative)
    assert file_sha256(resolved) == schema["schema_sha256"]["runtimeValue"]["constant"]
    assert "metadata.sqlite" not in json.dumps(job)  # Vertex / KFP own the metadata store


def test_compile_command_writes_a_spec_kfp_s_client_loads(tmp_path):
    output = tmp_path / "out" / "pipeline.yaml"
    result = CliRunner().invoke(cli.main, [
        "compile", "--target", "kubeflow", "--image", IMAGE, "--output", str(output),
        "--train-steps", "77"])
    assert result.exit_code == 0, result.output
    # Defaults are local paths, which containers on the platform do not share: say so.
    assert "--pipeline-root" in result.output and "--serving-dir" in result.output
    text = output.read_text()
    assert "# Name: taxi-big-tipper" in text  # Kubeflow names allow [a-z0-9-] only
    assert "#  train_steps: int [Default: 77]" in text
    image_root = (f"/usr/local/lib/python{kubeflow.IMAGE_PYTHON}/site-packages/tfx/examples/"
                  "chicago_taxi_pipeline/data/simple")  # the spec's `package:tfx/...` data root, in the image
    assert kubeflow.image_data_root(DEFAULT_SPEC_DIR) == image_root
    assert f"#  data_root: str [Default: '{image_root}']" in text
    # What kfp.Client().create_run_from_pipeline_package does with a .yaml file.
    spec = json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())
    assert spec.root.input_definitions.parameters["train_steps"].default_value.number_value == 77
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"].values()
    assert {e["container"]["image"] for e in executors if "container" in e} == {IMAGE}


def test_the_json_is_a_valid_pipeline_job(job):
    parsed = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    assert parsed.pipeline_spec["pipelineInfo"]["name"] == "taxi-big-tipper"
    values = json_format.MessageToDict(parsed.runtime_config)["parameterValues"]
    assert values == {"data_root": "gs://bucket/taxi/data", "train_steps": 321}


def test_compile_command_rejects_unknown_targets_and_needs_an_image():
    result = CliRunner().invoke(cli.main, ["compile", "--target", "argo", "--image", IMAGE])
    assert result.exit_code == 2 and "argo" in result.output
    result = CliRunner().invoke(cli.main, ["compile", "--target", "kubeflow"])
    assert result.exit_code == 2 and "--image" in result.output


def _dockerfile_instructions():
    with open(os.path.join(PROJECT_ROOT, "Dockerfile"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    joined = " ".join(lines).replace("\\ ", " ")
    return [i.strip() for i in re.split(r"\s(?=(?:FROM|ENV|COPY|RUN|WORKDIR|ENTRYPOINT|CMD) )",
                                        joined)]


def test_dockerfile_installs_the_lock_then_the_project_and_selects_keras_2():
    instructions = _dockerfile_instructions()
    assert instructions[0] == f"FROM python:{kubeflow.IMAGE_PYTHON}-slim"
    # A spec's `package:` data root is looked up where that base image installs packages, and the
    # image installs the lock of its own Python.
    assert kubeflow.IMAGE_SITE_PACKAGES == f"/usr/local/lib/python{kubeflow.IMAGE_PYTHON}/site-packages"
    assert any(re.match(rf"COPY requirements-{kubeflow.IMAGE_PYTHON}\.lock ", i) for i in instructions)
    env = next(i for i in instructions if i.startswith("ENV "))
    assert re.search(r"\bTF_USE_LEGACY_KERAS=1\b", env)
    runs = [i for i in instructions if i.startswith("RUN ")]
    lock = next(n for n, r in enumerate(runs) if re.search(r"pip install -r \S*requirements\.lock", r))
    # Only tfx and ml-pipelines-sdk skip the Requires-Python check, and before the lock.
    past_bound = [r for r in runs if "--ignore-requires-python" in r]
    assert len(past_bound) == 1 and runs.index(past_bound[0]) == lock
    assert re.search(r"pip install --no-deps --ignore-requires-python -c \S+ tfx ml-pipelines-sdk\s+&&",
                     runs[lock])
    project = next(n for n, r in enumerate(runs) if re.search(r"pip install --no-deps /tmp/project", r))
    assert lock < project
    assert "-e " not in runs[project]  # installed, not editable
    # Every setting that must reach TensorFlow is set before the first RUN that installs it.
    assert instructions.index(env) < instructions.index(runs[lock])
    with open(os.path.join(PROJECT_ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignored = set(f.read().split())
    assert {".venv", ".venv-*", ".lock-venv-*", ".git", "pipeline_output", "serving_model",
            "**/node_modules"} <= ignored


def test_the_image_has_edge_export_s_tools_where_it_looks_for_them():
    """EdgeExport runs in every pipeline: the image needs Node, the converter's venv from its lock
    (named in PIPELINE_TFJS_VENV, which edge_formats reads) and the npm packages beside the installed
    components/tfjs/ (package data, with the lock that keys the component's cache)."""
    instructions = _dockerfile_instructions()
    runs = [i for i in instructions if i.startswith("RUN ")]
    tools = next(r for r in runs if "/opt/tfjs-venv" in r)
    assert re.search(r"apt-get install -y --no-install-recommends nodejs npm", tools)
    assert re.search(r"python -m venv /opt/tfjs-venv .*/opt/tfjs-venv/bin/pip install --no-deps -r "
                     r"/tmp/requirements-tfjs\.lock", tools)
    assert "COPY components/tfjs/requirements.lock /tmp/requirements-tfjs.lock" in instructions
    env = [i for i in instructions if i.startswith("ENV ")]
    assert "ENV PIPELINE_TFJS_VENV=/opt/tfjs-venv" in env
    assert instructions.index("ENV PIPELINE_TFJS_VENV=/opt/tfjs-venv") > instructions.index(tools)
    project = " ".join(next(r for r in runs if "pip install --no-deps /tmp/project" in r).split())
    assert f"cd {kubeflow.IMAGE_SITE_PACKAGES}/components/tfjs && npm ci " in project


@pytest.mark.slow  # a pip install and a fresh process importing TensorFlow: ~20 s
def test_an_installed_package_finds_edge_export_s_tools_as_the_image_sets_them(tmp_path):
    """As in the image: the project installed (not editable), the converter's venv named in
    PIPELINE_TFJS_VENV. The tools, the converter's lock included, travel as package data, and key
    EdgeExport's cache as in the checkout."""
    source = tmp_path / "source"
    for name in ("components", "models", "pipeline", "schemas"):
        shutil.copytree(os.path.join(PROJECT_ROOT, name), source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(PROJECT_ROOT, name), source)
    site = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
                    str(source)], check=True, capture_output=True, timeout=300)
    script = ("from components import edge_formats as e; import json; "
              "print(json.dumps([e.TFJS_VENV, e.TFJS_TOOLS, e.tools_sha256()]))")
    env = {**cli_env(), "PYTHONPATH": str(site), "PIPELINE_TFJS_VENV": "/opt/tfjs-venv"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    venv, tools, tools_sha256 = json.loads(result.stdout.strip().splitlines()[-1])
    assert venv == "/opt/tfjs-venv"
    assert tools == str(site / "components" / "tfjs")
    assert tools_sha256 == edge_formats.tools_sha256()


@pytest.mark.slow  # importing the Vertex SDK alone takes ~10 s
def test_vertex_sdk_takes_the_json_and_per_run_parameter_values(job, tmp_path):
    """Offline: Vertex's PipelineJob builds its request from the file (submitting needs a project)."""
    from google.auth.credentials import AnonymousCredentials  # pylint: disable=import-outside-toplevel
    from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel

    path = tmp_path / "taxi_pipeline.json"
    path.write_text(json.dumps(job))

    def values(**parameter_values):
        pipeline_job = aiplatform.PipelineJob(
            display_name="taxi", template_path=str(path), parameter_values=parameter_values,
            project="my-project", location="us-central1", credentials=AnonymousCredentials())
        return dict(pipeline_job._gca_resource.runtime_config.parameter_values)  # pylint: disable=protected-access

    assert values() == {"data_root": "gs://bucket/taxi/data", "train_steps": 321}
    assert values(data_root="gs://b/new", train_steps=1000) == {"data_root": "gs://b/new",
                                                                "train_steps": 1000}


@pytest.mark.slow  # a fresh process importing TFX
def test_a_compiled_task_runs_through_tfx_s_kubeflow_entrypoint(job, spec, tmp_path):
    """ImportCuratedSchema as a Kubeflow launcher starts it: the compiled command and arguments, an
    ExecutorInput built from the task's parameters, another working directory, the image's env."""
    task = spec["root"]["dag"]["tasks"]["ImportCuratedSchema"]
    container = spec["deploymentSpec"]["executors"]["ImportCuratedSchema_executor"]["container"]
    output_type = spec["components"]["ImportCuratedSchema"]["outputDefinitions"]["artifacts"][
        "schema"]["artifactType"]
    executor_input = {
        "inputs": {"parameterValues": {name: value["runtimeValue"]["constant"]
                                       for name, value in task["inputs"]["parameters"].items()}},
        "outputs": {
            "artifacts": {"schema": {"artifacts": [{
                "uri": str(tmp_path / "schema_artifact"), "type": output_type,
                "name": "projects/1/locations/us-central1/metadataStores/default/artifacts/7"}]}},
            "outputFile": str(tmp_path / "task" / "executor_output.json")},
    }
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    # As in the image: its `python` first on PATH, TF_USE_LEGACY_KERAS=1 from the Dockerfile.
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(container["command"] + args, cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(PipelineConfig().schema_path, encoding="utf-8") as f:
        assert (tmp_path / "schema_artifact" / "schema.pbtxt").read_text() == f.read()
    assert (tmp_path / "task" / "executor_output.json").is_file()
