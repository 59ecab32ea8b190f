"""Hot reload against a real server: a newly copied version is served without a restart, a broken
version is reported and never replaces the good one (and is retried once its files change), versions
that disappear are unloaded."""
import json
import os
import shutil

import httpx
import pytest

from pipeline.serving import client
from tests.serving_helpers import MODEL_NAME, serving, wait_for
from tests.conftest import TAXI_SPEC

TYPES = client.serving_column_types(TAXI_SPEC)

pytestmark = pytest.mark.slow  # several model loads, tens of seconds


def status_of(server):
    response = httpx.get(f"{server.url}/v1/models/{MODEL_NAME}", timeout=10)
    return {int(s["version"]): s for s in response.json()["model_version_status"]}


def latest_version(server):
    return int(httpx.get(f"{server.url}/v1/models/{MODEL_NAME}/metadata", timeout=10)
               .json()["model_spec"]["version"])


def predict(server, body, version=None):
    # json.dumps, not httpx's json=: the raw format's missing floats are NaN tokens.
    return httpx.post(client.predict_url(server.url, MODEL_NAME, version), content=json.dumps(body),
                      timeout=60)


def test_new_broken_fixed_and_removed_versions(tmp_path, saved_model_dir, taxi_rows):
    model_dir = tmp_path / "serving" / MODEL_NAME
    shutil.copytree(saved_model_dir, model_dir / "1")
    _, rows = taxi_rows
    body = client.raw_request(rows[:3], TYPES)
    with serving(tmp_path / "serving", "--poll-seconds", "0.2", grpc=False) as server:
        assert latest_version(server) == 1

        # A new version copied in place, file by file (a non-atomic push): served once complete.
        shutil.copytree(saved_model_dir, model_dir / "2")
        wait_for(lambda: status_of(server).get(2, {}).get("state") == "AVAILABLE", what="version 2")
        assert latest_version(server) == 2
        first = predict(server, body).json()

        # A broken version: a corrupt saved_model.pb. Reported with an error; 2 keeps serving.
        shutil.copytree(saved_model_dir, tmp_path / "broken")
        with open(tmp_path / "broken" / "saved_model.pb", "wb") as f:
            f.write(b"\x08\x01 this is not a SavedModel")
        os.rename(tmp_path / "broken", model_dir / "3")
        wait_for(lambda: status_of(server).get(3, {}).get("state") == "END", what="version 3 to fail")
        broken = status_of(server)[3]["status"]
        assert broken["error_code"] != "OK" and broken["error_message"], broken
        assert latest_version(server) == 2
        again = predict(server, body).json()
        assert again == first
        missing = predict(server, body, 3)
        assert missing.status_code == 404 and "failed to load" in missing.json()["error"]
        assert "version 3 failed to load" in server.log()

        # Its files are fixed: retried and served. Only the newest two versions stay loaded.
        shutil.copyfile(os.path.join(saved_model_dir, "saved_model.pb"), model_dir / "3" / "saved_model.pb")
        wait_for(lambda: status_of(server)[3]["state"] == "AVAILABLE", what="version 3 to load")
        assert latest_version(server) == 3
        wait_for(lambda: status_of(server)[1]["state"] == "END", what="version 1 to be unloaded")
        assert predict(server, body, 2).status_code == 200

        # The newest version disappears (e.g. `pipeline rollback`): unloaded, 2 is latest again.
        shutil.rmtree(model_dir / "3")
        wait_for(lambda: status_of(server)[3]["state"] == "END", what="version 3 to be unloaded")
        assert latest_version(server) == 2
        assert predict(server, body).json() == first
