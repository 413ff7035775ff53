"""Small blobs kept as rows (`strongroom.ports.inline_blobs`): a put of a blob up to the inline
threshold is one short transaction instead of a file, its fsyncs and a separate commit.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Written by hand and frozen: plain SQLAlchemy types and raw DDL only, never the live table
definitions of ``_sql/tables.py``.

- ``inline_blobs``: the bytes (``data``: BLOB on SQLite, bytea on PostgreSQL) under their
  SHA-256 (``sha256``, bare lowercase hex, the primary key), their length and when they
  were first stored (``stored_at``: fixed-width ISO-8601 UTC text on SQLite, timestamptz on
  PostgreSQL; garbage collection's grace period reads it).
- Immutable like the tables of migration 0004: UPDATE and TRUNCATE are refused by triggers
  with the message ``strongroom: inline_blobs is append-only``; DELETE only through 0004's
  door (garbage collection: ``SET LOCAL strongroom.allow_delete = 'inline_blobs'`` on
  PostgreSQL, the ``strongroom_allow_delete_inline_blobs`` marker table on SQLite).

PostgreSQL roles: the application role needs SELECT, INSERT on ``inline_blobs`` (what its
default privileges give); garbage collection, like every deletion, runs as a role granted
DELETE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from strongroom.errors import UnsupportedFormat

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "inline_blobs"
_MESSAGE = f"strongroom: {_TABLE} is append-only"
_PG_FUNCTION = "strongroom_append_only"  # created by migration 0004
_SQLITE_BYPASS = f"strongroom_allow_delete_{_TABLE}"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise UnsupportedFormat(
            f"no inline blob table for SQL dialect {dialect!r}: strongroom supports SQLite and "
            "PostgreSQL",
            operation="migrate",
            backend=dialect,
            reason="unsupported_dialect",
        )
    op.create_table(
        _TABLE,
        sa.Column(
            "sha256",
            sa.String(64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "stored_at",
            sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("sha256"),
    )
    if dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_update BEFORE UPDATE ON {_TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_delete BEFORE DELETE ON {_TABLE} "
            "WHEN NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' "
            f"AND name = '{_SQLITE_BYPASS}') "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )


def downgrade() -> None:
    """Refused while the table holds blobs: dropping it would lose them (export the vault
    first, or keep this revision)."""
    held = op.get_bind().execute(sa.text(f"SELECT count(*) FROM {_TABLE}")).scalar_one()
    if held:
        raise UnsupportedFormat(
            f"cannot downgrade below migration 0012: {held} small blobs are kept in "
            f"{_TABLE} and would be lost; export the vault first (strongroom export)",
            operation="migrate",
            reason="would_lose_blobs",
            blobs=int(held),
        )
    op.drop_table(_TABLE)  # its triggers go with it
