"""Installs the project's packages: pipeline (DAG, config, CLI), models (features, layers, trainer), components.

Direct dependencies only; `requirements-3.X.lock` pins every transitive package for Python 3.X (see the
Makefile's `lock`).
"""
from setuptools import find_packages, setup

setup(
    name="taxi-tfx-pipeline",
    version="0.1.0",
    description="A production TFX pipeline: taxi CSV to a validated, evaluated, TF-Serving-ready model.",
    # 3.11 too, although tfx and ml-pipelines-sdk 1.16 declare <3.11: the Makefile installs those two
    # past that bound (see its `install`); every other pinned package has cp311 wheels.
    python_requires=">=3.9,<3.12",
    # `schemas` (no __init__.py) is listed so a non-editable install, e.g. in the container image,
    # carries the dataset specs (schemas/<dataset>/dataset.yaml + schema.pbtxt) next to the packages,
    # where pipeline/config.py looks for them.
    packages=find_packages(include=["pipeline", "pipeline.*", "models", "models.*",
                                    "components", "components.*"]) + ["schemas"],
    # components/tfjs/: the TF.js converter script, the Node runner, its pinned npm packages list and the
    # converter venv's lock (it keys EdgeExport's cache).
    package_data={"schemas": ["*/dataset.yaml", "*/schema.pbtxt"],
                  "components": ["tfjs/convert.py", "tfjs/predict.js", "tfjs/package*.json",
                                 "tfjs/requirements.lock"],
                  "pipeline.report": ["templates/*.j2"],
                  "pipeline.demo": ["templates/*.j2", "static/*.js"]},
    # Every distribution the packages import directly, at the locks' version (tests/test_setup.py
    # checks both), even those another pin already pulls in; a marker where the Pythons differ.
    install_requires=[
        "tfx==1.16.0",
        "tfx-bsl==1.16.1",
        "tensorflow==2.16.2",
        # pipeline tensorboard and models/projector.py (TensorFlow pins it; imported directly).
        "tensorboard==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-metadata==1.16.1",
        "apache-beam[gcp]==2.59.0",
        "dill==0.3.1.1",
        "objsize==0.7.1",
        "ml-metadata==1.16.0",
        "tensorflow-serving-api==2.16.1",
        "grpcio==1.85.1",
        "protobuf==3.20.3; python_version < '3.11'",
        "protobuf==4.25.8; python_version >= '3.11'",
        "numpy==1.26.4",
        "pyarrow==10.0.1",
        "pandas==1.5.3",
        "absl-py==1.4.0",
        "click==8.5.1",
        "rich==13.9.4",
        "starlette==1.7.0",
        "uvicorn==0.54.0",
        "httptools==0.9.0",
        "prometheus-client==0.26.0",
        "httpx==0.28.1",
        "PyYAML==6.0.3",
        "requests==2.34.2",
        # The run report (pipeline/report/): its page template and its static SVG figures.
        "Jinja2==3.1.6",
        "matplotlib==3.10.9",
    ],
    extras_require={
        # palmerpenguins: the multiclass example table of the any-table tests and `make quality`.
        # playwright: drives Debian's chromium (`make chromium`) in the run report's browser tests;
        # pillow (matplotlib's too) reads their screenshots; pytest-xdist: make test's workers.
        "test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0",
                 "palmerpenguins==0.1.6", "playwright==1.65.2", "pillow==12.3.0"],
        # croniter: pipeline/airflow_config.py validates schedules as Airflow does.
        "airflow": ["apache-airflow==2.11.0", "croniter==7.0.0"],
        "kfp": ["kfp==2.5.0; python_version < '3.11'", "kfp==2.6.0; python_version >= '3.11'"],
    },
    entry_points={"console_scripts": ["taxi-pipeline=pipeline.cli:main"]},
)
