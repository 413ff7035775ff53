"""Retention: holds, the blob claims that make garbage collection safe beside writers, and the
indexes that answer "does any record still use this blob?".

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.

- ``holds``: one row per hold (a run's or a project's), its body the `Hold` record, bound into
  the audit chain like every record (binding type ``hold``); ``run_id`` / ``project`` /
  ``active`` are copies of the body's fields for the "is this run held?" lookup that every
  deletion makes inside its own transaction.
- ``gc_blob_claims``: a blob garbage collection is deleting (``state`` ``claimed``) or has
  deleted (``deleted``). A claim is taken in a write transaction that finds no record using
  the blob; every write of a record that uses a blob looks its digest up here in its own
  transaction and refuses (`Conflict`, reason ``blob_reclaimed``) while a claim exists, so no
  record can come to point at a blob being deleted (docs/retention.md).
- indexes on the blob digest of ``snapshots``, ``artifacts`` and ``catalog_objects``.

PostgreSQL roles: the application role needs SELECT, INSERT, UPDATE, DELETE on ``holds`` and
``gc_blob_claims`` (its default privileges give SELECT, INSERT only); deleting runs needs
DELETE on the append-only tables (docs/retention.md, "Roles").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = 36
_NAME = 128
_DIGEST = 64


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.types.TypeEngine[Any]:
    """Fixed-width ISO-8601 UTC text on SQLite, timestamptz on PostgreSQL."""
    return sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


_BLOB_INDEXES = (
    ("ix_snapshots_sha256", "snapshots"),
    ("ix_artifacts_sha256", "artifacts"),
    ("ix_catalog_objects_sha256", "catalog_objects"),
)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("hold_id", _key(_ID), nullable=False),
        sa.Column("run_id", _key(_ID), nullable=True),
        sa.Column("project", _key(_NAME), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    op.create_index("ix_holds_run_id_active", "holds", ["run_id", "active"])
    op.create_index("ix_holds_project_active", "holds", ["project", "active"])
    op.create_table(
        "gc_blob_claims",
        sa.Column("sha256", sa.String(_DIGEST), nullable=False),
        sa.Column("claim_id", _key(_ID), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_gc_blob_claims_state_updated", "gc_blob_claims", ["state", "updated_at"])
    for name, table in _BLOB_INDEXES:
        op.create_index(name, table, ["sha256"])


def downgrade() -> None:
    for name, table in reversed(_BLOB_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_gc_blob_claims_state_updated", table_name="gc_blob_claims")
    op.drop_table("gc_blob_claims")
    op.drop_index("ix_holds_project_active", table_name="holds")
    op.drop_index("ix_holds_run_id_active", table_name="holds")
    op.drop_table("holds")
