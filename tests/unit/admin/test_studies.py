"""Studies, their pictures, the SR links, re-analysis and readiness through the admin app."""

import io

import numpy as np
import pytest
from PIL import Image

from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.report.reporter import report_ready_studies
from tests.unit.admin.conftest import AUTH, TOKEN


def spread(png: bytes) -> float:
    """Standard deviation of a decoded picture's grey levels: 0 for a blank image."""
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def test_studies_list_and_detail(open_client, analysed_rubo, rubo):
    page = open_client.get("/studies").json()
    assert page["total"] == 1
    assert page["offset"] == 0
    [item] = page["items"]
    assert item["study_instance_uid"] == analysed_rubo
    assert item["runs"] == 1
    assert item["analysed"] == 1
    assert item["finding"] in ("stenosis", "no stenosis")
    assert item["sr_state"] == "none"
    assert item["patient_name"] is None
    assert item["patient_id"] is None
    detail = open_client.get(f"/studies/{analysed_rubo}").json()
    assert detail["study"] == item
    [run] = detail["runs"]
    assert run["frames"] == 96
    assert run["job"]["state"] == "done"
    result = run["result"]
    assert result["model_version"] == "tiny-1"
    assert result["device_uid"] == "1.2.826.0.1.3680043.8.498.1"
    assert len(result["keyframes"]) == 8
    for k in result["keyframes"]:
        assert len(k["window_scores"]) == len(k["window_original"]) == len(k["window_flipped"]) == 9
        # Each stored window score is the TTA mean of its two views.
        np.testing.assert_allclose(k["window_scores"], (np.array(k["window_original"]) + k["window_flipped"]) / 2,
                                   atol=2e-5)
        best = int(np.argmax(k["window_scores"]))
        assert k["probability"] == pytest.approx(k["window_scores"][best], abs=1e-5)
        assert k["tta"] == {"original": k["window_original"][best], "flipped": k["window_flipped"][best]}
    # The run's TTA views are those of its 3 best keyframes, averaged.
    top = sorted(result["keyframes"], key=lambda k: k["probability"], reverse=True)[:3]
    assert result["tta"]["original"] == pytest.approx(np.mean([k["tta"]["original"] for k in top]), abs=1e-4)
    assert open_client.get("/studies/1.2.3.4").status_code == 404


def test_patient_identity_only_when_configured(open_client, settings, analysed_rubo, rubo):
    import pydicom

    header = pydicom.dcmread(rubo, stop_before_pixels=True)
    body = open_client.get("/ui/").text + open_client.get(f"/ui/studies/{analysed_rubo}").text
    assert str(header.PatientID) not in body
    assert str(header.PatientName) not in body
    settings.admin.show_patient_identity = True
    item = open_client.get("/studies").json()["items"][0]
    assert item["patient_id"] == str(header.PatientID)
    assert item["patient_name"] == str(header.PatientName)
    assert str(header.PatientID) in open_client.get(f"/ui/studies/{analysed_rubo}").text


