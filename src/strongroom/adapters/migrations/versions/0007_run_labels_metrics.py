"""Run labels and metrics: the index behind ``runs list --label k=v --where 'metrics.x < 2'
--sort metrics.x`` (issue 17).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.

Two tables, both derived from the run's body (its ``labels`` and ``metrics``) and rewritten
in the same transaction as every insert or update of the run:

- ``run_labels(run_id, key, value)``, primary key (run_id, key), index (key, value, run_id);
- ``run_metrics(run_id, key, value)`` (value a float), primary key (run_id, key), index
  (key, value, run_id): a metric filter or sort is one index range walked in order.

The body stays the record bound into the audit chain; a row of these tables edited by hand can
only hide a run from (or show it in) a filtered list, never change what ``runs show`` or
``verify`` report. Runs stored before this revision get their rows from their bodies (runs
written before labels existed have none, so the backfill normally writes nothing).

PostgreSQL roles: the application role changes these tables (a label removed, a metric
updated), so rerun step 3 of the role setup (migration 0004) after upgrading; the tables are in
its list of mutable tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "run_labels",
        sa.Column("run_id", _key(36), nullable=False),
        sa.Column("key", _key(64), nullable=False),
        sa.Column("value", _key(256), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_labels_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
    )
    op.create_index("ix_run_labels_key_value_run_id", "run_labels", ["key", "value", "run_id"])
    op.create_table(
        "run_metrics",
        sa.Column("run_id", _key(36), nullable=False),
        sa.Column("key", _key(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_metrics_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_metrics"),
    )
    op.create_index("ix_run_metrics_key_value_run_id", "run_metrics", ["key", "value", "run_id"])
    _backfill()


def _backfill() -> None:
    """Index rows for runs stored before this revision that carry labels or metrics."""
    conn = op.get_bind()
    runs = sa.table("runs", sa.column("run_id", sa.String()), sa.column("body", sa.Text()))
    labels = sa.table(
        "run_labels", sa.column("run_id"), sa.column("key"), sa.column("value", sa.String())
    )
    metrics = sa.table(
        "run_metrics", sa.column("run_id"), sa.column("key"), sa.column("value", sa.Float())
    )
    candidates = sa.select(runs.c.run_id, runs.c.body).where(
        sa.or_(runs.c.body.contains('"labels":'), runs.c.body.contains('"metrics":'))
    )
    label_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    for run_id, body in conn.execute(candidates):
        try:
            record = json.loads(body)
        except ValueError:
            continue  # a damaged body is verify's to report, not the migration's
        if not isinstance(record, dict):
            continue
        found = record.get("labels")
        if isinstance(found, dict):
            label_rows += [
                {"run_id": run_id, "key": k, "value": v}
                for k, v in found.items()
                if isinstance(v, str)
            ]
        found = record.get("metrics")
        if isinstance(found, dict):
            metric_rows += [
                {"run_id": run_id, "key": k, "value": float(v)}
                for k, v in found.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ]
    if label_rows:
        conn.execute(sa.insert(labels), label_rows)
    if metric_rows:
        conn.execute(sa.insert(metrics), metric_rows)


def downgrade() -> None:
    op.drop_table("run_metrics")
    op.drop_table("run_labels")
