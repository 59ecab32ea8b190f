"""Rollback: the previous pushed version is served again, atomically; with one version it refuses."""
import os

import pytest
import tensorflow as tf
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.serving_dir import ROLLED_BACK_DIR, RollbackError, rollback, versions


def _push(model_dir, version, value):
    """A real SavedModel whose signature returns `value`, at <model_dir>/<version>."""
    module = tf.Module()
    module.f = tf.function(lambda: {"value": tf.constant(value)}, input_signature=[])
    tf.saved_model.save(module, os.path.join(model_dir, str(version)),
                        signatures={"serving_default": module.f})


def _served_value(model_dir):
    latest = os.path.join(model_dir, str(versions(model_dir)[-1]))
    return float(tf.saved_model.load(latest).signatures["serving_default"]()["value"])


def test_rollback_serves_the_previous_version_again(tmp_path):
    model_dir = str(tmp_path / "big_tipper")
    for version, value in ((100, 1.0), (200, 2.0), (300, 3.0)):
        _push(model_dir, version, value)
    assert _served_value(model_dir) == 3.0

    moved, serving = rollback(str(tmp_path), "big_tipper")

    assert versions(model_dir) == [100, 200]
    assert serving == os.path.join(model_dir, "200") and _served_value(model_dir) == 2.0
    assert moved == str(tmp_path / ROLLED_BACK_DIR / "big_tipper" / "300")
    assert os.path.isfile(os.path.join(moved, "saved_model.pb"))  # kept, for inspection


def test_rollback_with_a_single_version_refuses_and_changes_nothing(tmp_path):
    _push(str(tmp_path / "big_tipper"), 100, 1.0)
    with pytest.raises(RollbackError, match="no previous version"):
        rollback(str(tmp_path), "big_tipper")
    assert versions(str(tmp_path / "big_tipper")) == [100]


def test_rollback_command(tmp_path):
    for version in (1, 2):
        _push(str(tmp_path / "m"), version, float(version))
    result = CliRunner().invoke(main, ["rollback", "--serving-dir", str(tmp_path),
                                       "--model-name", "m"])
    assert result.exit_code == 0, result.output
    assert "now serving" in result.output and versions(str(tmp_path / "m")) == [1]
    again = CliRunner().invoke(main, ["rollback", "--serving-dir", str(tmp_path), "--model-name", "m"])
    assert again.exit_code == 1
