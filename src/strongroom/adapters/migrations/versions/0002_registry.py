"""Registry records: definition versions, channel pointers and moves, approvals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/registry_tables.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.types.TypeEngine[Any]:
    """Fixed-width ISO-8601 UTC text on SQLite, timestamptz on PostgreSQL."""
    return sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


ID = 36
NAME = 128
DIGEST = 64
KIND = 32
LABEL = 64
CHANNEL = 16
SCOPE = 16


def upgrade() -> None:
    op.create_table(
        "definition_versions",
        sa.Column("kind", sa.String(KIND), nullable=False),
        sa.Column("definition_id", _key(NAME), nullable=False),
        sa.Column("version", _key(LABEL), nullable=False),
        sa.Column("digest", sa.String(DIGEST), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("published_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "definition_id", "digest", name="pk_definition_versions"),
        sa.UniqueConstraint(
            "kind",
            "definition_id",
            "version",
            name="uq_definition_versions_kind_definition_id_version",
        ),
    )
    op.create_index(
        "ix_definition_versions_kind_definition_id_published_at",
        "definition_versions",
        ["kind", "definition_id", "published_at"],
    )

    op.create_table(
        "channel_pointers",
        sa.Column("kind", sa.String(KIND), nullable=False),
        sa.Column("definition_id", _key(NAME), nullable=False),
        sa.Column("channel", sa.String(CHANNEL), nullable=False),
        sa.Column("digest", sa.String(DIGEST), nullable=False),
        sa.Column("move_id", _key(ID), nullable=False),
        sa.PrimaryKeyConstraint("kind", "definition_id", "channel", name="pk_channel_pointers"),
    )

    op.create_table(
        "channel_moves",
        sa.Column("move_id", _key(ID), nullable=False),
        sa.Column("kind", sa.String(KIND), nullable=False),
        sa.Column("definition_id", _key(NAME), nullable=False),
        sa.Column("channel", sa.String(CHANNEL), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("move_id", name="pk_channel_moves"),
    )
    op.create_index(
        "ix_channel_moves_kind_definition_id_at",
        "channel_moves",
        ["kind", "definition_id", "at", "move_id"],
    )

    op.create_table(
        "approvals",
        sa.Column("approval_id", _key(ID), nullable=False),
        sa.Column("scope", sa.String(SCOPE), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("approval_id", name="pk_approvals"),
    )
    op.create_index(
        "ix_approvals_scope_created_at", "approvals", ["scope", "created_at", "approval_id"]
    )
    op.create_index("ix_approvals_created_at", "approvals", ["created_at", "approval_id"])


def downgrade() -> None:
    for table in ("approvals", "channel_moves", "channel_pointers", "definition_versions"):
        op.drop_table(table)
