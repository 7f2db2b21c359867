import shutil
import time

import pytest
from fastapi.testclient import TestClient

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.model.classifier import Classifier, ModelInfo
from arcade_pacs.model.retrain import RetrainManager, model_files, should_promote
from arcade_pacs.worker import ModelHolder

TINY_RUN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "limit_train": 6, "limit_val": 2,
            "low_res_fraction": 0.0}


def test_promotion_rule():
    assert should_promote(0.80, 0.80) and should_promote(0.81, 0.80) and should_promote(0.5, None)
    assert not should_promote(0.79, 0.80) and not should_promote(None, 0.5)


@pytest.fixture
def serving(tmp_path, tiny_model):
    path = tmp_path / "models" / "arcade_effb0.keras"
    path.parent.mkdir()
    for src, dst in zip(model_files(tiny_model), model_files(path)):
        if src.is_file():
            shutil.copyfile(src, dst)
    return path


@pytest.fixture
def client(settings, sessions, serving, arcade_dir):
    settings.admin.token = "t"
    holder = ModelHolder(Classifier.load(serving))
    manager = RetrainManager(sessions, arcade_dir, serving, holder.swap)
    with TestClient(create_app(AdminState(settings, sessions, holder, manager))) as c:
        yield c, holder


def _wait(c, run_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/retrain/{run_id}").json()
        if body["state"] not in ("queued", "running"):
            return body
        time.sleep(0.5)
    raise TimeoutError(body)


def test_retrain_via_api_promotes_a_better_candidate_without_restart(client, serving, arcade_dir):
    c, holder = client
    assert c.post("/retrain", json=TINY_RUN).status_code == 401  # token required
    auth = {"Authorization": "Bearer t"}
    r = c.post("/retrain", json=TINY_RUN | {"data_dir": str(arcade_dir)}, headers=auth)
    assert r.status_code == 202
    assert c.post("/retrain", json=TINY_RUN, headers=auth).status_code in (409, 202)  # one at a time
    body = _wait(c, r.json()["id"])
    assert body["state"] == "promoted", body
    assert body["serving_version"] == "tiny-1" and body["candidate_version"].startswith("effb0-")
    assert holder.get().info.version == body["candidate_version"]  # swapped in the running process
    assert ModelInfo.read(serving).version == body["candidate_version"]  # and on disk
    assert c.get("/status").json()["model"]["version"] == body["candidate_version"]


def test_a_missing_dataset_fails_clearly_and_leaves_the_serving_model(client, serving, tmp_path):
    c, holder = client
    before = serving.read_bytes()
    r = c.post("/retrain", json=TINY_RUN | {"data_dir": str(tmp_path / "nowhere")}, headers={"Authorization": "Bearer t"})
    body = _wait(c, r.json()["id"])
    assert body["state"] == "failed" and "missing images folder" in body["error"]
    assert serving.read_bytes() == before and holder.get().info.version == "tiny-1"
