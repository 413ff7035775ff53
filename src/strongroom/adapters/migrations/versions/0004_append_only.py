"""Append-only history: the database itself refuses UPDATE, DELETE and TRUNCATE of the chained
and immutable tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Written by hand and frozen: raw DDL per dialect, never the live table definitions of
``_sql/tables.py``. Adds triggers (and one PostgreSQL function) only, no table or column, so
``metadata`` and the drift test are unchanged.

Guarded tables: ``audit_entries``, ``audit_bindings``, ``audit_checkpoints``, ``log_entries``,
``snapshots``, ``artifacts``, ``artifact_tags``. INSERT is allowed; UPDATE (also the UPDATE of
an ``INSERT ... ON CONFLICT DO UPDATE``) and DELETE fail with the message
``strongroom: <table> is append-only``: on SQLite ``RAISE(ABORT, ...)`` (SQLITE_CONSTRAINT_TRIGGER),
on PostgreSQL SQLSTATE 23001 (restrict_violation); both are integrity errors, which the store
reports as `ValidationError` (reason ``constraint_violation``). TRUNCATE on PostgreSQL is
refused by a statement-level trigger (also when it arrives by ``TRUNCATE <parent> CASCADE``).

Defence in depth, not a wall: it stops an application bug, an accident or a hand-run UPDATE.
Whoever owns the database can drop the triggers (``DROP TRIGGER``, ``ALTER TABLE ... DISABLE
TRIGGER``, a superuser's ``session_replication_role = replica``, editing the SQLite file);
``strongroom verify`` recomputes the hash chains and still finds the edit. On PostgreSQL the
role setup below also takes the privileges to UPDATE/DELETE/TRUNCATE or drop the triggers
away from the application role, so the triggers are only the second line there.

Deliberate deletion (a future retention feature), DELETE only, one table, one transaction;
UPDATE is never allowed:

- PostgreSQL: ``SET LOCAL strongroom.allow_delete = '<table>'`` in the deleting transaction
  (read with ``current_setting('strongroom.allow_delete', true)``; SET LOCAL it again to the next
  table; it ends with the transaction). It needs DELETE privilege, which the application role
  below does not have on these tables: run retention as the owner or a dedicated role.
- SQLite has no session variables, and a trigger of a main-database table cannot see a TEMP
  table (it resolves every name in ``main``: "no such table: main.x"; ``temp.x`` is refused when
  the trigger is created), and a permanent bypass table would be schema the drift test does not
  know. So the deleting transaction creates an empty marker table
  ``strongroom_allow_delete_<table>`` in ``main``, deletes, and drops the marker before COMMIT
  (SQLite DDL is transactional, and its one writer at a time means no other transaction ever
  sees the marker); the DELETE trigger's WHEN clause looks the marker up in ``sqlite_master``::

      BEGIN IMMEDIATE;
      CREATE TABLE strongroom_allow_delete_snapshots (x INTEGER);
      DELETE FROM snapshots WHERE ...;
      DROP TABLE strongroom_allow_delete_snapshots;
      COMMIT;

  A marker left behind by a committed transaction would keep that table's DELETE open (and show
  up as an unknown table in the schema): always drop it in the same transaction.

Known gaps (SQLite): ``INSERT OR REPLACE`` / ``REPLACE INTO`` deletes the old row without firing
DELETE triggers unless ``PRAGMA recursive_triggers = ON`` (strongroom never uses REPLACE; its
upserts are ``ON CONFLICT DO UPDATE``, which the UPDATE trigger refuses). ``DROP TABLE`` drops a
table's triggers with it: a later migration that rebuilds one of these tables (SQLite batch
mode copies, drops and renames) must create its triggers again.

PostgreSQL roles (docs/security.md): the owner role runs the migrations (strongroom migrates on
open), the application role can read everything, insert everywhere, change only the mutable
tables, and owns nothing, so it can neither drop nor disable a trigger::

    -- 1. Once, as a superuser (or a role with CREATEROLE and CREATEDB):
    CREATE ROLE strongroom_owner LOGIN PASSWORD '...';
    CREATE ROLE strongroom_app LOGIN PASSWORD '...';
    CREATE DATABASE strongroom OWNER strongroom_owner;
    -- connected to database strongroom:
    ALTER SCHEMA public OWNER TO strongroom_owner;
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;

    -- 2. Open the vault once as strongroom_owner, which creates (later: migrates) the schema:
    --    strongroom --vault postgresql://strongroom_owner@HOST/strongroom --blobs URL init
    --    and again after every strongroom upgrade (the application role cannot migrate).

    -- 3. Connected to database strongroom as strongroom_owner (rerun after upgrades: new
    --    tables need their grants):
    REVOKE ALL ON DATABASE strongroom FROM PUBLIC;
    GRANT CONNECT ON DATABASE strongroom TO strongroom_app;
    GRANT USAGE ON SCHEMA public TO strongroom_app;
    GRANT SELECT ON alembic_version TO strongroom_app;
    GRANT SELECT, INSERT ON audit_entries, audit_bindings, audit_checkpoints, log_entries,
        snapshots, artifacts, artifact_tags, inline_blobs TO strongroom_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON runs, log_refs, providers, namespaces,
        catalog_objects, definition_versions, channel_pointers, channel_moves, approvals,
        actors, run_labels, run_metrics, holds, gc_blob_claims, step_claims TO strongroom_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO strongroom_app;

The application then connects as ``strongroom_app``; it is not a member of
``strongroom_owner`` and has neither TRUNCATE, TRIGGER nor REFERENCES privilege. No table uses a
sequence, so there is nothing to grant on sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from alembic import op

from strongroom.errors import UnsupportedFormat

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_TABLES: Final = (
    "audit_entries",
    "audit_bindings",
    "audit_checkpoints",
    "log_entries",
    "snapshots",
    "artifacts",
    "artifact_tags",
)

# PostgreSQL: one function for every guarded table, named by the trigger that calls it.
PG_FUNCTION: Final = "strongroom_append_only"
PG_CREATE_FUNCTION: Final = f"""
CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
            AND current_setting('strongroom.allow_delete', true) = TG_TABLE_NAME THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION USING
        MESSAGE = 'strongroom: ' || TG_TABLE_NAME || ' is append-only',
        DETAIL = TG_OP || ' refused by trigger ' || TG_NAME,
        ERRCODE = 'restrict_violation';