def test_result_pictures_are_real_and_not_blank(open_client, analysed_rubo):
    run = open_client.get(f"/studies/{analysed_rubo}").json()["runs"][0]
    iid, key = run["instance_id"], run["result"]["keyframes"][0]["frame_number"]
    for url in (f"/results/{iid}/frames/{key}.png", f"/results/{iid}/frames/{key}/histogram.png",
                f"/results/{iid}/tta.png", f"/results/{iid}/opacification.png", f"/results/{iid}/probability.png"):
        r = open_client.get(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"] == "image/png", url
        assert spread(r.content) > 10, url
    assert open_client.get(f"/results/{iid}/frames/1/histogram.png").status_code in (200, 404)
    assert open_client.get(f"/results/{iid + 99}/tta.png").status_code == 404


def test_sr_download_and_text(open_client, settings, sessions, analysed_rubo):
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
    study = open_client.get(f"/studies/{analysed_rubo}").json()
    [report] = study["reports"]
    sr = open_client.get(report["download"])
    assert sr.status_code == 200
    assert sr.headers["content-type"] == "application/dicom"
    assert sr.content[128:132] == b"DICM"
    text = open_client.get(report["text"])
    assert text.status_code == 200
    assert "Imaging Measurement Report" in text.text
    assert text.headers["x-rendered-by"] == "dsrdump"
    assert open_client.get("/reports/1.2.3.dcm").status_code == 404


def test_the_study_lists_and_links_its_sr_result_images_and_presentation_states(open_client, settings, sessions,
                                                                                  analysed_rubo):
    from arcade_pacs.settings import Destination

    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=1,
                                         objects=["sr", "sc", "gsps"])]
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
    [report] = open_client.get(f"/studies/{analysed_rubo}").json()["reports"]
    objects = {o["kind"]: o for o in report["objects"]}
    assert set(objects) == {"sr", "sc", "gsps"}
    assert objects["sr"]["sop_instance_uid"] == report["sop_instance_uid"]
    assert objects["sr"]["instance_id"] is None
    run_id = open_client.get(f"/studies/{analysed_rubo}").json()["runs"][0]["instance_id"]
    assert objects["sc"]["instance_id"] == objects["gsps"]["instance_id"] == run_id
    for kind, o in objects.items():
        got = open_client.get(o["download"])
        assert got.status_code == 200, kind
        assert got.headers["content-type"] == "application/dicom", kind
        import pydicom

        assert pydicom.dcmread(io.BytesIO(got.content)).SOPInstanceUID == o["sop_instance_uid"]
    assert objects["sr"]["picture"] is None
    assert objects["gsps"]["picture"] is None
    picture = open_client.get(objects["sc"]["picture"])
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert spread(picture.content) > 10
    assert open_client.get(f"/objects/{objects['gsps']['sop_instance_uid']}.png").status_code == 404
    assert open_client.get("/objects/1.2.3.dcm").status_code == 404
    deliveries = {d["object_kind"]: d for d in report["deliveries"]}
    assert set(deliveries) == {"sr", "sc", "gsps"}
    assert {d["object_kind"]: d["id"] for d in open_client.get("/deliveries").json()} == {
        k: d["id"] for k, d in deliveries.items()}
    assert {d["sop_instance_uid"] for d in deliveries.values()} == {o["sop_instance_uid"] for o in objects.values()}
    page = open_client.get(f"/ui/studies/{analysed_rubo}").text
    for o in objects.values():  # the page lists and links each one, and shows the result image
        assert o["download"] in page
    assert f'src="{objects["sc"]["picture"]}"' in page
    assert page.count('class="object ') == 3


def test_sr_text_without_dsrdump_renders_the_content_tree(settings, sessions, analysed_rubo):
    from arcade_pacs.db.tables import Report
    from arcade_pacs.report.text import render_sr_text

    with sessions() as s:
        report_ready_studies(settings, session=s)
        path = s.query(Report).one().path
    text, renderer = render_sr_text(path, use_dsrdump=False)
    assert renderer == "pydicom"
    assert "Imaging Measurement Report" in text
    assert "Algorithm Name" in text


def test_reanalyse_needs_the_token_and_requeues(state, sessions, tiny_classifier, analysed_rubo):
    from fastapi.testclient import TestClient

    from arcade_pacs.admin.app import create_app

    state.settings.admin.token = TOKEN
    with TestClient(create_app(state)) as client:
        url = f"/studies/{analysed_rubo}/reanalyse"
        assert client.post(url).status_code == 401
        assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.post(url, headers=AUTH)
        assert r.status_code == 202
        assert r.json() == {"study_instance_uid": analysed_rubo, "runs_queued": 1, "runs_busy": 0}
        assert client.post(url, headers=AUTH).status_code == 409  # already queued
        assert client.post("/studies/1.2.3/reanalyse", headers=AUTH).status_code == 404
        Worker(state.settings, sessions, ModelHolder(tiny_classifier)).run_once()
        detail = client.get(f"/studies/{analysed_rubo}", headers=AUTH).json()
        assert detail["runs"][0]["job"]["state"] == "done"
        # With a token configured, reading results needs it too.
        assert client.get("/studies").status_code == 401
        assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_ready_reports_each_check(state, open_client):
    r = open_client.get("/ready")
    assert r.status_code == 200  # a process without an SCP (role worker or admin) is judged on what it runs
    body = r.json()
    assert body["checks"]["scp"] == {"ok": True, "detail": "no SCP runs in this process"}
    assert body["checks"]["model"]["ok"]
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["storage"]["ok"]
    state.scp_listening = lambda: False  # a process that should listen, and does not
    r = open_client.get("/ready")
    assert r.status_code == 503
    assert r.json()["reasons"] == [f"scp: not listening on port {state.settings.scp.port}"]
    state.scp_listening = lambda: True
    assert open_client.get("/ready").status_code == 200
    state.settings.storage.min_free_mb = 10**12
    body = open_client.get("/ready").json()
    assert body["status"] == "not ready"
    assert "below the watermark" in body["reasons"][0]


