"""A hospital's worst day, with real processes: ``arcade-pacs serve`` killed with SIGKILL at each
point where work changes hands, a job that kills its worker every time, resends, and a PACS down
for longer than the old 150-s retry window. The modality is DCMTK's storescu, the PACS DCMTK's
storescp (``+uf``: every receipt is its own file, so a duplicate would show).

What must hold every time: every instance the modality got Success for is stored; every study
gets exactly one SR (one SOP Instance UID), a replacement only where content changed; the same
SR object may reach the PACS twice only when the process died between the PACS's
acknowledgement and the commit. ``pytest -s`` prints the figures the README's "Reliability"
table is copied from (lines starting with RELIABILITY).
"""

from __future__ import annotations

import time

import pydicom
import pytest

from arcade_pacs.bench.peers import StoreSCP, dimse_destination, free_port, loopback_config, wait_until, write_config
from arcade_pacs.core.faults import POINTS
from tests.factory import real_frame
from tests.integration.reliability import (
    Arrivals,
    echoscu,
    figures_line,
    make_studies,
    query,
    sop_uid,
    stored_instances,
    storescu,
    study_uid,
)

pytestmark = [pytest.mark.network, pytest.mark.slow]

LEASE_S = 4


def _config(tmp_path, scp_port, admin_port, pacs_port, model, faults=None, pipeline=None, outbox=None):
    sections = {"faults": faults} if faults else {}
    return write_config(tmp_path / "arcade.toml", loopback_config(
        tmp_path, scp_port, admin_port, model, [dimse_destination(pacs_port)],
        pipeline={"lease_s": LEASE_S, "poll_interval_s": 0.2, **(pipeline or {})},
        outbox={"backoff_initial_s": 1, "backoff_cap_s": 2, "lease_s": LEASE_S, "poll_interval_s": 0.2, **(outbox or {})},
        **sections))


SR_DELIVERIES = ("SELECT count(*) FROM deliveries d JOIN result_objects o ON o.id = d.object_id "
                 "WHERE o.kind = 'sr'")
"""Deliveries of SRs (a study's result images go to the PACS too, by default)."""


def _all_sent(db: str, studies: int):
    def check():
        reports = query(db, "SELECT count(*) FROM reports")[0][0]
        sent = query(db, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0]
        return reports >= studies and sent >= studies and not query(
            db, "SELECT id FROM deliveries WHERE state = 'pending'") and not query(
            db, "SELECT id FROM reports WHERE derived_pending")
    return check


def _no_phi(log_text: str) -> None:
    assert "Test^Synthetic" not in log_text
    assert "SYN001" not in log_text
    assert "19700101" not in log_text


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_point_loses_nothing_acknowledged_and_each_study_gets_one_sr(
        point, tmp_path, pacs, rubo, tiny_model, start_plugin):
    files = make_studies(rubo, tmp_path / "modality", 4)
    studies = {study_uid(f) for f in files}
    scp_port, admin_port = free_port(), free_port()
    marker = tmp_path / "killed"
    config = _config(tmp_path, scp_port, admin_port, pacs.port, tiny_model,
                     faults={"kill_at": point, "kill_once": str(marker)})
    db = f"sqlite:///{tmp_path / 'arcade.db'}"
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port)
    restarted = False
    try:
        acknowledged = {f: storescu(scp_port, f) for f in files}
        first_try = sum(acknowledged.values())
        wait_until(marker.exists, timeout=120, message=f"the fault at {point!r}")
        if point == "stored":
            # The SCP's own process died before answering: restart it, as systemd or Kubernetes
            # would, and let the modality send again what it got no Success for.
            assert plugin.wait(timeout=30) == -9
            assert not acknowledged[files[0]]
            plugin = start_plugin(config, log, scp_port, admin_port, upgrade=False)
            restarted = True
            for f in files:
                if not acknowledged[f]:
                    acknowledged[f] = storescu(scp_port, f)
        else:
            # The worker child died; the SCP and admin kept running (the supervisor restarts it).
            assert plugin.poll() is None
            assert echoscu(scp_port)
        assert all(acknowledged.values())
        wait_until(_all_sent(db, len(studies)), timeout=240, message="every study's SR sent")
        time.sleep(LEASE_S + 2)  # anything still to come (a second SR, a re-send) would come now
        stored = stored_instances(db)
        for f in files:
            assert sop_uid(f) in stored
            assert pydicom.dcmread(stored[sop_uid(f)]).SOPInstanceUID == sop_uid(f)
        arrived = Arrivals.read(pacs.folder)
        assert arrived.studies() == studies
        assert all(len(arrived.distinct(s)) == 1 for s in studies), arrived.by_study
        assert query(db, "SELECT count(*) FROM reports")[0][0] == len(studies)
        assert {r[0] for r in query(db, "SELECT state FROM jobs")} == {"done"}
        # Every run's result image was made once and sent, whatever died after the SR went out.
        assert query(db, "SELECT count(*) FROM result_objects WHERE kind = 'sc'")[0][0] == len(files)
        assert query(db, "SELECT count(*) FROM deliveries d JOIN result_objects o ON o.id = d.object_id "
                         "WHERE o.kind = 'sc' AND d.state = 'sent'")[0][0] == len(files)
        if point == "sent":
            assert arrived.duplicates() == 1  # the same SR object once more, never a different one
        else:
            assert arrived.duplicates() == 0
        print(figures_line(point, sent=len(files), acknowledged_first_try=first_try,
                           acknowledged=sum(acknowledged.values()),
                           stored=sum(sop_uid(f) in stored for f in files), lost=0, studies=len(studies),
                           srs_per_study=1, duplicated_transmissions=arrived.duplicates(), restarted_by_test=restarted))
    finally:
        plugin.close()
    _no_phi(log.read_text())


