"""DICOM TLS (PS3.15 B.9) with certificates the test makes: DCMTK's storescu +tls against the
SCP (client certificates verified against a CA), plain and untrusted clients refused, and the
plugin's sender reaching DCMTK's storescp over TLS."""

import socket
import time
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from sqlalchemy import select

from arcade_pacs.bench.peers import StoreSCP, free_port, run, tool
from arcade_pacs.db.tables import Instance
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.settings import Destination, DestinationTls
from tests.certs import make_certificates

pytestmark = [pytest.mark.network]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["verify-clients"])
def tls_scp(request, settings, sessions, certs):
    settings.scp.port, settings.scp.host = free_port(), "127.0.0.1"
    settings.scp.tls.certificate, settings.scp.tls.private_key = certs.server_cert, certs.server_key
    settings.scp.tls.ca_certificates = certs.ca
    settings.scp.tls.handshake_timeout_s = 2
    contexts = load_contexts()
    server = start_scp(make_scp_ae(settings, contexts), settings, StoreContext(settings, sessions, contexts))
    yield SimpleNamespace(port=settings.scp.port, settings=settings, sessions=sessions)
    server.shutdown()


def storescu_tls(port, path, *tls):
    return run([tool("storescu"), *tls, "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(port), str(path)])


def stored(scp):
    with scp.sessions() as s:
        return len(s.scalars(select(Instance)).all())


def test_storescu_over_tls_with_a_trusted_client_certificate_is_stored(tls_scp, certs, rubo):
    out = storescu_tls(tls_scp.port, rubo, "+tls", str(certs.client_key), str(certs.client_cert), "+cf", str(certs.ca))
    assert out.returncode == 0, out.stdout + out.stderr
    assert stored(tls_scp) == 1


@pytest.mark.parametrize("client", ["plain", "plain-echo", "no-certificate", "untrusted-certificate"])
def test_clients_without_a_trusted_tls_certificate_are_refused(tls_scp, certs, rubo, client):
    if client == "plain":
        out = storescu_tls(tls_scp.port, rubo)
    elif client == "plain-echo":
        out = run([tool("echoscu"), "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(tls_scp.port)])
    elif client == "no-certificate":
        out = storescu_tls(tls_scp.port, rubo, "+tla", "+cf", str(certs.ca))
    else:
        out = storescu_tls(tls_scp.port, rubo, "+tls", str(certs.rogue_key), str(certs.rogue_cert), "+cf", str(certs.ca))
    assert out.returncode != 0
    assert stored(tls_scp) == 0
    # The port still serves trusted clients.
    ok = storescu_tls(tls_scp.port, rubo, "+tls", str(certs.client_key), str(certs.client_cert), "+cf", str(certs.ca))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_client_that_never_handshakes_does_not_block_others(tls_scp, certs, rubo):
    silent = socket.create_connection(("127.0.0.1", tls_scp.port))
    try:
        started = time.monotonic()
        out = storescu_tls(tls_scp.port, rubo, "+tls", str(certs.client_key), str(certs.client_cert), "+cf", str(certs.ca))
        assert out.returncode == 0, out.stdout + out.stderr
        assert time.monotonic() - started < 30
    finally:
        silent.close()



def test_a_handshake_sent_a_byte_at_a_time_is_ended_at_its_deadline(tls_scp):
    """The handshake has a deadline, not only a timeout per read: a client that trickles its
    ClientHello (a byte a second, each read well within 2 s) is disconnected after 2 s (CPython
    applies the socket's timeout to the whole handshake; this keeps it so)."""
    client = socket.create_connection(("127.0.0.1", tls_scp.port))
    hello = bytes.fromhex("16030100c8010000c40303") + bytes(200)  # a TLS record header and a ClientHello start
    closed_after = None
    try:
        started = time.monotonic()
        for byte in hello[:12]:
            try:
                client.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            client.settimeout(1.0)
            try:
                if client.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except OSError:
                closed_after = time.monotonic() - started
                break
    finally:
        client.close()
    assert closed_after is not None, "the server kept a trickling handshake open for 12 s"


def _sr_file(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = pydicom.uid.generate_uid(), pydicom.uid.generate_uid(), "SR"
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def tls_storescp(tmp_path, certs):
    """DCMTK's storescp accepting TLS only, with a server certificate signed by the test CA."""
    tls = ("+tls", str(certs.server_key), str(certs.server_cert), "+cf", str(certs.ca))
    with StoreSCP(tmp_path / "pacs", notify=False, options=tls) as pacs:
        yield pacs


@pytest.mark.parametrize("mode", ["tls", "plain", "untrusted-server"])
def test_the_sender_reaches_a_tls_pacs_only_over_trusted_tls(settings, certs, tls_storescp, tmp_path, mode):
    tls = {
        "tls": DestinationTls(enabled=True, ca_certificates=certs.ca, certificate=certs.client_cert,
                              private_key=certs.client_key),
        "plain": DestinationTls(),
        "untrusted-server": DestinationTls(enabled=True, ca_certificates=certs.rogue_cert,
                                           certificate=certs.client_cert, private_key=certs.client_key),
    }[mode]
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=tls_storescp.port, tls=tls)]
    scu = StoreSCU(settings, load_contexts())
    outcome = scu.send(str(_sr_file(tmp_path)), "PACS", "127.0.0.1", tls_storescp.port)  # TLS found by address
    arrived = list(tls_storescp.folder.iterdir())
    if mode == "tls":
        assert outcome.ok, outcome
        assert len(arrived) == 1
    else:
        assert not outcome.ok
        assert outcome.error
        assert arrived == []
