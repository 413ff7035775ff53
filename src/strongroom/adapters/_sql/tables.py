"""The records schema as SQLAlchemy Core: the tables of runs, snapshots, artifacts, logs, audit
and the catalog, declared on ``columns.metadata`` (the registry's are in `registry_tables`).

Created only by the Alembic migrations in ``adapters/migrations``; a drift test proves they
build exactly ``metadata``, so a change here needs a new migration.

- Every record is stored whole as JSON in ``body`` (a bound record as its canonical JSON,
  `stored_body`, whose sha256 is the digest its audit binding carries) and read back with
  ``Model.model_validate_json``; the other columns are copies of fields, kept for filtering,
  sorting, joining and constraints. A row edited by hand therefore fails validation (reported
  as `IntegrityError`) or breaks a hash chain that ``verify`` recomputes from the body.
- Column types (timestamps, byte-wise keys) are in `columns`.
- Referential integrity is the database's: snapshots, artifacts, log entries and log references
  need their run, namespaces their provider, objects their namespace (violations: `NotFound`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from strongroom.adapters._sql.columns import _DIGEST, _ID, _NAME, UtcTimestamp, _key, _seq, metadata

__all__ = [
    "artifact_tags_table",
    "artifacts_table",
    "audit_bindings_table",
    "audit_checkpoints_table",
    "audit_entries_table",
    "catalog_objects_table",
    "gc_blob_claims_table",
    "holds_table",
    "inline_blobs_table",
    "log_entries_table",
    "log_refs_table",
    "namespaces_table",
    "providers_table",
    "run_labels_table",
    "run_metrics_table",
    "runs_table",
    "snapshots_table",
    "step_claims_table",
]

runs_table = Table(
    "runs",
    metadata,
    Column("run_id", _key(_ID), primary_key=True),
    Column("project", _key(_NAME), nullable=False),
    Column("playbook_id", _key(_NAME), nullable=True),
    Column("actor", _key(_NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("purpose", Text(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("updated_at", UtcTimestamp(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("body", Text(), nullable=False),
    Column("previous_run_id", _key(_ID), nullable=True),  # migration 0009
    # Each index ends with the keyset (sort column, run_id), so a filtered page is one index
    # range walked in order (no sort step) and its COUNT is answered from the same index.
    Index("ix_runs_status_project_created", "status", "project", "created_at", "run_id"),
    Index("ix_runs_status_project_updated", "status", "project", "updated_at", "run_id"),
    Index("ix_runs_status_created", "status", "created_at", "run_id"),
    Index("ix_runs_project_created", "project", "created_at", "run_id"),
    Index("ix_runs_project_updated", "project", "updated_at", "run_id"),
    Index("ix_runs_created", "created_at", "run_id"),
    Index("ix_runs_updated", "updated_at", "run_id"),
    Index("ix_runs_actor_created", "actor", "created_at", "run_id"),
    Index("ix_runs_playbook_created", "playbook_id", "created_at", "run_id"),
    Index("ix_runs_previous_created", "previous_run_id", "created_at", "run_id"),
)

# The label and metric index (migration 0007): derived from the run's body (``labels``,
# ``metrics``), rewritten in the same transaction as every insert or update of the run. The
# body stays the record (bound into the audit chain): a forged row here can only hide a run from,
# or show it in, a filtered list; it never changes what ``runs show`` or ``verify`` report.
run_labels_table = Table(
    "run_labels",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("key", _key(64), nullable=False),
    Column("value", _key(256), nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_run_labels_key_value_run_id", "key", "value", "run_id"),
)

run_metrics_table = Table(
    "run_metrics",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("key", _key(64), nullable=False),
    Column("value", Float(), nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_run_metrics_key_value_run_id", "key", "value", "run_id"),
)

snapshots_table = Table(
    "snapshots",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("revision", Integer(), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("run_id", "revision"),
    Index("ix_snapshots_sha256", "sha256"),  # migration 0010: "is this blob used?"
)

artifacts_table = Table(
    "artifacts",
    metadata,
    Column("artifact_id", _key(_ID), primary_key=True),
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("phase", _key(_NAME), nullable=True),
    Column("step", _key(_NAME), nullable=True),
    Column("namespace", _key(_NAME), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_artifacts_run_id_artifact_id", "run_id", "artifact_id"),
    Index("ix_artifacts_namespace_artifact_id", "namespace", "artifact_id"),
    Index("ix_artifacts_sha256", "sha256"),  # migration 0010
)

# Tags get their own table so that "artifacts tagged X" is an index lookup, not a JSON scan.
artifact_tags_table = Table(
    "artifact_tags",
    metadata,
    Column("artifact_id", _key(_ID), ForeignKey("artifacts.artifact_id"), nullable=False),
    Column("tag", _key(_NAME), nullable=False),
    PrimaryKeyConstraint("artifact_id", "tag"),
    Index("ix_artifact_tags_tag_artifact_id", "tag", "artifact_id"),
)

log_entries_table = Table(
    "log_entries",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("seq", BigInteger(), nullable=False),
    Column("level", String(16), nullable=False),
    Column("event", String(128), nullable=False),
    Column("phase", _key(_NAME), nullable=True),
    Column("timestamp", UtcTimestamp(), nullable=False),
    Column("hash", String(_DIGEST), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)

log_refs_table = Table(
    "log_refs",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), primary_key=True),
    Column("body", Text(), nullable=False),
)

# ``event``, ``actor`` and ``run_id`` (migration 0008) are copies of the body's fields for
# `AuditQuery` (`audit_columns`: None where a query could not ask for the value); verify checks
# them against the body, so editing one to hide an entry from a filter is caught. Each index
# ends with seq, so a filtered page is one index range walked in order.
audit_entries_table = Table(
    "audit_entries",
    metadata,
    Column("seq", _seq(), primary_key=True, autoincrement=False),
    Column("hash", String(_DIGEST), nullable=False),
    Column("body", Text(), nullable=False),
    Column("event", _key(128), nullable=True),
    Column("actor", _key(_NAME), nullable=True),
    Column("run_id", _key(_ID), nullable=True),
    Index("ix_audit_entries_event_seq", "event", "seq"),
    Index("ix_audit_entries_actor_seq", "actor", "seq"),
    Index("ix_audit_entries_run_id_seq", "run_id", "seq"),
)

# The binding index: one row per record an audit entry binds (a copy of the entry body's
# ``records``), so "the latest binding of artifact X" is an index lookup. verify checks it row
# for row against the chain's bodies, so editing it is caught like editing the chain.
audit_bindings_table = Table(
    "audit_bindings",
    metadata,
    Column("seq", BigInteger(), nullable=False),
    Column("pos", Integer(), nullable=False),
    Column("record_type", String(32), nullable=False),
    Column("record_id", _key(400), nullable=False),
    Column("digest", String(_DIGEST), nullable=True),
    Column("log_seq", BigInteger(), nullable=True),
    PrimaryKeyConstraint("seq", "pos"),
    Index("ix_audit_bindings_record_type_record_id_seq", "record_type", "record_id", "seq"),
)

audit_checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", _seq(), primary_key=True, autoincrement=False),
    Column("body", Text(), nullable=False),
)

providers_table = Table(
    "providers",
    metadata,
    Column("provider_id", _key(_NAME), primary_key=True),
    Column("body", Text(), nullable=False),
)

namespaces_table = Table(
    "namespaces",
    metadata,
    Column("namespace_id", _key(_NAME), primary_key=True),
    Column("provider_id", _key(_NAME), ForeignKey("providers.provider_id"), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_namespaces_provider_id_namespace_id", "provider_id", "namespace_id"),
)

catalog_objects_table = Table(
    "catalog_objects",
    metadata,
    Column("object_id", _key(_ID), primary_key=True),
    Column("namespace_id", _key(_NAME), ForeignKey("namespaces.namespace_id"), nullable=False),
    Column("path", _key(1024), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    UniqueConstraint("namespace_id", "path"),
    Index("ix_catalog_objects_path", "path"),
    Index("ix_catalog_objects_sha256", "sha256"),  # migration 0010
)

# Holds (migration 0010): the body is the `Hold` record (bound into the audit chain, type
# "hold"); run_id, project and active are copies for the lookup every deletion makes.
holds_table = Table(
    "holds",
    metadata,
    Column("hold_id", _key(_ID), primary_key=True),
    Column("run_id", _key(_ID), nullable=True),
    Column("project", _key(_NAME), nullable=True),
    Column("active", Boolean(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_holds_run_id_active", "run_id", "active"),
    Index("ix_holds_project_active", "project", "active"),
)

# Blobs garbage collection is deleting ("claimed") or has deleted ("deleted"), migration 0010:
# a write of a record that uses one of them is refused in its own transaction
# (docs/retention.md, "Writers and GC").
gc_blob_claims_table = Table(
    "gc_blob_claims",
    metadata,
    Column("sha256", String(_DIGEST), primary_key=True),
    Column("claim_id", _key(_ID), nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UtcTimestamp(), nullable=False),
    Index("ix_gc_blob_claims_state_updated", "state", "updated_at"),
)

_WORKER = 255  # a worker's name: host:pid or a Celery node name

# Which worker runs which attempt of a step (migration 0011, `strongroom.ports.step_claims`):
# operational state, not bound into the audit chain; deleted with its run.
step_claims_table = Table(
    "step_claims",
    metadata,
    Column("run_id", _key(_ID), primary_key=True),
    Column("step_id", _key(_NAME), primary_key=True),
    Column("attempt", Integer(), primary_key=True),
    Column("request_id", _key(_ID), nullable=False),
    Column("worker", String(_WORKER), nullable=False),
    Column("state", String(16), nullable=False),
    Column("claimed_at", UtcTimestamp(), nullable=False),
    Column("heartbeat_at", UtcTimestamp(), nullable=False),
    Column("finished_at", UtcTimestamp(), nullable=True),
    Column("response", Text(), nullable=True),
)

# Small blobs kept as rows (migration 0012, `strongroom.ports.inline_blobs`): the bytes under
# their SHA-256, never updated (a trigger refuses it), deleted only by garbage collection.
inline_blobs_table = Table(
    "inline_blobs",
    metadata,
    Column("sha256", _key(_DIGEST), primary_key=True),
    Column("size_bytes", Integer(), nullable=False),
    Column("data", LargeBinary(), nullable=False),
    Column("stored_at", UtcTimestamp(), nullable=False),
)
