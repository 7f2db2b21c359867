"""PostgreSQL as a peer: a new, empty database per run on the server the tests and CI use."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
"""The CI machine's PostgreSQL (trust authentication on loopback; `.ci/run` starts it when missing)."""


@contextlib.contextmanager
def postgres_database(server: str = POSTGRES_SERVER, prefix: str = "arcade_test") -> Iterator[str]:
    """A new, empty database on ``server`` for one run, dropped afterwards (its sessions ended); yields its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
