"""The Alembic migrations go up and down."""

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
    engine.dispose()
