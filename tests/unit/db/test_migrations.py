"""The Alembic migrations go up and down."""

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from arcade_pacs.db import MIGRATIONS, make_engine, migrate


def alembic(engine, *args):
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        args[0](cfg, *args[1:])


def test_association_audit_and_tta_views_migrate_both_ways(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("frame_scores")}
    assert {"window_original", "window_flipped"} <= columns
    assert "associations" in inspect(engine).get_table_names()
    alembic(engine, command.downgrade, "0003")
    inspector = inspect(engine)
    assert "associations" not in inspector.get_table_names()
    assert "window_original" not in {c["name"] for c in inspector.get_columns("frame_scores")}
    migrate(engine)
    assert "associations" in inspect(engine).get_table_names()
    engine.dispose()


def test_association_protocol_migrates_both_ways(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    assert "protocol" in {c["name"] for c in inspect(engine).get_columns("associations")}
    alembic(engine, command.downgrade, "0006")
    assert "protocol" not in {c["name"] for c in inspect(engine).get_columns("associations")}
    migrate(engine)
    assert "protocol" in {c["name"] for c in inspect(engine).get_columns("associations")}


def test_result_objects_migration_gives_every_report_its_sr_object_and_links_its_deliveries(tmp_path):
    """0008 on a database with reports and deliveries: each report gets an ``sr`` object (same UID,
    file and series), each delivery names it; downgrading drops them again."""
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    alembic(engine, command.upgrade, "0007")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO studies (id, study_instance_uid, last_received_at, needs_report, report_attempts) "
                          "VALUES (1, '1.2.3', '2026-01-01', 0, 0)"))
        for n in (1, 2):
            conn.execute(text("INSERT INTO reports (id, study_id, sop_instance_uid, series_instance_uid, path, present, "
                              f"n_instances, created_at) VALUES ({n}, 1, '1.2.3.{n}', '1.2.3.9', '/r/{n}.dcm', 1, 1, "
                              "'2026-01-01')"))
            conn.execute(text("INSERT INTO deliveries (report_id, destination, state, attempts, next_attempt_at, "
                              f"queued_at, created_at) VALUES ({n}, 'pacs', 'sent', 1, '2026-01-01', '2026-01-01', "
                              "'2026-01-01')"))
    migrate(engine)
    with engine.connect() as conn:
        objects = conn.execute(text("SELECT report_id, kind, sop_class_uid, sop_instance_uid, series_instance_uid, path "
                                    "FROM result_objects ORDER BY report_id")).all()
        assert [tuple(o) for o in objects] == [
            (n, "sr", "1.2.840.10008.5.1.4.1.1.88.34", f"1.2.3.{n}", "1.2.3.9", f"/r/{n}.dcm") for n in (1, 2)]
        linked = conn.execute(text("SELECT d.report_id, o.report_id FROM deliveries d "
                                   "JOIN result_objects o ON o.id = d.object_id")).all()
        assert sorted(tuple(row) for row in linked) == [(1, 1), (2, 2)]
    alembic(engine, command.downgrade, "0007")
    inspector = inspect(engine)
    assert "result_objects" not in inspector.get_table_names()
    assert "object_id" not in {c["name"] for c in inspector.get_columns("deliveries")}
    engine.dispose()


def test_patient_key_migration_keeps_existing_studies_unkeyed_and_goes_both_ways(tmp_path):
    """0009 on a database with a study: the study stays, with no patient key (receipt reads it from
    the study's first stored header, ``receive.receipt.study_key``); the conflicts table comes and
    goes with it."""
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    alembic(engine, command.upgrade, "0008")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO studies (id, study_instance_uid, last_received_at, needs_report, report_attempts) "
                          "VALUES (1, '1.2.3', '2026-01-01', 0, 0)"))
    alembic(engine, command.upgrade, "0009")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT study_instance_uid, patient_key, patient_issuer_key FROM studies")).all()
    assert [tuple(r) for r in rows] == [("1.2.3", None, None)]
    assert "receipt_conflicts" in inspect(engine).get_table_names()
    alembic(engine, command.downgrade, "0008")
    inspector = inspect(engine)
    assert "receipt_conflicts" not in inspector.get_table_names()
    assert "patient_key" not in {c["name"] for c in inspector.get_columns("studies")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM studies")).scalar() == 1
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_job_alone_migrates_both_ways_and_existing_jobs_start_not_alone(database_url):
    """0010 on a database holding a job: the job gets ``alone`` false (its run, if any, is charged
    for a worker death only after a run alone); downgrading drops the column."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    alembic(engine, command.upgrade, "0009")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO studies (id, study_instance_uid, last_received_at, needs_report, report_attempts) "
                          "VALUES (1, '1.2.3', '2026-01-01', false, 0)"))
        conn.execute(text("INSERT INTO instances (id, study_id, sop_instance_uid, sop_class_uid, series_instance_uid, "
                          "transfer_syntax_uid, path, size_bytes, calling_aet, received_at) VALUES (1, 1, '1.2.4', "
                          "'1.2', '1.3', '1.2.840.10008.1.2.1', '/x', 1, 'T', '2026-01-01')"))
        conn.execute(text("INSERT INTO jobs (id, instance_id, state, attempts, created_at, available_at) "
                          "VALUES (1, 1, 'running', 1, '2026-01-01', '2026-01-01')"))
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT alone FROM jobs")).scalar_one() in (False, 0)
    alembic(engine, command.downgrade, "0009")
    assert "alone" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    migrate(engine)
    assert "alone" in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()
