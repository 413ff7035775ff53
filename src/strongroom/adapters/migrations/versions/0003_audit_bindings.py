"""Audit bindings: the index of the records each audit entry vouches for.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_bindings",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("record_id", _key(400), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("log_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", "pos", name="pk_audit_bindings"),
    )
    op.create_index(
        "ix_audit_bindings_record_type_record_id_seq",
        "audit_bindings",
        ["record_type", "record_id", "seq"],
    )


def downgrade() -> None:
    op.drop_table("audit_bindings")
