"""Hostile peers on the SCP's port (issue 18, finding 1): half-sent PDUs, stalled P-DATA, idle and
surplus connections. A stalled peer must not deny service to others, as with DCMTK's storescp
and Orthanc; every read on an accepted socket has a deadline; only established associations
count against ``scp.max_associations``; connections per peer address are bounded.

Loopback has a whole /8: attackers connect from 127.0.0.2-127.0.0.9 where a test needs them to
be another host than the modality (DCMTK's tools, from 127.0.0.1).
"""

import logging
import socket
import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from arcade_pacs.bench.peers import run, tool, wait_until
from arcade_pacs.db.tables import Association, Instance
from tests.dicom.test_scp import storescu

pytestmark = [pytest.mark.network]

ASSOCIATE_RQ, P_DATA_TF = 0x01, 0x04


def echoscu_quick(port: int, calling: str = "STORESCU"):
    """echoscu that gives up after 5 s at every stage (TCP connect, association, C-ECHO): success
    here means the SCP answered within a few seconds, without a wall-clock assertion."""
    return run([tool("echoscu"), "-to", "5", "-ta", "5", "-td", "5", "-aet", calling, "-aec", "ARCADE",
                "127.0.0.1", str(port)], timeout=30)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def half_sent_associate_rq(port: int, source: str = "127.0.0.1") -> socket.socket:
    """The attack of the issue: a PDU header declaring a 500,000-byte A-ASSOCIATE-RQ, 62 bytes of
    it, then nothing (the connection is held open)."""
    sock = connect(port, source)
    sock.sendall(bytes([ASSOCIATE_RQ, 0]) + (500_000).to_bytes(4, "big") + b"\x00" * 62)
    return sock


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the SCP closed (or reset) ``sock`` within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _close(socks):
    for sock in socks:
        sock.close()


def test_twelve_half_sent_pdus_deny_no_one_and_a_real_cine_is_stored(scp, rubo):
    assert scp.settings.scp.max_associations == 10
    assert scp.settings.scp.network_timeout_s == 30
    held = [half_sent_associate_rq(scp.port) for _ in range(12)]  # from the modality's own address
    try:
        time.sleep(0.5)  # every one accepted and waiting for the rest of its PDU
        echo = echoscu_quick(scp.port)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        sent = storescu(scp.port, rubo, extra=["-xy", "-to", "10", "-ta", "10", "-td", "30"])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert all(not closed_by_peer(s, 0.05) for s in held)  # still held: the deadline is 30 s
    finally:
        _close(held)
    with scp.sessions() as s:
        assert [i.sop_instance_uid for i in s.scalars(select(Instance))] == [
            __import__("pydicom").dcmread(rubo, stop_before_pixels=True).SOPInstanceUID]


@pytest.fixture
def quick_scp(settings, sessions):
    """The SCP with a 2-second network timeout, so deadlines show within a test."""
    from tests.dicom.conftest import running_scp

    settings.scp.network_timeout_s = 2
    with running_scp(settings, sessions) as scp:
        yield scp


def test_a_half_sent_pdu_is_dropped_at_the_deadline_and_logged_without_data(quick_scp, caplog):
    caplog.set_level(logging.INFO, logger="arcade_pacs")
    sock = half_sent_associate_rq(quick_scp.port, source="127.0.0.2")
    try:
        assert closed_by_peer(sock, within=15)
    finally:
        sock.close()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("arcade_pacs.receive")]
    dropped = [line for line in lines if "127.0.0.2" in line and "deadline" in line]
    assert dropped, lines
    assert "500000" in dropped[0]
    assert "A-ASSOCIATE-RQ" in dropped[0]


def test_a_stalled_p_data_after_association_is_dropped_by_the_deadline(quick_scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.12.1", ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", quick_scp.port, ae_title="ARCADE")
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    # A P-DATA-TF PDU within the announced maximum, a tenth of it sent, then silence.
    raw.sendall(bytes([P_DATA_TF, 0]) + (16000).to_bytes(4, "big") + b"\x00" * 1600)
    wait_until(lambda: not assoc.is_established, timeout=20, message="association ended by the SCP")
    assert echoscu_quick(quick_scp.port).returncode == 0


def test_sixty_idle_connections_do_not_block_echoes(scp):
    idle = []
    try:
        for _ in range(60):
            try:
                idle.append(connect(scp.port, source="127.0.0.3"))
            except OSError:
                break
        time.sleep(0.5)
        for _ in range(3):
            echo = echoscu_quick(scp.port)
            assert echo.returncode == 0, echo.stdout + echo.stderr
    finally:
        _close(idle)


def test_connections_per_peer_address_are_bounded_and_the_surplus_logged(scp, caplog):
    caplog.set_level(logging.INFO, logger="arcade_pacs")
    limit = scp.settings.scp.peer_connection_limit()
    assert limit == 20  # the default: twice max_associations
    held = [connect(scp.port, source="127.0.0.4") for _ in range(limit)]
    try:
        time.sleep(0.3)
        assert not any(closed_by_peer(s, 0.05) for s in held)
        surplus = connect(scp.port, source="127.0.0.4")
        assert closed_by_peer(surplus, within=5)  # closed at once, before any read
        surplus.close()
        assert echoscu_quick(scp.port).returncode == 0  # another address is served
    finally:
        _close(held)
    refused = [r.getMessage() for r in caplog.records if "127.0.0.4" in r.getMessage()]
    assert any("max_connections_per_peer" in line for line in refused), refused
    # Once the held connections are gone, the address is served again.
    wait_until(lambda: echoscu_quick(scp.port).returncode == 0, timeout=20, message="echo after close")


def test_only_established_associations_count_against_max_associations(settings, sessions):
    from tests.dicom.conftest import running_scp

    settings.scp.max_associations = 2
    with running_scp(settings, sessions) as scp:
        pending = [half_sent_associate_rq(scp.port, source="127.0.0.5") for _ in range(5)]
        established = []
        try:
            for _ in range(2):
                ae = AE(ae_title="MODALITY")
                ae.add_requested_context("1.2.840.10008.1.1")
                established.append(ae.associate("127.0.0.1", scp.port, ae_title="ARCADE"))
            assert all(a.is_established for a in established)  # five pending connections took no slot
            out = echoscu_quick(scp.port)
            assert out.returncode != 0
            assert "Local Limit Exceeded" in out.stdout + out.stderr  # rejected-transient (PS3.8 9.3.4)

            def rejected():
                with scp.sessions() as s:
                    return s.scalars(select(Association).where(Association.outcome == "rejected")).all()

            audited = wait_until(rejected, timeout=10, message="the rejection audited")
            assert [a.reason.split(":")[0] for a in audited] == ["local limit exceeded"]
        finally:
            for assoc in established:
                assoc.release()
            _close(pending)
        wait_until(lambda: echoscu_quick(scp.port).returncode == 0, timeout=20, message="a slot is free again")
