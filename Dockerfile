# The image Kubeflow Pipelines / Vertex AI runs every component in:
#   docker build -t REGISTRY/taxi-tfx-pipeline:TAG . && docker push REGISTRY/taxi-tfx-pipeline:TAG
#   python -m pipeline compile --target kubeflow --image REGISTRY/taxi-tfx-pipeline:TAG
# The compiled spec starts each component as
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...
# (ExampleGen through TFX's file_based_example_gen driver), so the image needs no entrypoint of its own.
#
# Python 3.11 (python:3.11-slim, on Debian 12): the image is what runs in production, and 3.10 gets no
# security fixes since October 2026. A spec compiled with either Python runs in it (the spec names TFX
# executors and their serialized arguments, nothing version-specific). pipeline/kubeflow.py's
# IMAGE_PYTHON must name the same version (a compiled `package:` data root points into its site-packages).
FROM python:3.11-slim

# Keras 2: TFT and TFMA 1.16 need it, and it must be set before TensorFlow first loads. TFX's
# entrypoint imports TensorFlow before any project code runs, so the variable lives in the image.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# EdgeExport's tools (components/edge_export.py), as `make tfjs` installs them in a checkout: Node and
# npm from Debian; the TF.js converter in its own venv from its own lock (it cannot share a venv with
# the TFX set), named in PIPELINE_TFJS_VENV. Rarely changed, so first. The npm packages come below,
# from the installed package's lockfile.
COPY components/tfjs/requirements.lock /tmp/requirements-tfjs.lock
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/tfjs-venv && /opt/tfjs-venv/bin/pip install pip==24.2 \
 && /opt/tfjs-venv/bin/pip install --no-deps -r /tmp/requirements-tfjs.lock \
 && rm /tmp/requirements-tfjs.lock
ENV PIPELINE_TFJS_VENV=/opt/tfjs-venv

# The locked set next, in its own layer: it stays cached while only the project's code changes.
# tfx and ml-pipelines-sdk 1.16.0 declare Requires-Python <3.11: those two alone are installed past
# that bound first, without dependencies, as `make install` does (see the Makefile).
COPY requirements-3.11.lock /tmp/requirements.lock
RUN pip install pip==24.2 \
 && pip install --no-deps --ignore-requires-python -c /tmp/requirements.lock tfx ml-pipelines-sdk \
 && pip install -r /tmp/requirements.lock && rm /tmp/requirements.lock

# The project as an installed (non-editable) package, schemas/ and components/tfjs/ included; the source
# is not kept, so components import exactly what was installed. Then @tensorflow/tfjs, pinned by its
# package-lock.json, where EdgeExport's Node runner looks for it.
COPY . /tmp/project
RUN pip install --no-deps /tmp/project && rm -rf /tmp/project \
 && cd /usr/local/lib/python3.11/site-packages/components/tfjs \
 && npm ci --no-audit --no-fund --loglevel=error

WORKDIR /home
