"""Shared fixtures: real taxi rows from the tfx package, written to small CSV samples."""
import csv
import importlib.util
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from pipeline import beam_tuning  # noqa: E402
from pipeline.config import DEFAULT_BEAM_ARGS, default_data_root, with_worker_setup  # noqa: E402

# Every pipeline run installs the project's Beam speed fixes (pipeline/local_runner.py); the tests'
# in-process Beam work (executors, tf.Transform, ExampleGen) runs with them too. They change no answer
# (tests/test_beam_tuning.py).
beam_tuning.install()

# The Beam options for the tests that run an executor in-process, on the CLI's default preset.
# With --setup_file, as the CLI runs them: without it TFX builds a source package of itself for every
# executor (~4 s, and ~49 MB left in /tmp each time; pipeline/config.py's with_worker_setup).
# A tuple: TFX's executors extend the list they are given (a copy each: `list(EXECUTOR_BEAM_ARGS)`).
EXECUTOR_BEAM_ARGS = with_worker_setup(DEFAULT_BEAM_ARGS)

TAXI_CSV = os.path.join(default_data_root(), "data.csv")
# `make test` installs every extra and sets this: there a missing extra fails the tests that need it
# instead of skipping them, so a broken install cannot look like a green run.
REQUIRE_EXTRAS = os.environ.get("PIPELINE_TEST_REQUIRE_EXTRAS") == "1"


def pytest_collection_modifyitems(items):
    """Test files with `slow` tests first, each file's tests together and in order: `make test`'s
    workers (pytest-xdist, a file per worker at a time) then start the long files at once rather than
    one of them finishing last alone."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def require_extra(extra, module):
    """Skips the calling test (or module) when the `[extra]` that provides `module` is not installed;
    fails it instead under PIPELINE_TEST_REQUIRE_EXTRAS=1."""
    if importlib.util.find_spec(module) is not None:
        return
    reason = f"the [{extra}] extra is not installed (no module {module!r})"
    if REQUIRE_EXTRAS:
        pytest.fail(f"{reason}, and PIPELINE_TEST_REQUIRE_EXTRAS=1 requires it", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def cli_command(*args):
    return [sys.executable, "-m", "pipeline", "run", *args]


def cli_env():
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)  # the project must set it itself
    return env


def close(a, b, rel, path="") -> bool:
    """a == b for nested dicts and lists, numbers to a relative `rel` (protobuf's JSON writes NaN as
    a string: equal); asserts with the path of the first difference."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        return all(close(a[k], b[k], rel, f"{path}/{k}") for k in a)
    if isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        return all(close(x, y, rel, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        assert a == pytest.approx(b, rel=rel, abs=1e-12, nan_ok=True), path
        return True
    assert a == b, (path, a, b)
    return True


def run_cli(*args, timeout=900):
    """`python -m pipeline run ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)


def read_taxi_rows():
    with open(TAXI_CSV, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def write_csv(path, fieldnames, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def taxi_rows():
    return read_taxi_rows()


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory, taxi_rows):
    """3,000 real taxi rows (every 5th row, so all months and hours are represented)."""
    fieldnames, rows = taxi_rows
    root = tmp_path_factory.mktemp("small_data")
    write_csv(str(root / "data.csv"), fieldnames, rows[::5])
    return str(root)


@pytest.fixture(scope="session")
def everyday_data_root(tmp_path_factory, taxi_rows):
    """The 3,000-row sample with what real exports carry: an extra column, and 3% of rows from taxi
    companies the schema has never seen (within the schema's tolerated domain mass)."""
    fieldnames, rows = taxi_rows
    root = tmp_path_factory.mktemp("everyday_data")
    sample = [dict(r, export_batch="2026-11") for r in rows[::5]]
    for i, row in enumerate(sample):
        if i % 33 == 0:
            row["company"] = f"New Cab Co {i % 7}"
    write_csv(str(root / "data.csv"), fieldnames + ["export_batch"], sample)
    return str(root)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory, taxi_rows):
    """A real SavedModel with the pipeline's signatures (untrained; tf.Transform on 300 taxi rows)."""
    from tests.serving_helpers import build_saved_model  # pylint: disable=import-outside-toplevel

    _, rows = taxi_rows
    return build_saved_model(str(tmp_path_factory.mktemp("saved_model") / "model"), rows[:300])


# EdgeExport's check in the tests: its default tolerances, and real taxi rows
# the models' tf.Transform never saw (gaps included: company, areas).
EDGE_TOLERANCES = {"tflite": 1e-5, "tfjs": 1e-4}


@pytest.fixture(scope="session")
def edge_rows(taxi_rows):
    return taxi_rows[1][7::60][:30]


@pytest.fixture(scope="session")
def edge_export(tmp_path_factory, edge_rows):
    """`edge_export(saved_model)`: (directory, ParityResult) of EdgeExport's check_model on the
    SavedModel, compared on edge_rows: the model with its TFLite and TF.js exports beside it, as the
    Pusher pushes it. Made once per model for test_edge_export, which checks it, and test_demo,
    which serves it; none writes into it."""
    # pylint: disable=import-outside-toplevel
    from components.edge_export import check_model
    from models.raw_examples import column_types, to_tf_examples

    serialized = to_tf_examples(edge_rows, column_types(TAXI_SPEC.schema_path))
    done = {}

    def exported(saved_model):
        if saved_model not in done:
            output = str(tmp_path_factory.mktemp("edge") / "model")
            done[saved_model] = (output,
                                 check_model(saved_model, output, serialized, EDGE_TOLERANCES))
        return done[saved_model]
    return exported


def task_spec(label):
    """The taxi spec with another label (`label`: the spec's label mapping), without slices, ignored
    columns or a gate, and without the label among the features."""
    values = TAXI_SPEC.to_mapping()
    values.update(label=label, slices=[], ignored={})
    values.pop("gate", None)
    values["features"] = {k: v for k, v in values["features"].items() if k != label.get("column")}
    return _spec_lib.from_mapping(values, TAXI_SPEC.directory)


@pytest.fixture(scope="session")
def task_saved_model(tmp_path_factory, taxi_rows):
    """`task_saved_model(label)`: saved_model_dir's build for task_spec(label), made once per label
    for the tests that export it (test_edge_export) and serve it (test_demo); none writes into
    it."""
    from tests.serving_helpers import build_saved_model  # pylint: disable=import-outside-toplevel

    built = {}

    def saved_model(label):
        key = json.dumps(label, sort_keys=True)
        if key not in built:
            built[key] = build_saved_model(str(tmp_path_factory.mktemp("task_model") / "model"),
                                           taxi_rows[1][:300], spec=task_spec(label))
        return built[key]
    return saved_model


# The taxi example's dataset spec, as the pipeline loads it.
from models import spec as _spec_lib  # noqa: E402
from pipeline.config import DEFAULT_SPEC_DIR  # noqa: E402

TAXI_SPEC = _spec_lib.load(DEFAULT_SPEC_DIR)
