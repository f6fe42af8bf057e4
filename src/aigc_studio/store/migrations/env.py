"""Alembic environment: runs the revisions in ``versions/`` on the connection :meth:`Database.migrate` passes.

:meth:`aigc_studio.store.db.Database.migrate` opens the connection (and takes the migration lock), puts it in
``config.attributes["connection"]`` and calls ``alembic upgrade head``; nothing here opens its own.
"""

from __future__ import annotations

from alembic import context

from aigc_studio.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through aigc_studio.store.Database.migrate() or `aigc db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
