"""DICOMweb both ways with real peers: Orthanc's DICOMweb client stores a study into
``arcade-pacs serve`` by STOW-RS, the plugin analyses it and stores the SR by STOW-RS into another
Orthanc; hostile requests against the running process; an archive down for longer than the
back-off cap gets the SR once when it is back.

Each Orthanc that receives counts the STOW-RS requests it gets (a Lua ``IncomingHttpRequestFilter``
writes one line per ``POST /dicom-web/studies``), so "once" means one transmission, not one
stored copy (Orthanc would keep a second copy of the same SOP instance silently).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from arcade_pacs.bench.peers import Orthanc, free_port, loopback_config, wait_until, write_config
from tests.factory import xa_dataset
from tests.integration.reliability import stored_instances
from tests.project import SHIPPED_MODEL
from tests.stow import AUTH, SENDER, SENDER_TOKEN, body, content_type, part10

pytestmark = [pytest.mark.network, pytest.mark.slow]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
COUNTER = '''
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == "POST" and string.find(uri, "/dicom-web/studies", 1, true) then
    local f = io.open("{log}", "a"); f:write(uri .. "\\n"); f:close()
  end
  return true
end
'''


def _counting(folder: Path) -> tuple[dict, Path]:
    """Orthanc configuration keys that log every STOW-RS request it receives, and that log."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "stow-requests.txt"
    script = folder / "count.lua"
    script.write_text(COUNTER.replace("{log}", str(log)))
    return {"LuaScripts": [str(script)]}, log


def _requests(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _config(tmp_path, scp_port, admin_port, model, destinations, **sections):
    values = loopback_config(tmp_path, scp_port, admin_port, model, destinations, **sections,
                             storage={"min_free_mb": 0}, pipeline={"poll_interval_s": 0.2},
                             dicomweb_senders=[{"name": SENDER, "token": SENDER_TOKEN}])
    return write_config(tmp_path / "arcade.toml", values)


def _archive(port: int) -> dict:
    """The archive as a STOW-RS destination receiving the SR alone (one transmission to judge)."""
    return {"name": "pacs-web", "kind": "dicomweb", "url": f"http://127.0.0.1:{port}/dicom-web", "objects": ["sr"]}


def _get(admin_port: int, path: str):
    return httpx.get(f"http://127.0.0.1:{admin_port}{path}", timeout=30).json()


def test_orthanc_stows_a_study_in_and_the_sr_is_stowed_into_another_orthanc(tmp_path, rubo, start_plugin):
    scp_port, admin_port = free_port(), free_port()
    counting, requests = _counting(tmp_path / "pacs")
    arcade = {"arcade": {"Url": f"http://127.0.0.1:{admin_port}/dicom-web/",
                         "HttpHeaders": {"Authorization": f"Bearer {SENDER_TOKEN}"}}}
    with Orthanc(tmp_path / "pacs", dicomweb=True, extra=counting) as pacs, \
            Orthanc(tmp_path / "modality", aet="MODALITY", dicomweb=True, dicomweb_servers=arcade) as modality:
        config = _config(tmp_path, scp_port, admin_port, SHIPPED_MODEL, [_archive(pacs.http_port)])
        log = tmp_path / "plugin.log"
        plugin = start_plugin(config, log, scp_port, admin_port)
        try:
            source = pydicom.dcmread(rubo, stop_before_pixels=True)
            study = modality.post("/instances", rubo.read_bytes())["ParentStudy"]
            in_pacs = pacs.post("/instances", rubo.read_bytes())  # the archive holds the images, as a PACS does
            job = modality.post("/dicom-web/servers/arcade/stow", {"Resources": [study]})
            assert job["InstancesCount"] == "1", job
            (sr,) = wait_until(lambda: pacs.instances_of_class(COMPREHENSIVE_3D_SR), timeout=300,
                               message="the SR stored in the archive by STOW-RS")
            wait_until(lambda: _get(admin_port, "/deliveries")[0]["state"] == "sent", timeout=30,
                       message="the delivery recorded as sent")
            deliveries = _get(admin_port, "/deliveries")
            audit = _get(admin_port, "/associations")["items"]
            time.sleep(2)  # a second transmission, if any, would come now
        finally:
            plugin.close()
        assert sr["StudyInstanceUID"] == source.StudyInstanceUID
        assert sr["_parent_study"] == in_pacs["ParentStudy"]  # in the source study, beside its images
        refs = pydicom.dcmread(io.BytesIO(pacs.file(sr["_id"])))
        evidence = refs.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert _requests(requests) == 1
        assert [(d["destination"], d["state"], d["attempts"], d["last_status"]) for d in deliveries] == [
            ("pacs-web", "sent", 1, 0)]
        (row,) = audit
        assert (row["protocol"], row["calling_aet"], row["instances_stored"], row["outcome"]) == (
            "dicomweb", SENDER, 1, "released")
    assert plugin.returncode in (0, -15)
    assert "Rubo" not in log.read_text()
    assert source.PatientID not in log.read_text()


def test_hostile_stow_requests_get_their_status_store_nothing_and_the_plugin_keeps_serving(
        tmp_path, rubo, tiny_model, start_plugin):
    scp_port, admin_port = free_port(), free_port()
    config = _config(tmp_path, scp_port, admin_port, tiny_model, [], dicomweb={"max_request_bytes": 3_000_000})
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port)
    url = f"http://127.0.0.1:{admin_port}/dicom-web/studies"
    good, other = rubo.read_bytes(), part10(xa_dataset(np.full((4, 64, 64), 90, np.uint8)))
    corrupt = bytearray(other)
    corrupt[200:260] = b"\xff" * 60  # File Meta Information overwritten
    statuses = {}
    try:
        with httpx.Client(timeout=60) as http:
            def post(name, data, headers=AUTH, ctype=None):
                r = http.post(url, content=data, headers={**headers, "Content-Type": ctype or content_type()})
                statuses[name] = r.status_code
                assert plugin.poll() is None
                assert http.get(f"http://127.0.0.1:{admin_port}/health").status_code == 200
                return r

            r = post("valid + corrupt", body([good, bytes(corrupt)]))
            assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC210]
            post("truncated", body([other, other])[:-100])
            post("wrong boundary", body([other], boundary="not-the-announced-one"))
            post("non-DICOM part", body([("text/plain", b"a report in words")]))
            post("non-DICOM bytes", body([b"\x00" * 4096]))
            post("oversized", body([good, good]))
            post("no token", body([other]), headers={})
            post("wrong token", body([other]), headers={"Authorization": "Bearer 0123456789abcdef-wrong"})
            post("wrong media type", body([other]), ctype="application/dicom")
            post("valid afterwards", body([other]))
        stored = set(stored_instances(f"sqlite:///{tmp_path / 'arcade.db'}"))
    finally:
        plugin.close()
    assert statuses == {"valid + corrupt": 202, "truncated": 400, "wrong boundary": 400, "non-DICOM part": 409,
                        "non-DICOM bytes": 409, "oversized": 413, "no token": 401, "wrong token": 401,
                        "wrong media type": 415, "valid afterwards": 200}
    assert stored == {pydicom.dcmread(rubo, stop_before_pixels=True).SOPInstanceUID,
                      pydicom.dcmread(io.BytesIO(other)).SOPInstanceUID}
    assert not list((tmp_path / "store" / ".incoming").iterdir())


