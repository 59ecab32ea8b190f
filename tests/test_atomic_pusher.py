"""Atomic push: a reader polling the serving directory never sees a version without all its files.

The pushes are real runs of the Pusher executors (ours and, as a negative control, TFX's stock one)
on a real SavedModel; the reader is a separate process listing and stat-ing the directory in a loop.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import filesystem
from tfx.types import standard_artifacts, standard_component_specs

from components.atomic_pusher import STAGING_PREFIX, AtomicPusher, Executor, staging_name
from pipeline.serving_dir import versions

# Big enough that copying it takes many of the reader's polls.
VARIABLE_MB = 64

# Polls `base` until `stop` exists; prints how often it saw each numeric version complete or partial.
READER = textwrap.dedent("""
    import json, os, sys
    base, manifest_path, stop, ready = sys.argv[1:]
    manifest = json.load(open(manifest_path))
    polls, partial, complete = 0, [], 0
    open(ready, "w").close()
    while not os.path.exists(stop):
        polls += 1
        names = os.listdir(base) if os.path.isdir(base) else []
        for name in names:
            if not name.isdigit():
                continue
            version_dir = os.path.join(base, name)
            seen = {}
            for root, _, files in os.walk(version_dir):
                for f in files:
                    path = os.path.join(root, f)
                    try:
                        seen[os.path.relpath(path, version_dir)] = os.path.getsize(path)
                    except OSError:
                        pass
            if seen == manifest:
                complete += 1
            else:
                missing = sorted(set(manifest) - set(seen))
                short = sorted(k for k in manifest if k in seen and seen[k] != manifest[k])
                partial.append({"missing": missing, "short": short})
    print(json.dumps({"polls": polls, "complete": complete, "partial": partial[:5],
                      "partial_count": len(partial)}))
""")


def _manifest(model_dir):
    return {os.path.relpath(os.path.join(root, f), model_dir): os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(model_dir) for f in files}


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A Trainer-style Model artifact: a real SavedModel under <uri>/Format-Serving."""
    uri = tmp_path_factory.mktemp("trainer_model")
    module = tf.Module()
    module.weights = tf.Variable(np.random.default_rng(0).random(VARIABLE_MB * 2 ** 18, np.float32))
    module.score = tf.function(lambda x: {"score": x * module.weights[0]},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(uri / "Format-Serving"),
                        signatures={"serving_default": module.score})
    model = standard_artifacts.Model()
    model.uri = str(uri)
    return model


def _push(executor, model, tmp_path, blessed=True, base=None):
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed_model")
    os.makedirs(pushed.uri, exist_ok=True)
    base = base or str(tmp_path / "serving" / "big_tipper")
    executor.Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: json.dumps(
            {"filesystem": {"base_directory": base}})})
    return pushed, base


def _push_while_reading(executor, model, tmp_path):
    """Pushes with `executor` while the reader process polls; returns the reader's report."""
    base = tmp_path / "serving" / "big_tipper"
    base.mkdir(parents=True)
    (tmp_path / "manifest.json").write_text(
        json.dumps(_manifest(os.path.join(model.uri, "Format-Serving"))))
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(base), str(tmp_path / "manifest.json"), str(stop),
         str(ready)], stdout=subprocess.PIPE, text=True)
    try:
        while not ready.exists():
            assert reader.poll() is None, "the reader process died"
        _push(executor, model, tmp_path, base=str(base))
        time.sleep(0.5)  # let the reader see the finished directory too
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    return json.loads(out)


def test_a_polling_reader_never_sees_a_partial_version(trained_model, tmp_path):
    report = _push_while_reading(Executor(), trained_model, tmp_path)
    assert report["partial_count"] == 0, report
    assert report["complete"] > 0, report  # it did see the version, once whole


def test_negative_control_the_reader_catches_tfx_plain_copy(trained_model, tmp_path):
    """TFX's stock executor copies in place: the same reader sees the version before it is whole."""
    report = _push_while_reading(tfx_pusher_executor.Executor(), trained_model, tmp_path)
    assert report["partial_count"] > 0, report
    assert any("saved_model.pb" in p["missing"] for p in report["partial"]), report


