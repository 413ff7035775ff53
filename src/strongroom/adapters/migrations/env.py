"""Alembic environment: runs migrations on the connection `SqlMetadataStore` passes in.

There is no ini file and no URL: the store hands over a connection that is already inside its
write transaction (``config.attributes["connection"]``), so every revision runs in that one
transaction and concurrent openers serialize on the store's write lock.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from strongroom.adapters._sql import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection) or context.is_offline_mode():
    raise RuntimeError(
        "strongroom migrations run only through SqlMetadataStore.open(), "
        "which supplies the connection"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode recreates the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