def test_root_redirects_browsers_and_answers_api_clients(open_client):
    r = open_client.get("/", headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "/ui/"
    body = open_client.get("/", headers={"Accept": "application/json"}).json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True


def test_status_has_version_backlog_and_last_errors(open_client, settings, sessions, tiny_classifier, rubo):
    from tests.factory import real_frame, xa_dataset
    from tests.ingest import ingest

    bad = xa_dataset([real_frame(rubo, 0)] * 2)
    bad.PixelData = bad.PixelData[:1000]
    bad_id = ingest(bad, settings, sessions)
    Worker(settings, sessions, ModelHolder(tiny_classifier)).run_once()
    body = open_client.get("/status").json()
    assert body["version"]
    assert body["active_associations"] is None
    [error] = body["last_errors"]
    assert error["source"] == "job"
    assert "pixel data" in error["error"]
    with sessions() as s:
        from arcade_pacs.db.tables import Job

        assert s.query(Job).filter_by(instance_id=bad_id).one().id == error["id"]


def test_dashboard_pages_render(open_client, analysed_rubo):
    home = open_client.get("/ui/")
    assert home.status_code == 200
    assert analysed_rubo in home.text
    assert 'hx-trigger="every 5s"' in home.text
    assert analysed_rubo in open_client.get("/ui/fragments/home").text
    study = open_client.get(f"/ui/studies/{analysed_rubo}")
    assert study.status_code == 200
    assert "histogram-stats" in study.text
    assert open_client.get("/ui/studies/1.2.3").status_code == 404
    for url in ("/ui/studies", "/ui/associations", "/ui/upload", "/ui/operations", "/ui/fragments/retrain", "/ui/login"):
        assert open_client.get(url).status_code == 200, url
    js = open_client.get("/ui/static/htmx.min.js")
    assert js.status_code == 200
    assert js.text.startswith("var htmx=")


def test_metrics_count_inference_jobs_and_queues(open_client, analysed_rubo):
    text = open_client.get("/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # 8 keyframes x 9 windows x 2 TTA views, in batches of at most 256 (the tiny model's default).
    assert float(lines["arcade_inference_images_total"]) >= 144
    assert float(lines["arcade_inference_passes_total"]) >= 1
    assert float(lines['arcade_job_duration_seconds_count{outcome="done"}']) >= 1
    assert lines['arcade_queue_depth{queue="analysis"}'] == "0.0"
    assert lines['arcade_queue_depth{queue="outbox"}'] == "0.0"
    assert "arcade_received_bytes_total" in lines
    assert "arcade_associations_rejected_total" in lines


def test_dashboard_forms_use_the_admin_token(state, analysed_rubo):
    from fastapi.testclient import TestClient

    from arcade_pacs.admin.app import create_app

    state.settings.admin.token = TOKEN
    with TestClient(create_app(state)) as client:
        form = f"/ui/operations/studies/{analysed_rubo}/reanalyse"
        assert client.post(form).status_code == 401
        # The reading cookie from /ui/login never authorises a change (no cross-site forgery).
        assert client.post("/ui/login", data={"token": "wrong"}).status_code == 401
        assert client.post("/ui/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
        assert client.get("/ui/").status_code == 200
        assert client.get("/studies").status_code == 200
        assert client.post(form).status_code == 401
        done = client.post(form, headers=AUTH)
        assert done.status_code == 200
        assert "Re-analysis queued for 1 run" in done.text
        again = client.post(form, headers=AUTH)
        assert again.status_code == 409
        assert "already queued" in again.text
        assert client.post("/ui/operations/deliveries/1/retry", headers=AUTH).status_code == 409
        # The form sends its empty optional fields as "" (meaning: all images).
        retrain = client.post("/ui/operations/retrain", data={"epochs": 1, "limit_train": "", "limit_val": ""},
                              headers=AUTH)
        assert retrain.status_code == 503
        assert "not available" in retrain.text


def test_a_report_whose_images_are_still_to_be_drawn_says_so(open_client, settings, sessions, analysed_rubo,
                                                            monkeypatch):
    from arcade_pacs.report import reporter

    monkeypatch.setattr(reporter, "build_objects", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1  # the SR is out; its images are not
    assert open_client.get("/status").json()["reports_drawing"] == 1
    [report] = open_client.get(f"/studies/{analysed_rubo}").json()["reports"]
    assert report["derived_pending"] is True
    assert [o["kind"] for o in report["objects"]] == ["sr"]
    assert "being drawn" in open_client.get(f"/ui/studies/{analysed_rubo}").text
    monkeypatch.undo()
    with sessions() as s:
        from arcade_pacs.db.tables import Study

        s.execute(Study.__table__.update().values(report_due_at=None))
        s.commit()
        assert report_ready_studies(settings, session=s) == 0
    assert open_client.get("/status").json()["reports_drawing"] == 0
    [report] = open_client.get(f"/studies/{analysed_rubo}").json()["reports"]
    assert report["derived_pending"] is False
    assert "being drawn" not in open_client.get(f"/ui/studies/{analysed_rubo}").text
