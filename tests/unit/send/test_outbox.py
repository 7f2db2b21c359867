"""The outbox against real peers (DCMTK's storescp, pynetdicom SCPs answering chosen statuses, a
closed port, a blackhole), on SQLite and PostgreSQL."""

import socket
import threading
import time
from datetime import timedelta

import pydicom
import pytest
from pynetdicom import AE, evt
from sqlalchemy import select, update

from arcade_pacs.bench.peers import StoreSCP, free_port, wait_until
from arcade_pacs.db.tables import Delivery, utcnow
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.send.sender import Sender
from arcade_pacs.settings import Destination, ObjectKind
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest
from tests.project import BOTH_DATABASES

pytestmark = [pytest.mark.network, pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)]

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def answering():
    """A pynetdicom SCP that answers every C-STORE with the status the test sets."""
    state = {"status": 0xA700, "calls": 0}

    def on_store(event):
        state["calls"] += 1
        return state["status"]

    ae = AE(ae_title="STATUS")
    ae.add_supported_context(SR_STORAGE, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield port, state
    server.shutdown()


@pytest.fixture
def blackhole():
    """Accepts TCP connections and never says a word (a hung PACS, a broken proxy)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    stopping = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stopping.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stopping.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def _reported(settings, sessions, classifier, rubo):
    ingest(xa_dataset(real_frame(rubo, 50)), settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1


def _send_all(settings, sessions, scu, owner="test"):
    with sessions() as s:
        for dest in settings.destinations:
            while outbox.send_next(scu, dest, owner, settings.outbox, session=s):
                pass


def _by_name(sessions):
    with sessions() as s:
        return {d.destination: d for d in s.scalars(select(Delivery))}


def _due_now(sessions):
    with sessions() as s:
        s.execute(update(Delivery).values(next_attempt_at=utcnow()))
        s.commit()


SR_ONLY = [ObjectKind.SR]
"""The outbox's mechanics are tested with one object per destination (kinds: see the tests at the end)."""


def test_send_then_retry_transport_errors_until_the_maximum_age(settings, sessions, tiny_classifier, rubo, pacs):
    port, folder = pacs.port, pacs.folder
    closed = free_port()
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port, objects=SR_ONLY),
                             Destination(name="down", ae_title="DOWN", host="127.0.0.1", port=closed, objects=SR_ONLY)]
    _reported(settings, sessions, tiny_classifier, rubo)
    scu = StoreSCU(settings, load_contexts())
    _send_all(settings, sessions, scu)
    rows = _by_name(sessions)
    assert rows["pacs"].state == "sent"
    assert rows["pacs"].last_status == 0
    down = rows["down"]
    assert down.state == "pending"
    assert down.attempts == 1
    assert "association" in down.last_error
    assert down.next_attempt_at > utcnow()
    _send_all(settings, sessions, scu)  # backing off: not attempted
    assert _by_name(sessions)["down"].attempts == 1
    for _ in range(8):  # far more than the old limit of 5 attempts: still pending
        _due_now(sessions)
        _send_all(settings, sessions, scu)
    assert _by_name(sessions)["down"].state == "pending"
    assert _by_name(sessions)["down"].attempts == 9
    with sessions() as s:  # 72 h later
        s.execute(update(Delivery).where(Delivery.destination == "down")
                  .values(queued_at=utcnow() - timedelta(hours=72, seconds=1), next_attempt_at=utcnow()))
        s.commit()
    _send_all(settings, sessions, scu)
    down = _by_name(sessions)["down"]
    assert down.state == "failed"
    assert "gave up after 72 h" in down.last_error
    with sessions() as s:
        assert outbox.counts_by_state(session=s) == {"pending": 0, "sent": 1, "failed": 1, "superseded": 0, "cancelled": 0}
        assert outbox.retry(down.id, session=s)
        s.commit()
        assert s.get(Delivery, down.id, populate_existing=True).state == "pending"
        assert not outbox.retry(rows["pacs"].id, session=s)  # only failed deliveries are retried
    assert len(list(folder.glob("SR*"))) == 1