END
$$
"""

# SQLite: the marker table whose presence in sqlite_master opens one table's DELETE.
SQLITE_BYPASS_PREFIX: Final = "strongroom_allow_delete_"


def _message(table: str) -> str:
    return f"strongroom: {table} is append-only"


def _postgresql_upgrade() -> None:
    op.execute(PG_CREATE_FUNCTION)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
        )


def _postgresql_downgrade() -> None:
    for table in reversed(APPEND_ONLY_TABLES):
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute(f"DROP FUNCTION {PG_FUNCTION}()")


def _sqlite_upgrade() -> None:
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{_message(table)}'); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "WHEN NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' "
            f"AND name = '{SQLITE_BYPASS_PREFIX}{table}') "
            f"BEGIN SELECT RAISE(ABORT, '{_message(table)}'); END"
        )


def _sqlite_downgrade() -> None:
    for table in reversed(APPEND_ONLY_TABLES):
        op.execute(f"DROP TRIGGER {table}_no_delete")
        op.execute(f"DROP TRIGGER {table}_no_update")


def _unsupported(dialect: str) -> UnsupportedFormat:
    # strongroom runs on SQLite and PostgreSQL only (adapters.open_stores refuses the rest).
    return UnsupportedFormat(
        f"no append-only guards for SQL dialect {dialect!r}: strongroom supports SQLite and "
        "PostgreSQL",
        operation="migrate",
        backend=dialect,
        reason="unsupported_dialect",
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_upgrade()
    elif dialect == "sqlite":
        _sqlite_upgrade()
    else:
        raise _unsupported(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_downgrade()
    elif dialect == "sqlite":
        _sqlite_downgrade()
    else:
        raise _unsupported(dialect)
