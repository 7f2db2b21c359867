"""STOW-RS out through the outbox against real HTTP peers: Orthanc's DICOMweb plugin (stores the SR),
the plugin's own STOW-RS endpoint served by uvicorn (refuses SRs with 409 and a Failure Reason,
refuses a wrong token, is busy, speaks TLS), a closed port."""

from __future__ import annotations

import io
import threading

import httpx
import pydicom
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select, update

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.bench.peers import Orthanc, free_port, wait_for_port
from arcade_pacs.db import make_engine, make_session_factory, migrate
from arcade_pacs.db.tables import Delivery, Report, utcnow
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.receive.stow import StowReceiver
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.stow import StowClient, outcome
from arcade_pacs.settings import Destination, DestinationTls, DicomwebSender, Settings
from tests.certs import make_certificates
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest
from tests.stow import SENDER, SENDER_TOKEN

pytestmark = [pytest.mark.network]


def _reported(settings, sessions, classifier, rubo) -> Report:
    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        return s.scalars(select(Report)).one()


def _send_all(settings, sessions, client):
    with sessions() as s:
        for dest in settings.destinations:
            while outbox.send_next(client, dest, "test", settings.outbox, session=s):
                pass


def _delivery(sessions) -> Delivery:
    with sessions() as s:
        return s.scalars(select(Delivery)).one()


def _web(name: str, url: str, **fields) -> Destination:
    """A STOW-RS destination; the SR alone unless ``objects`` says otherwise (one delivery to judge)."""
    return Destination(name=name, kind="dicomweb", url=url, **({"objects": ["sr"]} | fields))


@pytest.fixture
def stow_peer(tmp_path):
    """The plugin's own STOW-RS endpoint in a uvicorn server (its own store and database); it
    accepts XA only, so it refuses an SR with 409 and Failure Reason 0x0122."""
    servers = []

    def start(tls=None):
        folder = tmp_path / f"peer{len(servers)}"
        cfg = Settings(storage={"root": folder / "store", "min_free_mb": 0},
                       database={"url": f"sqlite:///{folder / 'peer.db'}"},
                       dicomweb_senders=[DicomwebSender(name=SENDER, token=SENDER_TOKEN)], destinations=[])
        folder.mkdir()
        engine = make_engine(cfg.database.url)
        migrate(engine)
        receiver = StowReceiver(StoreContext(cfg, make_session_factory(engine), load_contexts()))
        port = free_port()
        ssl = {"ssl_certfile": str(tls.server_cert), "ssl_keyfile": str(tls.server_key)} if tls else {}
        server = uvicorn.Server(uvicorn.Config(create_app(AdminState(cfg, receiver.ctx.sessions, None, stow=receiver),
                                                          full=False),
                                               host="127.0.0.1", port=port, log_level="warning", **ssl))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_port(port)
        servers.append((server, thread, engine))
        scheme = "https" if tls else "http"
        return f"{scheme}://{'localhost' if tls else '127.0.0.1'}:{port}/dicom-web", receiver

    yield start
    for server, thread, engine in servers:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def test_every_result_object_reaches_orthanc_by_stow_rs_and_is_stored(settings, sessions, tiny_classifier, rubo,
                                                                       tmp_path):
    """The default objects (the SR and the run's result image), each by its own STOW-RS request,
    stored in the source study."""
    (tmp_path / "orthanc").mkdir()
    with Orthanc(tmp_path / "orthanc", dicomweb=True) as pacs:
        settings.destinations = [Destination(name="pacs-web", kind="dicomweb",
                                             url=f"http://127.0.0.1:{pacs.http_port}/dicom-web/")]
        report = _reported(settings, sessions, tiny_classifier, rubo)
        _send_all(settings, sessions, StowClient(settings))
        with sessions() as s:
            rows = s.scalars(select(Delivery)).all()
            paths = [row.path for row in rows]
            outcomes = [(row.state, row.last_status, row.attempts, row.last_error) for row in rows]
        assert len(rows) == 2
        assert outcomes == [("sent", 0, 1, None)] * 2
        sent = [pydicom.dcmread(path) for path in paths]
        assert {ds.SOPClassUID for ds in sent} == {report_sop_class(report), "1.2.840.10008.5.1.4.1.1.7"}
        for ds in sent:
            found = pacs.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": ds.SOPInstanceUID}})
            assert len(found) == 1
            stored = pydicom.dcmread(io.BytesIO(pacs.file(found[0])))
            assert stored.StudyInstanceUID == ds.StudyInstanceUID
            assert stored.SOPClassUID == ds.SOPClassUID


def report_sop_class(report: Report) -> str:
    return str(pydicom.dcmread(report.path, stop_before_pixels=True).SOPClassUID)


def test_a_409_with_a_failure_reason_fails_at_once_keeping_it(settings, sessions, tiny_classifier, rubo, stow_peer):
    url, receiver = stow_peer()
    settings.destinations = [_web("peer", url, token=SecretStr(SENDER_TOKEN))]
    _reported(settings, sessions, tiny_classifier, rubo)
    _send_all(settings, sessions, StowClient(settings))
    row = _delivery(sessions)
    assert (row.state, row.attempts, row.last_status) == ("failed", 1, 0x0122)
    assert "HTTP 409" in row.last_error
    assert "0x0122" in row.last_error
    assert "SOP class not accepted" in row.last_error


