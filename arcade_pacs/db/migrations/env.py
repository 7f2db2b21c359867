"""Alembic environment: runs on the connection handed in by :func:`arcade_pacs.db.migrate`."""

from alembic import context

from arcade_pacs.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: build an engine from the configured URL
    from arcade_pacs.db import make_engine

    connection = make_engine(context.config.get_main_option("sqlalchemy.url")).connect()

sqlite = connection.dialect.name == "sqlite"
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
if sqlite:
    # A batch operation recreates the table (copy, drop, rename); with foreign keys enforced, the
    # drop of a table that other rows reference fails. SQLite's documented procedure for such
    # changes (https://sqlite.org/lang_altertable.html#otheralter): keys off meanwhile, then checked.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
try:
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left {len(broken)} rows whose foreign keys point nowhere")
finally:
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
