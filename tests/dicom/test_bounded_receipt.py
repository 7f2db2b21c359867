"""Bounded receipt over real associations: data sets arrive as files under the storage root,
the size limit holds while receiving, PDUs are bounded, a full disk refuses associations, and
temporary files a crash left are swept at start."""

import threading
import time

import numpy as np
import pytest
from pynetdicom import AE
from sqlalchemy import select

from arcade_pacs.bench.peers import free_port
from arcade_pacs.db.tables import Instance
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.store.files import INCOMING_DIR, disk_space, free_space_ok
from tests.dicom.test_scp import echoscu, scu_store, storescu
from tests.factory import real_frame, xa_dataset

pytestmark = [pytest.mark.network]


def _largest_incoming_file(folder, stop, sizes):
    while not stop.is_set():
        for path in folder.glob("*"):
            try:
                sizes.append((path.parent == folder, path.stat().st_size))
            except OSError:
                pass
        time.sleep(0.002)


def test_data_sets_arrive_under_the_storage_root_and_the_limit_holds_while_receiving(scp, rubo):
    incoming = scp.settings.storage.root / INCOMING_DIR
    scp.store.receipt.max_bytes = scp.settings.scp.max_instance_bytes = 1_000_000
    big = xa_dataset(np.random.default_rng(1).integers(0, 255, (6, 1024, 1024), dtype=np.uint8))  # 6 MB
    stop, sizes = threading.Event(), []
    watcher = threading.Thread(target=_largest_incoming_file, args=(incoming, stop, sizes))
    watcher.start()
    try:
        status = scu_store(scp.port, big)
    finally:
        stop.set()
        watcher.join()
    assert status == 0xA700
    assert sizes, "nothing was ever received into <root>/.incoming"
    assert max(size for _, size in sizes) <= 1_000_000  # never more than the limit on disk
    small = xa_dataset(real_frame(rubo, 0))
    assert scu_store(scp.port, small) == 0x0000
    with scp.sessions() as s:
        (row,) = s.scalars(select(Instance)).all()
        assert row.sop_instance_uid == small.SOPInstanceUID
    assert list(incoming.iterdir()) == []  # committed by rename, refusals removed


def test_the_scp_announces_max_pdu_16384_as_dcmtk_and_orthanc(scp):
    assert scp.settings.scp.max_pdu == 16384
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == 16384
    assoc.release()


def test_a_pdu_longer_than_announced_closes_the_association_before_its_body(scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    # A P-DATA-TF PDU declaring 1 GiB: the SCP must not wait for (or buffer) its body.
    started = time.monotonic()
    raw.sendall(b"\x04\x00" + (1 << 30).to_bytes(4, "big") + b"\x00" * 4096)
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established
    assert time.monotonic() - started < 10
    assert echoscu(scp.port).returncode == 0


def test_below_the_free_disk_watermark_associations_are_refused_with_a_reason(scp, rubo):
    space = disk_space(scp.settings.storage.root, 0)
    scp.settings.storage.min_free_mb = space.free_mb * 10  # more than the disk will ever have
    assert not free_space_ok(scp.settings.storage.root, scp.settings.storage.min_free_mb)
    assert "below the watermark" in disk_space(scp.settings.storage.root, scp.settings.storage.min_free_mb).reason
    out = storescu(scp.port, rubo, extra=["-xy"])
    assert out.returncode != 0
    text = (out.stdout + out.stderr).lower()
    assert "rejected transient" in text, text
    assert "reason: temporary congestion" in text, text
    scp.settings.storage.min_free_mb = 0
    assert storescu(scp.port, rubo, extra=["-xy"]).returncode == 0


def test_c_store_within_an_association_gets_a700_when_the_disk_fills_meanwhile(scp, rubo):
    ae = AE(ae_title="MODALITY")
    ds = xa_dataset(real_frame(rubo, 0))
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    scp.settings.storage.min_free_mb = disk_space(scp.settings.storage.root, 0).free_mb * 10
    response = assoc.send_c_store(ds)
    assoc.release()
    assert response.Status == 0xA700
    assert "watermark" in response.ErrorComment


def test_temporary_files_left_by_a_crash_are_swept_at_start(settings, sessions, tmp_path):
    root = settings.storage.root
    (root / INCOMING_DIR).mkdir(parents=True)
    orphan_receipt = root / INCOMING_DIR / "recv-abc.dcm"
    orphan_receipt.write_bytes(b"half a data set")
    series = root / "1.2.3" / "1.2.3.4"
    series.mkdir(parents=True)
    orphan_write = series / ".incoming-xyz.tmp"
    orphan_write.write_bytes(b"half a file")
    kept = series / "1.2.3.4.5.dcm"
    kept.write_bytes(b"a committed instance")
    settings.scp.port, settings.scp.host = free_port(), "127.0.0.1"
    contexts = load_contexts()
    server = start_scp(make_scp_ae(settings, contexts), settings, StoreContext(settings, sessions, contexts))
    try:
        assert not orphan_receipt.exists()
        assert not orphan_write.exists()
        assert kept.read_bytes() == b"a committed instance"
    finally:
        server.shutdown()


def test_a_deflate_bomb_is_refused_without_inflating_it_in_memory(scp, tmp_path, rubo):
    import resource

    from tests.dicom.test_scp import scu_store as send_file
    from tests.factory import deflate_bomb

    scp.settings.scp.max_inflated_bytes = 50 * 2**20
    bomb = tmp_path / "bomb.dcm"
    ds = deflate_bomb(bomb, 400 * 2**20)
    assert bomb.stat().st_size < 2 * 2**20  # 400 MB of data set in a file under 2 MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = send_file(scp.port, str(bomb), sop_class=ds.SOPClassUID, transfer_syntax="1.2.840.10008.1.2.1.99")
    assert status == 0xA700
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 150_000  # KB
    assert list((scp.settings.storage.root / INCOMING_DIR).iterdir()) == []
    small = tmp_path / "small.dcm"
    deflate_bomb(small, 1 * 2**20)  # 1 MB inflated: accepted
    assert send_file(scp.port, str(small), sop_class=ds.SOPClassUID, transfer_syntax="1.2.840.10008.1.2.1.99") == 0
