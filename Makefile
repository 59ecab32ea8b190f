# `make run` and `make test` are the contract: each sets up whatever is missing (a venv, pinned install).
SHELL := /bin/bash
# TFX 1.16's stack has wheels for Python 3.10 and 3.11 only (no cp312 tfx-bsl, TFDV, ml-metadata).
SUPPORTED_PYTHONS := 3.10 3.11
# The first of these that runs and can make a venv; 3.10 first: it is within TFX 1.16's own
# Requires-Python, and an existing checkout keeps its .venv. `make run PYTHON=python3.11` picks 3.11.
PYTHON_CANDIDATES ?= python3.10 python3.11
ifndef PYTHON
PYTHON := $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell $(p) -c 'import ensurepip, venv' 2>/dev/null && echo $(p))))
endif
PYTHON_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
# One venv and one lock per Python version, so both can coexist; 3.10 keeps the original `.venv`.
VENV ?= $(if $(filter 3.10,$(PYTHON_VERSION)),.venv,.venv-$(PYTHON_VERSION))
LOCK := requirements-$(or $(PYTHON_VERSION),none).lock
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
INSTALLED := $(VENV)/.installed
# The test suite also needs the [airflow] and [kfp] extras (the DAG and the Kubeflow spec are tested).
INSTALLED_ALL := $(VENV)/.installed-all
# Where `make` reads the OS, to name the interpreter to install when there is none (tests point it elsewhere).
OS_RELEASE ?= /etc/os-release
# Keras 2 for every process make starts (the packages set it too; this also covers pytest plugins).
export TF_USE_LEGACY_KERAS := 1

# Stops with the one command that installs a supported interpreter on this OS: 3.11 (3.10 gets no
# security fixes since October 2026), except where the OS itself ships 3.10.
define NO_PYTHON
{ . $(OS_RELEASE) 2>/dev/null; want=3.11; case "$$ID $$VERSION_ID" in \
    "debian 12") fix="sudo apt install python3.11-venv";; \
    "ubuntu 22.04") want=3.10; fix="sudo apt install python3.10-venv";; \
    "ubuntu 24.04") fix="sudo add-apt-repository -y ppa:deadsnakes/ppa && sudo apt install -y python3.11-venv";; \
    *) fix="pyenv install 3.11";; \
  esac; \
  echo "Python 3.10 or 3.11 with venv is needed (TFX 1.16 has no packages for other versions);" \
       "found: $(if $(PYTHON),$(PYTHON) is $(or $(PYTHON_VERSION),not runnable),none of $(PYTHON_CANDIDATES))."; \
  echo "Install Python $$want: $$fix"; \
  echo "Then run make again (or point it at an interpreter: make PYTHON=/path/to/python3.11)."; exit 1; }
endef

.PHONY: install tfjs run test test-fast chromium bench bench-scale bench-formats demo quality lock clean

install: $(INSTALLED)

$(INSTALLED): $(LOCK) setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install pip==24.2
	@# tfx and ml-pipelines-sdk 1.16.0 declare Requires-Python <3.11, yet their code and every other
	@# package run on 3.11 (the suite passes there). Those two alone skip that check, at the lock's
	@# version and without their dependencies; the install below then resolves everything as usual.
	$(PIP) install --no-deps --ignore-requires-python -c $(LOCK) tfx ml-pipelines-sdk
	$(PIP) install -c $(LOCK) -e '.[test]'
	@touch $@

$(INSTALLED_ALL): $(INSTALLED)
	$(PIP) install -c $(LOCK) -e '.[test,airflow,kfp]'
	@touch $@

# The TF.js export's tools (components/edge_export.py): the tensorflowjs converter in its own venv (it
# cannot co-install with the TFX set), from its own lock; the pure-JS @tensorflow/tfjs for Node, from
# components/tfjs/package-lock.json. Node and npm: Debian's packages or any already installed.
TFJS_VENV := .venv-tfjs
TFJS_INSTALLED := $(TFJS_VENV)/.installed
NODE_INSTALLED := components/tfjs/node_modules/.installed

tfjs: $(TFJS_INSTALLED) $(NODE_INSTALLED)

$(TFJS_INSTALLED): components/tfjs/requirements.lock
	@test -n "$(PYTHON)" || $(NO_PYTHON)
	@test -x $(TFJS_VENV)/bin/python || $(PYTHON) -m venv $(TFJS_VENV)
	$(TFJS_VENV)/bin/python -m pip --quiet --disable-pip-version-check install pip==24.2
	@# Every package is in the lock: no resolution, nothing from outside it (tests/test_edge_export.py).
	$(TFJS_VENV)/bin/python -m pip --quiet --disable-pip-version-check install --no-deps -r components/tfjs/requirements.lock
	@touch $@