def test_a_wrong_token_fails_at_once_and_busy_or_down_peers_are_retried(settings, sessions, tiny_classifier, rubo,
                                                                         stow_peer):
    url, receiver = stow_peer()
    closed = free_port()
    settings.destinations = [_web("wrong-token", url, token=SecretStr("not-the-token-0123456789")),
                             _web("busy", url, token=SecretStr(SENDER_TOKEN)),
                             _web("down", f"http://127.0.0.1:{closed}/dicom-web")]
    _reported(settings, sessions, tiny_classifier, rubo)
    held = [receiver.slots.acquire(blocking=False) for _ in range(receiver.settings.dicomweb.max_concurrent_requests)]
    try:
        _send_all(settings, sessions, StowClient(settings))
    finally:
        for _ in held:
            receiver.slots.release()
    with sessions() as s:
        rows = {d.destination: d for d in s.scalars(select(Delivery))}
    assert (rows["wrong-token"].state, rows["wrong-token"].last_status) == ("failed", None)
    assert "HTTP 401" in rows["wrong-token"].last_error
    assert "not retried" in rows["wrong-token"].last_error
    for name, said in (("busy", "HTTP 503"), ("down", "ConnectError")):
        assert rows[name].state == "pending"
        assert rows[name].attempts == 1
        assert said in rows[name].last_error
        assert rows[name].next_attempt_at > utcnow()
    with sessions() as s:  # the peer is free again: the busy one is sent on its next try (and refused there)
        s.execute(update(Delivery).values(next_attempt_at=utcnow()))
        s.commit()
    _send_all(settings, sessions, StowClient(settings))
    with sessions() as s:
        assert s.scalars(select(Delivery.last_status).where(Delivery.destination == "busy")).one() == 0x0122


def test_https_verifies_the_peer_certificate(settings, sessions, tiny_classifier, rubo, stow_peer, tmp_path):
    certs = make_certificates(tmp_path / "certs")
    url, _ = stow_peer(tls=certs)
    settings.destinations = [
        _web("trusted", url, token=SecretStr(SENDER_TOKEN), tls=DestinationTls(ca_certificates=certs.ca)),
        _web("untrusted", url, token=SecretStr(SENDER_TOKEN)),  # the system's trust store does not know the CA
    ]
    _reported(settings, sessions, tiny_classifier, rubo)
    _send_all(settings, sessions, StowClient(settings))
    with sessions() as s:
        rows = {d.destination: d for d in s.scalars(select(Delivery))}
    assert rows["trusted"].last_status == 0x0122  # reached the peer over TLS (which refuses SRs)
    assert rows["untrusted"].state == "pending"
    assert "CERTIFICATE_VERIFY_FAILED" in rows["untrusted"].last_error


def _answer(status: int, body: dict | None = None, **headers) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _store_response(uid: str, *, warning: int | None = None, failure: int | None = None) -> dict:
    item = {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.88.34"]},
            "00081155": {"vr": "UI", "Value": [uid]}}
    if failure is not None:
        return {"00081198": {"vr": "SQ", "Value": [item | {"00081197": {"vr": "US", "Value": [failure]}}]}}
    if warning is not None:
        item["00081196"] = {"vr": "US", "Value": [warning]}
    return {"00081199": {"vr": "SQ", "Value": [item]}}


@pytest.mark.parametrize("response, ok, status, final", [
    (_answer(200, _store_response("1.2.3")), True, 0, False),
    (_answer(202, _store_response("1.2.3", warning=0xB000)), True, 0xB000, False),
    (_answer(200, None), True, 0, False),  # all stored, the body says nothing more
    (_answer(202, _store_response("1.2.3", failure=0xA700)), False, 0xA700, False),  # retried by the outbox
    (_answer(409, _store_response("1.2.3", failure=0xC000)), False, 0xC000, False),  # failed by the outbox
    (_answer(409, _store_response("9.9.9", failure=0xC000)), False, None, True),  # not about our instance
    (_answer(409, {"detail": "no"}), False, None, True),
    (_answer(500), False, None, False), (_answer(502), False, None, False), (_answer(429), False, None, False),
    (_answer(400), False, None, True), (_answer(403), False, None, True), (_answer(415), False, None, True),
    (_answer(302, location="http://elsewhere/"), False, None, True),
])
def test_what_each_answer_means(response, ok, status, final):
    result = outcome(response, "1.2.3")
    assert (result.ok, result.status, result.final) == (ok, status, final)
    assert (outbox.verdict(result.status, result.ok, result.final) is outbox.Verdict.FAIL) == (
        not ok and (final or not (status is None or 0xA700 <= status <= 0xA7FF)))


def test_a_dicomweb_destination_needs_an_http_url_and_one_kind_of_auth():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Destination(name="x", kind="dicomweb")
    with pytest.raises(ValidationError):
        Destination(name="x", kind="dicomweb", url="ftp://pacs/")
    with pytest.raises(ValidationError):
        Destination(name="x", kind="dicomweb", url="http://pacs/", token=SecretStr("t"), username="u")
    with pytest.raises(ValidationError):
        Destination(name="x", ae_title="PACS")  # a DIMSE destination still needs its address
