"""Alembic environment: runs on the connection handed in by :func:`arcade_pacs.db.migrate`."""

from alembic import context

from arcade_pacs.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: build an engine from the configured URL
    from arcade_pacs.db import make_engine

    connection = make_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
