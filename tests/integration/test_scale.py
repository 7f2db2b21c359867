"""Beyond one process: one ``scp``, three ``worker`` and one ``admin`` process on one PostgreSQL
database and one storage folder; 30 studies sent at once by 30 DCMTK storescu processes; one
worker SIGKILLed while it runs a job. Its claims are taken over after the lease, and still every
instance has exactly one result and every study exactly one SR at a DCMTK storescp.

The tiny test model keeps this about coordination, not inference speed.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from arcade_pacs.bench import peers
from tests.integration.reliability import Arrivals, admin_json, figures_line, make_studies, query, storescu, study_uid

pytestmark = [pytest.mark.network, pytest.mark.slow]

LEASE_S = 5
STUDIES = 30
TOKEN = "scale-test-token"


def test_one_scp_three_workers_one_admin_on_postgresql_with_a_worker_killed(
        tmp_path, pacs, rubo, tiny_model, start_plugin):
    files = make_studies(rubo, tmp_path / "modality", STUDIES)
    studies = {study_uid(f) for f in files}
    scp_port, admin_port = peers.free_port(), peers.free_port()
    with peers.postgres_database() as db:
        config = peers.write_config(tmp_path / "arcade.toml", peers.loopback_config(
            tmp_path, scp_port, admin_port, tiny_model, [peers.dimse_destination(pacs.port)],
            scp={"max_associations": 40}, database={"url": db}, admin={"token": TOKEN},
            pipeline={"study_quiet_seconds": 2, "lease_s": LEASE_S, "poll_interval_s": 1.0},
            outbox={"backoff_initial_s": 1, "backoff_cap_s": 2, "lease_s": LEASE_S}))
        peers.upgrade_database(config)
        procs = {}
        try:
            procs["scp"] = start_plugin(config, tmp_path / "scp.log", scp_port, None, role="scp", upgrade=False)
            procs["admin"] = start_plugin(config, tmp_path / "admin.log", None, admin_port, role="admin", upgrade=False)
            for n in range(3):
                procs[f"worker{n}"] = start_plugin(config, tmp_path / f"worker{n}.log", None, None, role="worker",
                                                   upgrade=False)
            peers.wait_until(lambda: all(f"worker {_host()}:{procs[f'worker{n}'].pid}" in (tmp_path / f"worker{n}.log").read_text()
                                   for n in range(3)), timeout=180, message="workers started")

            with ThreadPoolExecutor(max_workers=STUDIES) as pool:  # 30 associations at once
                acknowledged = list(pool.map(lambda f: storescu(scp_port, f), files))
            assert all(acknowledged)

            # SIGKILL worker0 the moment it holds a running job (mid-analysis).
            victim = procs["worker0"]
            owner = f"{_host()}:{victim.pid}:"

            def running_on_victim():
                return query(db, f"SELECT id FROM jobs WHERE state = 'running' AND worker LIKE '{owner}%'")

            held = peers.wait_until(running_on_victim, timeout=120, interval=0.05, message="a job on worker0")
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            killed_job = held[0][0]

            def finished():
                jobs = query(db, "SELECT state FROM jobs")
                sent = query(db, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0]
                return len(jobs) == STUDIES and {j[0] for j in jobs} == {"done"} and sent >= STUDIES

            started = time.monotonic()
            peers.wait_until(finished, timeout=600, interval=1, message="all analysed and every SR sent")
            time.sleep(LEASE_S + 3)  # a second SR or send, if any were coming, would come now

            results = query(db, "SELECT instance_id, count(*) FROM results GROUP BY instance_id")
            assert len(results) == STUDIES
            assert all(n == 1 for _, n in results)  # each analysed result once
            (attempts, worker), = query(db, f"SELECT attempts, worker FROM jobs WHERE id = {killed_job}")
            # Taken over after the lease and not charged: the killed process ran two analysis threads,
            # so its death is not this job's fault (jobs.claim_job charges only a run that was alone).
            assert attempts == 1
            assert not worker.startswith(owner)  # taken over after the lease
            assert query(db, "SELECT count(*) FROM reports")[0][0] == STUDIES
            per_study = query(db, "SELECT study_id, count(*) FROM reports GROUP BY study_id")
            assert all(n == 1 for _, n in per_study)
            arrived = Arrivals.read(pacs.folder)
            assert arrived.studies() == studies
            assert all(len(arrived.distinct(s)) == 1 for s in studies)
            analysers = {w.rsplit(":", 1)[0] for (w,) in query(db, "SELECT worker FROM jobs")}
            assert len(analysers) >= 2  # the work was shared
            status = admin_json(admin_port, "/status")
            assert status["jobs"]["done"] == STUDIES
            assert status["deliveries"]["sent"] >= STUDIES
            print(figures_line("scale_3_workers_pg", studies=STUDIES, acknowledged=sum(acknowledged),
                               results=len(results), srs_per_study=1, receipts=arrived.receipts(),
                               duplicated_transmissions=arrived.duplicates(), killed_worker_job_attempts=attempts,
                               seconds_after_kill=round(time.monotonic() - started, 1)))
            for name in ("scp", "admin", "worker1", "worker2"):
                assert procs[name].poll() is None, name
        finally:
            for plugin in procs.values():
                plugin.close()


def _host() -> str:
    import socket

    return socket.gethostname()
