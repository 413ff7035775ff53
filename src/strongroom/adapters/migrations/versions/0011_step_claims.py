"""Step claims: which worker runs which attempt of a step (`strongroom.ports.step_claims`), so
that a step delivered twice by a broker runs and is recorded once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.

- ``step_claims``: one row per (run, step, attempt), inserted by the worker that takes the
  attempt (the primary key makes that a compare-and-set: a second worker finds the row);
  ``state`` ``running`` / ``finished`` / ``lost``; ``heartbeat_at`` moved by the holder;
  ``response`` the runner's response as JSON once finished. Operational state, not bound into
  the audit chain, deleted with its run.

PostgreSQL roles: the application role needs SELECT, INSERT, UPDATE, DELETE on
``step_claims`` (its default privileges give SELECT, INSERT only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = 36
_NAME = 128
_WORKER = 255


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.types.TypeEngine[Any]:
    """Fixed-width ISO-8601 UTC text on SQLite, timestamptz on PostgreSQL."""
    return sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "step_claims",
        sa.Column("run_id", _key(_ID), nullable=False),
        sa.Column("step_id", _key(_NAME), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("request_id", _key(_ID), nullable=False),
        sa.Column("worker", sa.String(_WORKER), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_at", _timestamp(), nullable=False),
        sa.Column("heartbeat_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step_id", "attempt"),
    )


def downgrade() -> None:
    op.drop_table("step_claims")