@pytest.mark.parametrize("status, outcome", [(0xA700, "pending"), (0xA900, "failed"), (0xC000, "failed")])
def test_peer_statuses_retry_or_fail_at_once_keeping_the_status(settings, sessions, tiny_classifier, rubo,
                                                                 answering, status, outcome):
    port, state = answering
    state["status"] = status
    settings.destinations = [Destination(name="peer", ae_title="STATUS", host="127.0.0.1", port=port, objects=SR_ONLY)]
    _reported(settings, sessions, tiny_classifier, rubo)
    _send_all(settings, sessions, StoreSCU(settings, load_contexts()))
    row = _by_name(sessions)["peer"]
    assert state["calls"] == 1
    assert row.state == outcome
    assert row.last_status == status
    assert f"0x{status:04X}" in row.last_error


def test_a_destination_is_resolved_by_name_when_sending_and_a_removed_one_is_cancelled(
        settings, sessions, tiny_classifier, rubo, pacs):
    port, folder = pacs.port, pacs.folder
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=free_port(), objects=SR_ONLY),
                             Destination(name="old", ae_title="OLD", host="127.0.0.1", port=1, objects=SR_ONLY)]
    _reported(settings, sessions, tiny_classifier, rubo)
    # The PACS moved and "old" was removed from the configuration before anything was sent.
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port, objects=SR_ONLY)]
    with sessions() as s:
        assert outbox.cancel_removed([d.name for d in settings.destinations], session=s) == 1
    _send_all(settings, sessions, StoreSCU(settings, load_contexts()))
    rows = _by_name(sessions)
    assert rows["pacs"].state == "sent"
    assert rows["old"].state == "cancelled"
    assert "removed" in rows["old"].last_error
    assert len(list(folder.glob("SR*"))) == 1


def test_two_senders_never_send_the_same_delivery(settings, sessions, tiny_classifier, rubo, pacs):
    port, folder = pacs.port, pacs.folder
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port, objects=SR_ONLY)]
    for n in range(3):
        ingest(xa_dataset(real_frame(rubo, 40 + n)), settings, sessions)  # three studies
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 3
    scu = StoreSCU(settings, load_contexts())
    threads = [threading.Thread(target=_send_all, args=(settings, sessions, scu, f"sender{i}")) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as s:
        assert outbox.counts_by_state(session=s)["sent"] == 3
        assert all(d.attempts == 1 for d in s.scalars(select(Delivery)))
    assert len(list(folder.glob("SR*"))) == 3  # +uf: a second copy would be a second file


def test_a_blackholed_destination_does_not_delay_another_destination(
        settings, sessions, tiny_classifier, rubo, pacs, blackhole):
    port = pacs.port
    settings.outbox.network_timeout_s = 20
    settings.destinations = [Destination(name="hole", ae_title="HOLE", host="127.0.0.1", port=blackhole, objects=SR_ONLY),
                             Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port, objects=SR_ONLY)]
    _reported(settings, sessions, tiny_classifier, rubo)
    scu = StoreSCU(settings, load_contexts())
    senders = [Sender(settings, sessions, scu, d, "svc") for d in settings.destinations]
    threads = [threading.Thread(target=s.run, daemon=True) for s in senders]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        wait_until(lambda: _by_name(sessions)["pacs"].state == "sent", timeout=15, message="SR at the PACS")
        assert time.monotonic() - started < 10  # not after the blackhole's 20 s timeout
        assert _by_name(sessions)["hole"].attempts == 0  # still waiting for the blackhole's answer
        wait_until(lambda: _by_name(sessions)["hole"].attempts == 1, timeout=60, message="blackhole timed out")
        hole = _by_name(sessions)["hole"]
        assert hole.state == "pending"
        assert hole.last_status is None
    finally:
        for s in senders:
            s.stop()
        for t in threads:
            t.join(timeout=60)


def test_the_connection_timeout_bounds_an_unroutable_destination(settings):
    settings.outbox.connect_timeout_s = 2
    scu = StoreSCU(settings, load_contexts())
    started = time.monotonic()
    outcome = scu.send("/nonexistent.dcm", "X", "10.255.255.1", 104)  # not routed: SYN never answered
    assert outcome.status is None
    assert time.monotonic() - started < 8


SECONDARY_CAPTURE, GSPS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.11.1"
ALL_KINDS = [ObjectKind.SR, ObjectKind.SC, ObjectKind.GSPS]


def _by_kind(sessions, destination):
    with sessions() as s:
        return {d.object.kind: d for d in s.scalars(select(Delivery).where(Delivery.destination == destination))}