$(NODE_INSTALLED): components/tfjs/package.json components/tfjs/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are needed for the TF.js export's parity check:" \
	  "sudo apt install nodejs npm"; exit 1; }
	cd components/tfjs && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# No lock for the interpreter found (none, or another version): say which one to install, and how.
requirements-%.lock:
	@$(NO_PYTHON)

# Extra arguments: make run ARGS="--data-root my_csvs --train-steps 1000"
run: install tfjs
	$(PY) -m pipeline run $(ARGS)

# The page that predicts in the browser with the newest pushed version's TF.js model (tf.min.js from
# `make tfjs`); e.g. ARGS="--port 8080 --serving-dir serving_model".
demo: install tfjs
	$(PY) -m pipeline demo $(ARGS)

# With every extra installed, a test that finds one missing fails instead of skipping (tests/conftest.py).
# TEST_WORKERS pytest-xdist workers, each running whole test files (module fixtures are built once),
# in the order tests/conftest.py gives them (the files with slow tests first; xdist would put the
# files with the most tests first); TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2
PYTEST_WORKERS := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
test: $(INSTALLED_ALL) tfjs chromium
	PIPELINE_TEST_REQUIRE_EXTRAS=1 $(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(INSTALLED_ALL) tfjs chromium
	PIPELINE_TEST_REQUIRE_EXTRAS=1 $(PY) -m pytest -m "not slow" $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The run report's browser tests drive Debian's chromium (playwright never downloads its own browser).
chromium:
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	else echo "The report's browser tests need Chromium: install Debian's 'chromium' package as root" \
	          "(apt-get install chromium), then run make again."; exit 1; fi

bench: install
	$(PY) bench/compare_with_tfx_example.py

# Scale: 15k/150k/1.5M rows x in_memory/multi_processing (~1 h on 2 cores); e.g. ARGS="--sizes 15000,150000"
bench-scale: install
	$(PY) bench/scale.py $(ARGS)

# The exports' speed and size (SavedModel, TFLite, TF.js in Node) on a pushed version; none given
# (ARGS="serving_model"): the pipeline runs into a temporary directory first.
bench-formats: install tfjs
	$(PY) bench/formats.py $(ARGS)

quality: install
	$(PY) bench/holdout.py $(ARGS)

# Re-resolves requirements.in + setup.py for each supported Python, in a throwaway venv with python3.X,
# and pins every package into requirements-3.X.lock. 3.10 resolves afresh; 3.11 then keeps 3.10's
# versions except for the packages requirements.in pins per Python (a python_version marker), so the
# two locks differ only there (and in 3.10's backports). One Python: make lock-3.11
LOCK_BASE := 3.10
lock: $(addprefix lock-,$(SUPPORTED_PYTHONS))

lock-%:
	rm -rf .lock-venv-$* && python$* -m venv .lock-venv-$*
	.lock-venv-$*/bin/pip install --quiet pip==24.2
	{ cat requirements.in; $(if $(filter-out $(LOCK_BASE),$*),grep -v -i -E \
	    "^($$(sed -n -E 's/^([A-Za-z0-9_.-]+)==.*python_version.*/\1/p' requirements.in | paste -sd'|'))==" \
	    requirements-$(LOCK_BASE).lock;) } > .lock-venv-$*/constraints.txt
	@# As in install: tfx and ml-pipelines-sdk alone past their Requires-Python (<3.11).
	.lock-venv-$*/bin/pip install --quiet --no-deps --ignore-requires-python -c .lock-venv-$*/constraints.txt \
	  tfx ml-pipelines-sdk
	.lock-venv-$*/bin/pip install --quiet -c .lock-venv-$*/constraints.txt -e '.[test,airflow,kfp]'
	{ echo "# Generated by \`make lock\` from requirements.in and setup.py on Python" \
	       "$$(.lock-venv-$*/bin/python -c 'import platform; print(platform.python_version())'); do not edit by hand."; \
	  .lock-venv-$*/bin/pip freeze --exclude-editable; } > requirements-$*.lock
	rm -rf .lock-venv-$*

clean:
	rm -rf pipeline_output serving_model bench/results .pytest_cache