def test_a_job_that_kills_its_worker_every_time_fails_and_the_rest_keeps_running(
        tmp_path, pacs, rubo, tiny_model, start_plugin):
    files = make_studies(rubo, tmp_path / "modality", 3)
    poison = files[0]
    scp_port, admin_port = free_port(), free_port()
    config = _config(tmp_path, scp_port, admin_port, pacs.port, tiny_model,
                     faults={"kill_at": "analysis", "kill_key": sop_uid(poison)}, pipeline={"max_attempts": 2})
    db = f"sqlite:///{tmp_path / 'arcade.db'}"
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port)
    try:
        assert all(storescu(scp_port, f) for f in files)

        def poison_failed():
            assert plugin.poll() is None
            assert echoscu(scp_port)  # the SCP answers throughout
            return query(db, "SELECT state, attempts, last_error FROM jobs WHERE state = 'failed'")

        (state, attempts, error), = wait_until(poison_failed, timeout=240, interval=2, message="poison job failed")
        assert attempts == 2
        assert error.startswith("worker died during analysis")
        others = {study_uid(f) for f in files[1:]}
        wait_until(lambda: others <= Arrivals.read(pacs.folder).studies(), timeout=120, message="other SRs")
        assert plugin.poll() is None
        assert {r[0] for r in query(db, "SELECT state FROM jobs")} == {"done", "failed"}
    finally:
        plugin.close()
    assert "worker process" in log.read_text()
    assert "died" in log.read_text()
    _no_phi(log.read_text())


def test_resends_same_content_changes_nothing_new_content_replaces_the_sr(
        tmp_path, pacs, rubo, tiny_model, start_plugin):
    (original,) = make_studies(rubo, tmp_path / "modality", 1)
    scp_port, admin_port = free_port(), free_port()
    config = _config(tmp_path, scp_port, admin_port, pacs.port, tiny_model)
    db = f"sqlite:///{tmp_path / 'arcade.db'}"
    plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
    try:
        assert storescu(scp_port, original)
        wait_until(_all_sent(db, 1), timeout=120, message="first SR")
        assert storescu(scp_port, original)  # byte-identical resend: acknowledged
        time.sleep(4)  # > study_quiet_seconds + a reporter pass
        assert query(db, "SELECT attempts, state FROM jobs") == [(1, "done")]
        assert Arrivals.read(pacs.folder).receipts() == 1
        changed = pydicom.dcmread(original)
        changed.PixelData = real_frame(rubo, 80).tobytes()  # same UIDs, new content
        changed_path = tmp_path / "changed.dcm"
        changed.save_as(changed_path, enforce_file_format=True)
        assert storescu(scp_port, changed_path)
        wait_until(_all_sent(db, 2), timeout=120, message="replacement SR")
        srs = sorted((pydicom.dcmread(p) for p in pacs.folder.glob("SR*")), key=lambda d: d.InstanceNumber)
        assert [d.InstanceNumber for d in srs] == [1, 2]
        ref = srs[1].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == srs[0].SOPInstanceUID
        assert query(db, "SELECT generation FROM instances") == [(2,)]
    finally:
        plugin.close()


def test_a_pacs_down_longer_than_the_old_window_gets_everything_once_when_back(
        tmp_path, rubo, tiny_model, start_plugin):
    """Down for 160 s (the old policy gave up after ~150 s); back-off capped at 5 s here, the
    maximum age left at its default of 72 h."""
    files = make_studies(rubo, tmp_path / "modality", 3)
    studies = {study_uid(f) for f in files}
    pacs_port, scp_port, admin_port = free_port(), free_port(), free_port()
    config = _config(tmp_path, scp_port, admin_port, pacs_port, tiny_model,
                     outbox={"backoff_initial_s": 1, "backoff_cap_s": 5})
    db = f"sqlite:///{tmp_path / 'arcade.db'}"
    plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
    try:
        assert all(storescu(scp_port, f) for f in files)
        down_since = time.monotonic()
        wait_until(lambda: query(db, SR_DELIVERIES)[0][0] == 3, timeout=120, message="queued")
        time.sleep(max(0.0, 160 - (time.monotonic() - down_since)))
        rows = query(db, "SELECT state, attempts FROM deliveries")
        assert {r[0] for r in rows} == {"pending"}, rows
        assert min(r[1] for r in rows) > 5, rows
        with StoreSCP(tmp_path / "pacs", pacs_port, notify=False, unique_names=True) as pacs:
            wait_until(_all_sent(db, 3), timeout=60, message="SRs delivered after the outage")
            arrived = Arrivals.read(pacs.folder)
            assert arrived.studies() == studies
            assert arrived.receipts() == 3
            assert arrived.duplicates() == 0
            print(figures_line("outage_160s", studies=3, srs_delivered=arrived.receipts(), lost=0,
                               duplicated_transmissions=arrived.duplicates(),
                               attempts_before_recovery=max(r[1] for r in rows)))
    finally:
        plugin.close()
