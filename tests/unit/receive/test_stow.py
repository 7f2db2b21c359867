"""STOW-RS receipt (PS3.18 10.5) through the real app: every instance takes the C-STORE's receipt,
every malformed request gets its documented status and stores nothing it should not."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import CTImageStorage, generate_uid
from sqlalchemy import select

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.db.tables import Association, Instance, Job
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.receive.receipt import StoreContext
from arcade_pacs.receive.stow import StowReceiver
from arcade_pacs.settings import DicomwebSender
from arcade_pacs.store.files import INCOMING_DIR
from tests.factory import xa_dataset
from tests.stow import AUTH, SENDER, SENDER_TOKEN, body, content_type, part10

FAILED_SOP_SEQUENCE, REFERENCED_SOP_SEQUENCE, FAILURE_REASON = "00081198", "00081199", "00081197"
REFERENCED_SOP_INSTANCE = "00081155"


@pytest.fixture
def stow_settings(settings):
    settings.storage.min_free_mb = 0
    settings.dicomweb_senders = [DicomwebSender(name=SENDER, token=SENDER_TOKEN)]
    return settings


@pytest.fixture
def receiver(stow_settings, sessions):
    return StowReceiver(StoreContext(stow_settings, sessions, load_contexts()))


@pytest.fixture
def client(stow_settings, sessions, receiver):
    state = AdminState(stow_settings, sessions, None, stow=receiver)
    with TestClient(create_app(state, full=False), client=("10.1.2.3", 40123)) as c:
        yield c


def _cine(study_uid=None, frames=3, **attributes):
    return xa_dataset(np.full((frames, 32, 32), 100, np.uint8), study_uid=study_uid, **attributes)


def _post(client, data: bytes, ctype: str | None = None, headers=AUTH, path="/dicom-web/studies"):
    return client.post(path, content=data, headers={**headers, "Content-Type": ctype or content_type()})


def _stored(sessions) -> dict[str, Instance]:
    with sessions() as s:
        return {i.sop_instance_uid: i for i in s.scalars(select(Instance))}


def _audit(sessions) -> list[Association]:
    with sessions() as s:
        return list(s.scalars(select(Association).order_by(Association.id)))


def _uids(response, sequence) -> list[str]:
    return [item[REFERENCED_SOP_INSTANCE]["Value"][0] if "Value" in item[REFERENCED_SOP_INSTANCE] else ""
            for item in response.json().get(sequence, {}).get("Value", [])]


def _reasons(response) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in response.json()[FAILED_SOP_SEQUENCE]["Value"]]


def _incoming_empty(settings) -> bool:
    folder = settings.storage.root / INCOMING_DIR
    return not folder.exists() or not any(folder.iterdir())


def test_instances_are_stored_queued_and_audited_as_a_c_store_would_be(client, sessions, stow_settings):
    first, second = _cine(), _cine()
    r = _post(client, body([part10(first), part10(second)]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert _uids(r, REFERENCED_SOP_SEQUENCE) == [first.SOPInstanceUID, second.SOPInstanceUID]
    assert FAILED_SOP_SEQUENCE not in r.json()
    stored = _stored(sessions)
    assert set(stored) == {first.SOPInstanceUID, second.SOPInstanceUID}
    for ds in (first, second):
        instance = stored[ds.SOPInstanceUID]
        assert instance.calling_aet == SENDER
        assert pydicom.dcmread(instance.path).SOPInstanceUID == ds.SOPInstanceUID  # the file as sent, in place
    with sessions() as s:
        assert s.scalars(select(Job.state)).all() == ["queued", "queued"]
    (row,) = _audit(sessions)
    assert (row.protocol, row.calling_aet, row.called_aet, row.peer_address, row.outcome) == (
        "dicomweb", SENDER, "ARCADE", "10.1.2.3", "released")
    assert (row.instances_stored, row.instances_refused) == (2, 0)
    assert row.bytes_received > 2 * 32 * 32 * 3
    assert _incoming_empty(stow_settings)


def test_one_valid_and_one_corrupt_part_store_the_valid_one_and_report_the_other(client, sessions):
    good = _cine()
    corrupt = bytearray(part10(_cine()))
    corrupt[128:132] = b"XXXX"  # no DICM prefix: not a Part 10 file
    short = _cine()
    short.PixelData = short.PixelData[:1000]  # what the C-STORE receipt refuses with 0xA900
    r = _post(client, body([bytes(corrupt), part10(good), part10(short)]))
    assert r.status_code == 202, r.text
    assert _uids(r, REFERENCED_SOP_SEQUENCE) == [good.SOPInstanceUID]
    assert _uids(r, FAILED_SOP_SEQUENCE) == ["", short.SOPInstanceUID]
    assert _reasons(r) == [0xC210, 0xA900]
    assert "part 1: 0xC210 not a DICOM Part 10 file" in r.headers["warning"]
    assert "part 3: 0xA900 pixel data shorter than" in r.headers["warning"]
    assert set(_stored(sessions)) == {good.SOPInstanceUID}
    (row,) = _audit(sessions)
    assert (row.instances_stored, row.instances_refused, row.reason) == (1, 2, "HTTP 202: 2 of 3 instances refused")


def test_nothing_stored_is_409_with_each_failure_reason(client, sessions):
    ct = _cine(sop_class=CTImageStorage)
    r = _post(client, body([("text/plain", b"hello"), b"not dicom at all", part10(ct)]))
    assert r.status_code == 409, r.text
    assert _reasons(r) == [0xC210, 0xC210, 0x0122]  # foreign part, non-DICOM bytes, SOP class not accepted
    assert "part 1: 0xC210 part is not application/dicom" in r.headers["warning"]
    assert _uids(r, FAILED_SOP_SEQUENCE)[2] == ct.SOPInstanceUID
    assert _stored(sessions) == {}


@pytest.mark.parametrize("broken", ["truncated", "wrong boundary", "no parts", "garbage"])
def test_a_malformed_body_is_400_and_stores_nothing_and_the_next_request_is_served(
        broken, client, sessions, stow_settings):
    parts = [part10(_cine()), part10(_cine())]
    data = {
        "truncated": body(parts)[:-60],  # cut inside the second part: no closing delimiter
        "wrong boundary": body(parts, boundary="another-boundary"),
        "no parts": b"--arcade-test-boundary--\r\n",
        "garbage": b"\x00\x01 this is no multipart body",
    }[broken]
    r = _post(client, data)
    assert r.status_code == 400, r.text
    assert _stored(sessions) == {}
    assert _incoming_empty(stow_settings)
    (row,) = _audit(sessions)
    assert row.outcome == "rejected"
    assert row.reason.startswith("HTTP 400")
    assert row.calling_aet == SENDER
    good = _cine()
    assert _post(client, body([part10(good)])).status_code == 200
    assert set(_stored(sessions)) == {good.SOPInstanceUID}


def test_a_body_over_the_bound_is_413_while_it_arrives_and_stores_nothing(client, sessions, stow_settings):
    stow_settings.dicomweb.max_request_bytes = 50_000
    big = part10(_cine(frames=60))  # ~61 KB
    r = _post(client, body([part10(_cine()), big]))  # declared Content-Length
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        data = body([part10(_cine()), big])
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    r = client.post("/dicom-web/studies", content=chunks(), headers={**AUTH, "Content-Type": content_type()})
    assert r.status_code == 413
    assert "larger than 50000 bytes" in r.json()["detail"]
    assert _stored(sessions) == {}
    assert _incoming_empty(stow_settings)
    assert [a.reason[:8] for a in _audit(sessions)] == ["HTTP 413", "HTTP 413"]


def test_an_instance_over_the_scp_bound_is_refused_like_a_c_store(client, sessions, stow_settings):
    stow_settings.scp.max_instance_bytes = 20_000
    small, big = _cine(), _cine(frames=30)
    r = _post(client, body([part10(small), part10(big)]))
    assert r.status_code == 202
    assert _reasons(r) == [0xA700]
    assert set(_stored(sessions)) == {small.SOPInstanceUID}


@pytest.mark.parametrize("headers,status", [({}, 401), ({"Authorization": "Bearer wrong-token-0123456789"}, 401),
                                            ({"Authorization": f"Basic {SENDER_TOKEN}"}, 401)])
def test_a_missing_or_wrong_token_is_401(headers, status, client, sessions):
    r = _post(client, body([part10(_cine())]), headers=headers)
    assert r.status_code == status
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert _stored(sessions) == {}
    (row,) = _audit(sessions)
    assert (row.outcome, row.calling_aet, row.protocol) == ("rejected", "", "dicomweb")


def test_guessing_sender_tokens_is_throttled_per_client_like_the_admins_token(client, sessions, stow_settings):
    wrong = {"Authorization": "Bearer wrong-token-0123456789"}
    for _ in range(stow_settings.admin.auth_free_failures):
        assert _post(client, body([part10(_cine())]), headers=wrong).status_code == 401
    r = _post(client, body([part10(_cine())]))  # even the right token waits now
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert _stored(sessions) == {}


def test_without_a_configured_sender_the_endpoint_refuses(client, sessions, stow_settings):
    stow_settings.dicomweb_senders = []
    r = _post(client, body([part10(_cine())]))
    assert r.status_code == 403
    assert "dicomweb_senders" in r.json()["detail"]
    assert _stored(sessions) == {}


@pytest.mark.parametrize("ctype", ["application/dicom", "multipart/related; type=\"application/dicom+json\"; boundary=b",
                                   "multipart/form-data; boundary=arcade-test-boundary", "application/json"])
def test_another_media_type_is_415(ctype, client, sessions):
    r = _post(client, body([part10(_cine())]), ctype=ctype)
    assert r.status_code == 415
    assert _stored(sessions) == {}


def test_study_form_refuses_instances_of_another_study(client, sessions):
    study = generate_uid()
    mine, other = _cine(study_uid=study), _cine()
    r = _post(client, body([part10(mine), part10(other)]), path=f"/dicom-web/studies/{study}")
    assert r.status_code == 202
    assert _uids(r, FAILED_SOP_SEQUENCE) == [other.SOPInstanceUID]
    assert _reasons(r) == [0xA900]
    assert set(_stored(sessions)) == {mine.SOPInstanceUID}
    assert client.post("/dicom-web/studies/not-a-uid", content=b"", headers=AUTH).status_code == 422


def test_a_byte_identical_resend_is_acknowledged_and_not_analysed_again(client, sessions):
    data = body([part10(_cine())])
    assert _post(client, data).status_code == 200
    assert _post(client, data).status_code == 200
    with sessions() as s:
        assert len(s.scalars(select(Job)).all()) == 1


def test_below_the_disk_watermark_or_when_busy_it_is_503(client, sessions, stow_settings, receiver):
    stow_settings.storage.min_free_mb = 1e12
    r = _post(client, body([part10(_cine())]))
    assert r.status_code == 503
    assert r.headers["retry-after"]
    stow_settings.storage.min_free_mb = 0
    held = [receiver.slots.acquire(blocking=False) for _ in range(stow_settings.dicomweb.max_concurrent_requests)]
    assert all(held)
    try:
        assert _post(client, body([part10(_cine())])).status_code == 503
    finally:
        for _ in held:
            receiver.slots.release()
    assert _post(client, body([part10(_cine())])).status_code == 200
    assert len(_stored(sessions)) == 1


def test_sender_names_and_tokens_are_validated():
    from pydantic import ValidationError

    from arcade_pacs.settings import Settings

    with pytest.raises(ValidationError):
        DicomwebSender(name="a name far longer than sixteen", token=SENDER_TOKEN)
    with pytest.raises(ValidationError):
        DicomwebSender(name="short", token="too-short")
    with pytest.raises(ValidationError):
        Settings(dicomweb_senders=[{"name": "a", "token": SENDER_TOKEN}, {"name": "b", "token": SENDER_TOKEN}])
