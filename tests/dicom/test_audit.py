"""The association audit against real peers: DCMTK's storescu and echoscu, a pynetdicom SCU."""

import pytest
from sqlalchemy import select

from arcade_pacs.bench.peers import wait_until
from arcade_pacs.core.metrics import REGISTRY
from arcade_pacs.db.tables import Association
from arcade_pacs.receive.audit import is_stored, reject_reason
from tests.dicom.test_scp import echoscu, storescu

pytestmark = [pytest.mark.network]


def rows(sessions):
    with sessions() as s:
        return list(s.scalars(select(Association).order_by(Association.id)))


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_released_association_records_the_caller_instances_and_bytes(scp, rubo):
    bytes_before = sample("arcade_received_bytes_total")
    sent = storescu(scp.port, rubo, extra=("-xy",))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [row] = wait_until(lambda: rows(scp.sessions), timeout=10, message="audit row")
    assert row.outcome == "released"
    assert row.reason is None
    assert row.calling_aet == "STORESCU"
    assert row.called_aet == "ARCADE"
    assert row.peer_address == "127.0.0.1"
    assert row.peer_port > 0
    assert row.instances_stored == 1
    assert row.instances_refused == 0
    # The wire carries the file's data set (less its 128-byte preamble and meta) plus PDU headers.
    assert row.bytes_received > rubo.stat().st_size * 0.9
    assert row.ended_at >= row.started_at
    assert sample("arcade_received_bytes_total") - bytes_before == pytest.approx(row.bytes_received)


def test_a_rejected_caller_is_audited_with_the_reason(scp):
    rejected_before = sample("arcade_associations_rejected_total")
    assert echoscu(scp.port, calling="INTRUDER").returncode != 0
    [row] = wait_until(lambda: rows(scp.sessions), timeout=10, message="audit row")
    assert row.outcome == "rejected"
    assert row.calling_aet == "INTRUDER"
    assert row.reason == "calling AE title not recognized"
    assert row.instances_stored == 0
    assert sample("arcade_associations_rejected_total") == rejected_before + 1


def test_an_aborted_association_is_audited(scp):
    from pynetdicom import AE

    ae = AE(ae_title="STORESCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    assoc.abort()
    [row] = wait_until(lambda: rows(scp.sessions), timeout=10, message="audit row")
    assert row.outcome == "aborted"
    assert row.calling_aet == "STORESCU"


def test_reject_reason_follows_pynetdicoms_order():
    assert reject_reason("X", "ARCADE", "ARCADE", ["STORESCU"], 1, 10) == "calling AE title not recognized"
    assert reject_reason("STORESCU", "OTHER", "ARCADE", ["STORESCU"], 1, 10) == "called AE title not recognized"
    assert reject_reason("STORESCU", "ARCADE", "ARCADE", [], 11, 10).startswith("local limit exceeded")
    assert is_stored(0x0000)
    assert is_stored(0xB007)
    assert not is_stored(0xA700)
    assert not is_stored(0xC210)
