"""Runs by their previous run: the index behind a run's successors (the runs that name it as
``previous_run_id``; the Control Room's run page lists them).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.

One nullable column on ``runs``, ``previous_run_id``, a copy of the body's field written with
the row by every run write from this revision on, and an index (previous_run_id, created_at,
run_id), so `RunQuery.previous_run_id` reads a run's successors oldest first as one index
range. ``verify`` compares the column with the body like the other copied columns.

Runs stored before this revision get the column from their bodies here, in one UPDATE
(``runs`` is not append-only): only a value that fits the column (36 characters) is copied;
anything longer is left NULL (a body like that was not written by strongroom, and verify
reports the difference).

PostgreSQL roles: no new table, so nothing to grant.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID_LENGTH = 36
_INDEX = "ix_runs_previous_created"


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("previous_run_id", _key(_ID_LENGTH), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        value = "(body::jsonb ->> 'previous_run_id')"
    else:
        value = "json_extract(body, '$.previous_run_id')"
    op.execute(
        f"UPDATE runs SET previous_run_id = {value} "  # constant text, no input
        f"WHERE {value} IS NOT NULL AND length({value}) <= {_ID_LENGTH}"
    )
    op.create_index(_INDEX, "runs", ["previous_run_id", "created_at", "run_id"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("previous_run_id")
