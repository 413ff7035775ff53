"""Actors: the people registered in a vault with their public keys (issue 14, identity).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/registry_tables.py``. Revoking an actor rewrites
its row's body (as revoking an approval does), so the table has no append-only trigger; every
write of it is bound into the audit chain, which `verify` checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.types.TypeEngine[Any]:
    """Fixed-width ISO-8601 UTC text on SQLite, timestamptz on PostgreSQL."""
    return sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "actors",
        sa.Column("key_id", _key(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("added_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_actors"),
    )
    op.create_index("ix_actors_added_at", "actors", ["added_at", "key_id"])
    op.create_index("ix_actors_name", "actors", ["name", "key_id"])


def downgrade() -> None:
    op.drop_table("actors")
