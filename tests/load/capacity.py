"""Capacity: analysed instances per minute with K worker processes, and the database work per study.

    python -m tests.load.capacity --workers 1 --instances 12
    python -m tests.load.capacity --workers 2 --instances 12
    python -m tests.load.capacity --db-work

Throughput: a fresh PostgreSQL database is filled with ``--instances`` copies of the Rubo cine
(96 frames, JPEG Baseline, new UIDs each), then K ``arcade-pacs serve --role worker`` processes
with the shipped model drain the queue; the rate is counted from the jobs' own timestamps
(first start to last finish), so process start-up is not in it.

Database work: one study (one cine) taken through every step in this process (receipt's
record, claim, result, report, delivery to a DCMTK storescp) with every SQL statement counted
(SQLAlchemy's ``before_cursor_execute``), the rows each changed, and the bytes the tables grew.
Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import event, text

from arcade_pacs.bench.peers import Plugin, StoreSCP, postgres_database, upgrade_database, wait_until, write_config
from tests.project import PROJECT_ROOT, SHIPPED_MODEL

RUBO = PROJECT_ROOT.parent / "shared" / "data" / "dicom" / "xa_rubo0002_cine96_jpegbaseline.dcm"
TABLES = ("studies", "instances", "jobs", "results", "frame_scores", "reports", "deliveries")


def _copies(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(RUBO)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"cine{i:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def _settings(tmp: Path, db: str, destinations=()):
    from arcade_pacs.settings import Settings

    return Settings(storage={"root": tmp / "store"}, database={"url": db}, model={"path": SHIPPED_MODEL},
                    pipeline={"study_quiet_seconds": 0}, destinations=list(destinations))


def throughput(workers: int, instances: int) -> dict:
    from arcade_pacs.db import make_engine, make_session_factory
    from tests.ingest import ingest

    with tempfile.TemporaryDirectory() as tmp_, postgres_database() as db:
        tmp = Path(tmp_)
        config = write_config(tmp / "arcade.toml", {
            "storage": {"root": str(tmp / "store")}, "database": {"url": db},
            "model": {"path": str(SHIPPED_MODEL)}, "pipeline": {"study_quiet_seconds": 3600},
        })
        upgrade_database(config)
        settings = _settings(tmp, db)
        engine = make_engine(db)
        sessions = make_session_factory(engine)
        (tmp / "in").mkdir()
        for path in _copies(tmp / "in", instances):
            ingest(path, settings, sessions)
        procs = [Plugin.serve(config, tmp / f"worker{n}.log", None, None, role="worker") for n in range(workers)]
        try:
            def done():
                with engine.connect() as conn:
                    return conn.execute(text("SELECT count(*) FROM jobs WHERE state = 'done'")).scalar() == instances
            wait_until(done, timeout=3600, interval=2, message="queue drained")
            with engine.connect() as conn:
                first, last = conn.execute(text("SELECT min(started_at), max(finished_at) FROM jobs")).one()
                per_job = conn.execute(text("SELECT avg(seconds) FROM results")).scalar()
        finally:
            for proc in procs:
                proc.close()
            engine.dispose()
    span = (last - first).total_seconds()
    return {"measure": "throughput", "workers": workers, "instances": instances, "span_s": round(span, 1),
            "instances_per_minute": round(60 * instances / span, 2), "mean_analysis_s": round(per_job, 2),
            "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}


def db_work(studies: int = 5) -> dict:
    from arcade_pacs.db import make_engine, make_session_factory, migrate
    from arcade_pacs.dicom.conformance import load_contexts
    from arcade_pacs.jobs.worker import Worker
    from arcade_pacs.model.classifier import Classifier
    from arcade_pacs.model.holder import ModelHolder
    from arcade_pacs.report.reporter import report_ready_studies
    from arcade_pacs.send import outbox
    from arcade_pacs.send.scu import StoreSCU
    from arcade_pacs.settings import Destination
    from tests.ingest import ingest

    with tempfile.TemporaryDirectory() as tmp_, postgres_database() as db:
        tmp = Path(tmp_)
        pacs = StoreSCP(tmp / "pacs", notify=False)
        dest = Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=pacs.port)
        settings = _settings(tmp, db, [dest])
        engine = make_engine(db)
        migrate(engine)
        sessions = make_session_factory(engine)
        counts = {"statements": 0, "rows_changed": 0}
        stages: dict[str, dict] = {}

        @event.listens_for(engine, "after_cursor_execute")
        def count(conn, cursor, statement, params, context, executemany):
            counts["statements"] += 1
            if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount > 0:
                counts["rows_changed"] += cursor.rowcount

        def size():
            with engine.connect() as conn:
                return sum(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar() for t in TABLES)

        def stage(name, fn):
            before = dict(counts)
            fn()
            totals = stages.setdefault(name, {"statements": 0, "rows_changed": 0})
            for k in counts:
                totals[k] += counts[k] - before[k]

        (tmp / "in").mkdir()
        paths = _copies(tmp / "in", studies)
        bytes_before = size()
        worker = Worker(settings, sessions, ModelHolder(Classifier.load(SHIPPED_MODEL)))
        scu = StoreSCU(settings, load_contexts())
        for path in paths:
            stage("receive (study, instance, job)", lambda p=path: ingest(p, settings, sessions))
            stage("analyse (claim, result, 96 frame scores, complete)", worker.run_once)
            with sessions() as s:
                stage("report (claim study, SR, delivery)", lambda s=s: report_ready_studies(settings, session=s))
            with sessions() as s:
                stage("send (claim delivery, C-STORE, outcome)",
                      lambda s=s: outbox.send_next(scu, dest, "m", settings.outbox, session=s))
        worker.heartbeat.stop()
        grown = size() - bytes_before
        with engine.connect() as conn:
            rows = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() // studies for t in TABLES}
        engine.dispose()
        pacs.close()
    per = {name: {k: round(v / studies, 1) for k, v in totals.items()} for name, totals in stages.items()}
    return {"measure": "database work per study (one 96-frame cine, one destination)", "studies": studies,
            "statements": round(sum(v["statements"] for v in per.values()), 1),
            "rows_changed": round(sum(v["rows_changed"] for v in per.values()), 1),
            "rows_held": rows, "table_bytes_per_study": grown // studies, "stages": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--db-work", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = db_work() if args.db_work else throughput(args.workers, args.instances)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
