"""A Pusher whose versions appear in the serving directory in one rename, never half-written.

TFX's Pusher copies the SavedModel file by file straight into `<base>/<version>/` (saved_model.pb
last), so a server polling `<base>` can list the version while its variables are still being written,
and a crash mid-copy leaves a broken version behind. This executor lets TFX's Pusher copy into a
staging directory inside `<base>` whose name is not a number (TF Serving and `pipeline serve` only
load numeric names), then renames the finished version into place. Outputs are TFX's own: the
`pushed`, `pushed_destination` and `pushed_version` properties on the PushedModel artifact.

The rename is atomic on a local or POSIX filesystem (one volume). Object stores (gs://, s3://) have no
atomic directory rename; there TF Serving's own rule (saved_model.pb is written last) still applies.

A push killed mid-copy leaves its staging directory behind; the staging name carries the host and the
process id, and the next push on the same host removes staging directories whose process is gone.
"""
import os
import socket
import uuid

from absl import logging
from tfx.components import Pusher
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

STAGING_PREFIX = ".incoming-"
_DESTINATION_KEY = standard_component_specs.PUSH_DESTINATION_KEY


def staging_name(pid: int) -> str:
    """`.incoming-<host>-<pid>-<random>`: who is copying, so a later push can tell it was abandoned."""
    return f"{STAGING_PREFIX}{socket.gethostname()}-{pid}-{uuid.uuid4().hex}"


def _is_abandoned(name: str) -> bool:
    """A staging directory of a process on this host that no longer exists."""
    owner = name[len(STAGING_PREFIX):].rpartition("-")[0]  # <host>-<pid>
    host, _, pid = owner.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's (a shared volume), or not named by staging_name()
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return False


def remove_abandoned_staging(base: str) -> None:
    for name in fileio.listdir(base) if fileio.isdir(base) else []:
        name = name.rstrip("/")
        if name.startswith(STAGING_PREFIX) and _is_abandoned(name):
            logging.info("Removing %s, left by a push that was killed.", name)
            fileio.rmtree(os.path.join(base, name))


class Executor(pusher_executor.Executor):
    """TFX's Pusher executor, copying into `<base>/.incoming-<id>/<version>/` and renaming into place."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            super().Do(input_dict, output_dict, exec_properties)
            return
        base = destination.filesystem.base_directory
        remove_abandoned_staging(base)
        staging = os.path.join(base, staging_name(os.getpid()))
        destination.filesystem.base_directory = staging
        try:
            super().Do(input_dict, output_dict,
                       {**exec_properties, _DESTINATION_KEY: proto_utils.proto_to_json(destination)})
            pushed_model = artifact_utils.get_single_instance(
                output_dict[standard_component_specs.PUSHED_MODEL_KEY])
            if pushed_model.get_int_custom_property("pushed") == 1:
                version = pushed_model.get_string_custom_property("pushed_version")
                final = os.path.join(base, version)
                if fileio.exists(final):
                    # TFX's own rule: one version per second, an existing version is left alone.
                    logging.info("Destination directory %s already exists, skipping this push.", final)
                else:
                    fileio.rename(os.path.join(staging, version), final)
                pushed_model.set_string_custom_property("pushed_destination", final)
        finally:
            if fileio.exists(staging):
                fileio.rmtree(staging)


class AtomicPusher(Pusher):
    """TFX's Pusher with the atomic executor above; same inputs, parameters and outputs.

    A component subclass rather than Pusher(custom_executor_spec=...), which TFX 1.16 deprecates.
    """
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
