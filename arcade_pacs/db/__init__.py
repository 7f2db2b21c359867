"""The database: one engine per process, sessions from one factory, schema by Alembic migrations.

SQLite (the default, a single file under ``var/``) runs in WAL mode with a busy timeout so the
SCP, the worker and the admin can share it; PostgreSQL is selected by the URL alone and is what
several processes or hosts share. The schema changes only by ``arcade-pacs db upgrade``
(:func:`migrate`); ``serve`` checks it is exactly the one this version knows
(:func:`schema_problem`) and refuses to start otherwise, so a process never writes to a schema
it was not made for, and an upgrade is a deliberate step, not a side effect of a restart.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """Create the process's engine (call once at start-up)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    from alembic import command

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


UPGRADE_COMMAND = "arcade-pacs db upgrade"


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration this version of the package ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (``None``: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_problem(engine: Engine) -> str | None:
    """Why this version must not run on the database's schema, naming the fix; ``None`` when it may."""
    from alembic.script import ScriptDirectory

    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return None
    if current is None:
        return f"the database has no schema yet: run `{UPGRADE_COMMAND}` first"
    known = {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current not in known:
        return (f"the database schema is at revision {current}, unknown to this version (head {head}): "
                "it was upgraded by a newer release; run that release, or restore a backup")
    return f"the database schema is at revision {current}, this version needs {head}: run `{UPGRADE_COMMAND}`"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """The session factory every component receives explicitly."""
    return sessionmaker(engine, expire_on_commit=False)