def test_every_kind_of_object_is_retried_and_recorded_as_an_sr_is(settings, sessions, tiny_classifier, rubo, tmp_path):
    """The PACS is down: each object's delivery backs off and keeps its reason; once it is up, each
    arrives once, with its own SOP class, in the source study."""
    port = free_port()
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port, objects=ALL_KINDS)]
    _reported(settings, sessions, tiny_classifier, rubo)
    scu = StoreSCU(settings, load_contexts())
    _send_all(settings, sessions, scu)
    rows = _by_kind(sessions, "pacs")
    assert set(rows) == {"sr", "sc", "gsps"}
    for row in rows.values():
        assert row.state == "pending"
        assert row.attempts == 1
        assert "association" in row.last_error
        assert row.next_attempt_at > utcnow()
    with StoreSCP(tmp_path / "pacs", port, notify=False, unique_names=True) as pacs:
        _due_now(sessions)
        _send_all(settings, sessions, scu)
    folder = pacs.folder
    rows = _by_kind(sessions, "pacs")
    assert {k: (r.state, r.attempts, r.last_status) for k, r in rows.items()} == {
        k: ("sent", 2, 0) for k in ("sr", "sc", "gsps")}
    arrived = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()]
    assert sorted(d.SOPClassUID for d in arrived) == sorted([SR_STORAGE, SECONDARY_CAPTURE, GSPS])
    assert len({d.StudyInstanceUID for d in arrived}) == 1


def test_a_peer_that_does_not_store_a_kind_fails_that_delivery_at_once_and_keeps_the_others(
        settings, sessions, tiny_classifier, rubo, answering):
    """The peer negotiates SR storage only: the result image and presentation state fail at once as
    0x0122 (SOP Class not supported), visibly; an operator's retry tries again; the SR is stored."""
    port, state = answering
    state["status"] = 0x0000
    settings.destinations = [Destination(name="peer", ae_title="STATUS", host="127.0.0.1", port=port, objects=ALL_KINDS)]
    _reported(settings, sessions, tiny_classifier, rubo)
    scu = StoreSCU(settings, load_contexts())
    _send_all(settings, sessions, scu)
    rows = _by_kind(sessions, "peer")
    assert rows["sr"].state == "sent"
    assert state["calls"] == 1
    for kind in ("sc", "gsps"):
        assert rows[kind].state == "failed"
        assert rows[kind].last_status == 0x0122
        assert rows[kind].attempts == 1
        assert "no presentation context" in rows[kind].last_error
    with sessions() as s:
        assert outbox.retry(rows["sc"].id, session=s)
        s.commit()
    _send_all(settings, sessions, scu)
    assert _by_kind(sessions, "peer")["sc"].attempts == 1
    assert _by_kind(sessions, "peer")["sc"].state == "failed"


def test_an_object_being_sent_when_its_report_is_replaced_is_never_sent_after_the_newer_one(
        settings, sessions, tiny_classifier, rubo):
    """supersede_pending leaves a delivery under a live lease alone; if that attempt fails, the
    delivery is superseded, not retried behind the newer version's back."""
    from arcade_pacs.db.tables import Report

    settings.destinations = [Destination(name="down", ae_title="DOWN", host="127.0.0.1", port=free_port(),
                                         objects=ALL_KINDS)]
    first = xa_dataset(real_frame(rubo, 50))
    ingest(first, settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        taken = outbox.claim_delivery("down", "sender-1", 60, session=s)  # being sent right now
        s.commit()
        assert taken is not None
        taken_id = taken.id
    ingest(xa_dataset(real_frame(rubo, 60), study_uid=first.StudyInstanceUID), settings, sessions)
    while worker.run_once():
        pass
    with sessions() as s:
        assert report_ready_studies(settings, session=s) == 1
        old, new = s.scalars(select(Report).order_by(Report.id)).all()
        states = {d.id: d.state for d in old.deliveries}
        assert states.pop(taken_id) == "pending"
        assert set(states.values()) == {"superseded"}
        state = outbox.record_outcome(taken_id, "sender-1", None, "association aborted", False, settings.outbox,
                                      session=s)
        s.commit()
        assert state is outbox.DeliveryState.SUPERSEDED
        _due_now(sessions)
        claimed = outbox.claim_delivery("down", "sender-2", 60, session=s)
        assert claimed is not None
        assert claimed.report_id == new.id  # only the newer version is sent
