import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest

ORIGINAL_KEYS = {"diagnosis", "confidence", "raw_score", "is_abnormal", "tta_details"}


AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def client(settings, sessions, tiny_classifier):
    """An admin with a token, and a client that sends it."""
    settings.admin.token = "s3cret"
    state = AdminState(settings, sessions, ModelHolder(tiny_classifier))
    with TestClient(create_app(state), headers=AUTH) as c:
        yield c


@pytest.fixture
def anonymous(settings, sessions, tiny_classifier):
    """The same admin with a token, and a client that has none."""
    settings.admin.token = "s3cret"
    with TestClient(create_app(AdminState(settings, sessions, ModelHolder(tiny_classifier)))) as c:
        yield c


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["database"] == "ok"


def test_status_counts_and_model(client, settings, sessions, tiny_classifier, rubo):
    ingest(rubo, settings, sessions)
    body = client.get("/status").json()
    assert body["instances_received"] == 1
    assert body["jobs"]["queued"] == 1
    assert body["jobs_worker_died"] == 0
    assert body["deliveries"] == {"pending": 0, "sent": 0, "failed": 0, "superseded": 0, "cancelled": 0}
    assert body["model"]["version"] == "tiny-1"
    assert body["scp"] == {"ae_title": "ARCADE", "port": settings.scp.port}
    Worker(settings, sessions, ModelHolder(tiny_classifier)).run_once()
    # With a token configured, results are read with it (require_reader).
    assert client.get("/results", headers={"Authorization": "Bearer wrong"}).status_code == 401
    results = client.get("/results").json()
    assert len(results) == 1
    assert results[0]["model_version"] == "tiny-1"
    detail = client.get(f"/results/{results[0]['instance_id']}").json()
    assert detail["job"]["state"] == "done"
    assert len(detail["result"]["frames"]) == 96
    assert client.get("/results/999").status_code == 404
    key = detail["result"]["keyframes"][0]
    picture = client.get(f"/results/{results[0]['instance_id']}/frames/{key}.png")
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(picture.content)).size == (512, 512)
    not_key = next(n for n in range(1, 97) if n not in detail["result"]["keyframes"])
    assert client.get(f"/results/{results[0]['instance_id']}/frames/{not_key}.png").status_code == 404


def test_predict_png_and_dicom_answer_with_the_original_keys(client, rubo):
    buffer = io.BytesIO()
    Image.fromarray(real_frame(rubo, 50)).save(buffer, format="PNG")
    r = client.post("/predict", files={"file": ("frame.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert ORIGINAL_KEYS <= body.keys()
    assert set(body["tta_details"]) == {"original", "flipped"}
    assert body["raw_score"] == pytest.approx((body["tta_details"]["original"] + body["tta_details"]["flipped"]) / 2, abs=1e-5)
    assert body["is_abnormal"] == (body["raw_score"] >= body["threshold"])
    assert body["diagnosis"] == ("stenosis" if body["is_abnormal"] else "no stenosis")
    r = client.post("/predict", files={"file": ("cine.dcm", rubo.read_bytes(), "application/dicom")})
    assert r.status_code == 200
    assert len(r.json()["keyframes"]) == 8


def test_predict_rejects_what_it_cannot_read(client):
    assert client.post("/predict", files={"file": ("x.txt", b"hello", "text/plain")}).status_code == 415
    assert client.post("/predict", files={"file": ("x.txt", b"", "text/plain")}).status_code == 400


def test_metrics_and_token_protected_retry(client, anonymous):
    text = anonymous.get("/metrics").text
    assert "arcade_jobs{state=\"queued\"}" in text
    assert "arcade_cstore_total" in text
    assert anonymous.post("/deliveries/1/retry").status_code == 401
    assert anonymous.post("/deliveries/1/retry", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/deliveries/1/retry").status_code == 409


def test_with_a_token_results_pictures_and_lists_need_it_and_probes_stay_open(anonymous, settings, sessions, rubo):
    instance_id = ingest(rubo, settings, sessions)
    for path in ("/results", f"/results/{instance_id}", f"/results/{instance_id}/frames/1.png", "/jobs",
                 "/deliveries", "/retrain/1"):
        r = anonymous.get(path)
        assert r.status_code == 401, path
    for path in ("/health", "/metrics", "/status"):
        assert anonymous.get(path).status_code == 200, path


def test_without_a_token_state_changes_are_refused_and_reading_is_open(settings, sessions, tiny_classifier):
    assert settings.admin.token == ""  # the default
    with TestClient(create_app(AdminState(settings, sessions, ModelHolder(tiny_classifier)))) as c:
        for method, path in (("post", "/deliveries/1/retry"), ("post", "/retrain")):
            r = getattr(c, method)(path, json={})
            assert r.status_code == 403, path
            assert "set admin.token to enable" in r.json()["detail"], path
        assert c.post("/deliveries/1/retry", headers={"Authorization": "Bearer "}).status_code == 403
        assert c.get("/results").status_code == 200
        assert c.get("/jobs").status_code == 200


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_jobs_list_says_why_a_job_failed(client, settings, sessions, tiny_classifier, rubo):
    bad = xa_dataset([real_frame(rubo, 0)] * 2)
    bad.PixelData = bad.PixelData[:1000]  # shorter than declared: undecodable
    bad_id = ingest(bad, settings, sessions)
    good_id = ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    listed = {j["instance_id"]: j for j in client.get("/jobs").json()}
    assert listed[bad_id]["state"] == "failed"
    assert "pixel data" in listed[bad_id]["last_error"]
    assert listed[good_id]["state"] == "done"
    assert listed[good_id]["last_error"] is None
    only_failed = client.get("/jobs", params={"state_filter": "failed"}).json()
    assert [j["instance_id"] for j in only_failed] == [bad_id]
    assert client.get("/jobs", params={"state_filter": "bogus"}).status_code == 422


def test_health_is_degraded_while_a_delivery_has_failed_for_good(client, settings, sessions, tiny_classifier, rubo):
    from arcade_pacs.db.tables import Delivery, Report, ResultObject, Study

    with sessions() as s:
        study = Study(study_instance_uid="1.2.3")
        report = Report(study=study, sop_instance_uid="1.2.9", series_instance_uid="1.2.8", path="/x",
                        present=False, n_instances=1)
        image = ResultObject(report=report, kind="sc", sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
                             sop_instance_uid="1.2.10", series_instance_uid="1.2.11", path="/y")
        s.add(Delivery(report=report, object=image, destination="pacs", state="failed", last_error="peer status 0xA900"))
        s.commit()
    body = client.get("/health").json()
    assert client.get("/health").status_code == 200
    assert body["status"] == "degraded"
    assert body["deliveries_failed"] == 1
    assert "1 result deliveries failed" in body["problems"]
    assert client.get("/status").json()["deliveries"]["failed"] == 1
    assert client.post("/deliveries/1/retry").status_code == 200
    assert client.get("/health").json()["status"] == "ok"


def test_scp_and_worker_processes_serve_only_the_probes(settings, sessions):
    with TestClient(create_app(AdminState(settings, sessions, None), full=False)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health").json()["model_loaded"] is False
        assert c.get("/status").json()["model"] is None
        assert c.get("/metrics").status_code == 200
        assert c.get("/results").status_code == 404
        assert c.post("/predict").status_code == 404