def test_push_outputs_match_tfx_pusher(trained_model, tmp_path):
    pushed, base = _push(Executor(), trained_model, tmp_path)
    (version,) = versions(base)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == str(version)
    assert pushed.get_string_custom_property("pushed_destination") == os.path.join(base, str(version))
    assert os.listdir(base) == [str(version)]  # no staging directory left behind
    assert _manifest(os.path.join(base, str(version))) == _manifest(
        os.path.join(trained_model.uri, "Format-Serving"))
    # TFX's archive copy in the PushedModel artifact is kept too.
    assert os.path.isfile(os.path.join(pushed.uri, "saved_model.pb"))
    loaded = tf.saved_model.load(os.path.join(base, str(version)))
    assert float(loaded.signatures["serving_default"](tf.constant([2.0]))["score"][0]) > 0


def test_unblessed_model_is_not_pushed(trained_model, tmp_path):
    pushed, base = _push(Executor(), trained_model, tmp_path, blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(base) or os.listdir(base) == []


def test_existing_version_is_left_alone(trained_model, tmp_path):
    """Like TFX's Pusher, a version that already exists (two pushes in one second) is not replaced."""
    base = tmp_path / "serving" / "big_tipper"
    now = int(time.time())
    for version in range(now, now + 5):  # whichever second the push lands in
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "marker").write_text("earlier push")
    pushed, _ = _push(Executor(), trained_model, tmp_path, base=str(base))
    version = pushed.get_string_custom_property("pushed_version")
    assert int(version) in range(now, now + 5)
    assert pushed.get_string_custom_property("pushed_destination") == str(base / version)
    assert os.listdir(base / version) == ["marker"]
    assert not [n for n in os.listdir(base) if n.startswith(STAGING_PREFIX)]


def test_a_failed_copy_leaves_no_version_and_no_staging_dir(trained_model, tmp_path):
    """A file that cannot be read (a dangling link) fails the copy half-way."""
    broken = standard_artifacts.Model()
    broken.uri = str(tmp_path / "broken_model")
    source = os.path.join(broken.uri, "Format-Serving")
    shutil.copytree(os.path.join(trained_model.uri, "Format-Serving"), source)
    os.symlink(str(tmp_path / "nowhere"), os.path.join(source, "variables", "zz_unreadable"))
    base = str(tmp_path / "serving" / "big_tipper")
    with pytest.raises(filesystem.NotFoundError):
        _push(Executor(), broken, tmp_path, base=base)
    assert versions(base) == []
    assert os.listdir(base) == []


def test_a_push_removes_staging_dirs_of_killed_pushes_only(trained_model, tmp_path):
    """A push killed mid-copy leaves its staging directory; the next push removes it, but not one
    a live process is still copying into, nor another machine's (a shared volume)."""
    base = tmp_path / "serving" / "big_tipper"
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    abandoned = base / staging_name(gone.pid) / "1796000000"
    abandoned.mkdir(parents=True)
    (abandoned / "saved_model.pb").write_bytes(b"half a model")
    live = base / staging_name(os.getpid())
    elsewhere = base / f"{STAGING_PREFIX}another-machine-{gone.pid}-{'0' * 32}"
    for directory in (live, elsewhere):
        directory.mkdir()
    pushed, _ = _push(Executor(), trained_model, tmp_path, base=str(base))
    version = pushed.get_string_custom_property("pushed_version")
    assert sorted(os.listdir(base)) == sorted([version, live.name, elsewhere.name])


def test_component_is_tfx_pusher_with_the_atomic_executor(tmp_path):
    from tfx.components import Pusher
    from tfx.proto import pusher_pb2
    from tfx.types import Channel

    component = AtomicPusher(
        model=Channel(type=standard_artifacts.Model),
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(tmp_path))))
    assert isinstance(component, Pusher)
    assert component.executor_spec.executor_class is Executor
