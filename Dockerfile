# The image Kubeflow Pipelines / Vertex AI runs every component in:
#   docker build -t REGISTRY/taxi-tfx-pipeline:TAG . && docker push REGISTRY/taxi-tfx-pipeline:TAG
#   python -m pipeline compile --target kubeflow --image REGISTRY/taxi-tfx-pipeline:TAG
# The compiled spec starts each component as
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...
# (ExampleGen through TFX's file_based_example_gen driver), so the image needs no entrypoint of its own.
FROM python:3.10-slim

# Keras 2: TFT and TFMA 1.16 need it, and it must be set before TensorFlow first loads. TFX's
# entrypoint imports TensorFlow before any project code runs, so the variable lives in the image.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The locked set first, in its own layer: it stays cached while only the project's code changes.
COPY requirements.lock /tmp/requirements.lock
RUN pip install pip==24.2 && pip install -r /tmp/requirements.lock && rm /tmp/requirements.lock

# The project as an installed (non-editable) package, schemas/ included; the source is not kept, so
# components import exactly what was installed.
COPY . /tmp/project
RUN pip install --no-deps /tmp/project && rm -rf /tmp/project

WORKDIR /home
