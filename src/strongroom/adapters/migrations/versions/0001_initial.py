"""Initial schema: runs, snapshots, artifacts (+ tags), logs, audit, catalog.

Revision ID: 0001
Revises:
Create Date: 2026-05-09

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.types.TypeEngine[Any]:
    """Fixed-width ISO-8601 UTC text on SQLite, timestamptz on PostgreSQL."""
    return sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def _seq() -> sa.types.TypeEngine[int]:
    """BIGINT; INTEGER on SQLite so that the primary key is the rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


ID = 36
NAME = 128
DIGEST = 64


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", _key(ID), nullable=False),
        sa.Column("project", _key(NAME), nullable=False),
        sa.Column("playbook_id", _key(NAME), nullable=True),
        sa.Column("actor", _key(NAME), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    for name, columns in (
        ("ix_runs_status_project_created", ["status", "project", "created_at", "run_id"]),
        ("ix_runs_status_project_updated", ["status", "project", "updated_at", "run_id"]),
        ("ix_runs_status_created", ["status", "created_at", "run_id"]),
        ("ix_runs_project_created", ["project", "created_at", "run_id"]),
        ("ix_runs_project_updated", ["project", "updated_at", "run_id"]),
        ("ix_runs_created", ["created_at", "run_id"]),
        ("ix_runs_updated", ["updated_at", "run_id"]),
        ("ix_runs_actor_created", ["actor", "created_at", "run_id"]),
        ("ix_runs_playbook_created", ["playbook_id", "created_at", "run_id"]),
    ):
        op.create_index(name, "runs", columns)

    op.create_table(
        "snapshots",
        sa.Column("run_id", _key(ID), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(DIGEST), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "revision", name="pk_snapshots"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_snapshots_run_id_runs"),
    )

    op.create_table(
        "artifacts",
        sa.Column("artifact_id", _key(ID), nullable=False),
        sa.Column("run_id", _key(ID), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("phase", _key(NAME), nullable=True),
        sa.Column("step", _key(NAME), nullable=True),
        sa.Column("namespace", _key(NAME), nullable=False),
        sa.Column("sha256", sa.String(DIGEST), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_artifacts_run_id_runs"),
    )
    op.create_index("ix_artifacts_run_id_artifact_id", "artifacts", ["run_id", "artifact_id"])
    op.create_index("ix_artifacts_namespace_artifact_id", "artifacts", ["namespace", "artifact_id"])

    op.create_table(
        "artifact_tags",
        sa.Column("artifact_id", _key(ID), nullable=False),
        sa.Column("tag", _key(NAME), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", "tag", name="pk_artifact_tags"),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.artifact_id"],
            name="fk_artifact_tags_artifact_id_artifacts",
        ),
    )
    op.create_index("ix_artifact_tags_tag_artifact_id", "artifact_tags", ["tag", "artifact_id"])

    op.create_table(
        "log_entries",
        sa.Column("run_id", _key(ID), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("phase", _key(NAME), nullable=True),
        sa.Column("timestamp", _timestamp(), nullable=False),
        sa.Column("hash", sa.String(DIGEST), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_log_entries"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_log_entries_run_id_runs"),
    )

    op.create_table(
        "log_refs",
        sa.Column("run_id", _key(ID), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_log_refs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_log_refs_run_id_runs"),
    )

    op.create_table(
        "audit_entries",
        sa.Column("seq", _seq(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(DIGEST), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entries"),
    )

    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", _seq(), autoincrement=False, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_audit_checkpoints"),
    )

    op.create_table(
        "providers",
        sa.Column("provider_id", _key(NAME), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name="pk_providers"),
    )

    op.create_table(
        "namespaces",
        sa.Column("namespace_id", _key(NAME), nullable=False),
        sa.Column("provider_id", _key(NAME), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("namespace_id", name="pk_namespaces"),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.provider_id"], name="fk_namespaces_provider_id_providers"
        ),
    )
    op.create_index(
        "ix_namespaces_provider_id_namespace_id", "namespaces", ["provider_id", "namespace_id"]
    )

    op.create_table(
        "catalog_objects",
        sa.Column("object_id", _key(ID), nullable=False),
        sa.Column("namespace_id", _key(NAME), nullable=False),
        sa.Column("path", _key(1024), nullable=False),
        sa.Column("sha256", sa.String(DIGEST), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("object_id", name="pk_catalog_objects"),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.namespace_id"],
            name="fk_catalog_objects_namespace_id_namespaces",
        ),
        sa.UniqueConstraint("namespace_id", "path", name="uq_catalog_objects_namespace_id_path"),
    )
    op.create_index("ix_catalog_objects_path", "catalog_objects", ["path"])


def downgrade() -> None:
    for table in (
        "catalog_objects",
        "namespaces",
        "providers",
        "audit_checkpoints",
        "audit_entries",
        "log_refs",
        "log_entries",
        "artifact_tags",
        "artifacts",
        "snapshots",
        "runs",
    ):
        op.drop_table(table)