def test_an_archive_down_longer_than_the_back_off_cap_gets_the_sr_once_when_back(
        tmp_path, rubo, tiny_model, start_plugin):
    scp_port, admin_port, pacs_port = free_port(), free_port(), free_port()
    config = _config(tmp_path, scp_port, admin_port, tiny_model, [_archive(pacs_port)],
                     outbox={"backoff_initial_s": 1, "backoff_cap_s": 3, "poll_interval_s": 0.2, "lease_s": 5})
    plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
    counting, requests = _counting(tmp_path / "pacs")
    try:
        r = httpx.post(f"http://127.0.0.1:{admin_port}/dicom-web/studies", content=body([rubo.read_bytes()]),
                       headers={**AUTH, "Content-Type": content_type()}, timeout=60)
        assert r.status_code == 200, r.text
        first = wait_until(lambda: _get(admin_port, "/deliveries"), timeout=180, message="the SR queued")
        down_since = time.monotonic()
        time.sleep(20)  # more than six times the 3-s cap
        (row,) = _get(admin_port, "/deliveries")
        assert row["state"] == "pending", row
        assert row["attempts"] >= 5, row
        assert "ConnectError" in row["last_error"]
        with Orthanc(tmp_path / "pacs", dicomweb=True, http_port=pacs_port, extra=counting) as pacs:
            (sr,) = wait_until(lambda: pacs.instances_of_class(COMPREHENSIVE_3D_SR), timeout=60,
                               message="the SR after the outage")
            wait_until(lambda: _get(admin_port, "/deliveries")[0]["state"] == "sent", timeout=30, message="sent")
            time.sleep(6)  # past a lease: a second transmission, if any, would come now
            assert _requests(requests) == 1
            assert sr["StudyInstanceUID"] == pydicom.dcmread(rubo, stop_before_pixels=True).StudyInstanceUID
        (done,) = _get(admin_port, "/deliveries")
        assert done["id"] == first[0]["id"]
        assert done["state"] == "sent"
        assert done["attempts"] > row["attempts"]
        print(f"RELIABILITY stow_outage down_s={time.monotonic() - down_since:.0f} attempts={done['attempts']} "
              f"transmissions={_requests(requests)}")
    finally:
        plugin.close()
