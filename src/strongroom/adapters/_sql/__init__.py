"""SQL adapter of the records port: SQLAlchemy Core tables, queries and the one error mapping.

Dialect-neutral on purpose: the same statements run on SQLite and PostgreSQL. A backend module
(``_sqlite``, ``_postgres``) only builds the engine (the ``_create_engine`` hook) and
decides how a transaction begins.

Sync engine, one thread hop per transaction: the store's API is async, but each transaction
(BEGIN, its statements, COMMIT) is a synchronous `Operation` on a sync `Connection`, run
whole on a worker thread. An async engine pays a loop-to-thread round trip per statement on
SQLite (aiosqlite runs every call on its own thread: 8-13 hops, ~1.2 ms for a trivial
transaction, against ~0.2 ms for one hop). PostgreSQL follows the same model
with psycopg 3's sync driver, so the record-kind modules stay dialect-neutral.

Modules: ``columns`` (column types and ``metadata``), ``tables`` and ``registry_tables``
(the tables, both imported here so ``metadata`` holds the whole schema), ``schema`` (Alembic
revisions), ``errors`` (driver errors -> strongroom errors), ``base`` (engine, lifecycle,
transactions), ``runs``, ``logs``, ``catalog`` and ``registry`` (one group of record kinds
each) and ``store`` (`SqlMetadataStore`).
"""

from __future__ import annotations

from strongroom.adapters._cursor import decode_run_cursor, encode_run_cursor
from strongroom.adapters._sql import registry_tables as registry_tables
from strongroom.adapters._sql.base import AnyRow, Operation
from strongroom.adapters._sql.columns import (
    NAMING_CONVENTION,
    UtcTimestamp,
    format_timestamp,
    metadata,
)
from strongroom.adapters._sql.errors import map_db_errors
from strongroom.adapters._sql.run_index import run_index_statements
from strongroom.adapters._sql.runs import _run_row as _run_row  # benchmarks/run_index.py
from strongroom.adapters._sql.schema import MIGRATIONS_DIR, schema_heads
from strongroom.adapters._sql.store import SqlMetadataStore
from strongroom.adapters._sql.tables import (
    artifact_tags_table,
    artifacts_table,
    audit_checkpoints_table,
    audit_entries_table,
    catalog_objects_table,
    log_entries_table,
    log_refs_table,
    namespaces_table,
    providers_table,
    runs_table,
    snapshots_table,
)

__all__ = [
    "MIGRATIONS_DIR",
    "NAMING_CONVENTION",
    "AnyRow",
    "Operation",
    "SqlMetadataStore",
    "UtcTimestamp",
    "artifact_tags_table",
    "artifacts_table",
    "audit_checkpoints_table",
    "audit_entries_table",
    "catalog_objects_table",
    "decode_run_cursor",
    "encode_run_cursor",
    "format_timestamp",
    "log_entries_table",
    "log_refs_table",
    "map_db_errors",
    "metadata",
    "namespaces_table",
    "providers_table",
    "run_index_statements",
    "runs_table",
    "schema_heads",
    "snapshots_table",
]
