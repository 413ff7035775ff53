"""`SqlMetadataStore`: the records port on SQLAlchemy Core, assembled from one class per group
of record kinds (runs, logs, catalog, registry) on `SqlStoreBase`, verify's checks of every
record (`RecordChecks`), and ``record_transition``, which spans runs, snapshots and logs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from strongroom.adapters._sql.actors import ActorRecordsSql
from strongroom.adapters._sql.base import Operation
from strongroom.adapters._sql.catalog import CatalogRecords
from strongroom.adapters._sql.inline_blobs import InlineBlobRecordsSql
from strongroom.adapters._sql.logs import LogRecords
from strongroom.adapters._sql.record_check import RecordChecks
from strongroom.adapters._sql.registry import RegistryRecordsSql
from strongroom.adapters._sql.retention import RetentionRecordsSql
from strongroom.adapters._sql.runs import RunRecords
from strongroom.adapters._sql.step_claims import StepClaimRecordsSql
from strongroom.models import (
    AuditEvent,
    LogEntry,
    RecordBinding,
    Run,
    SnapshotRecord,
)
from strongroom.ports.metadata import transition_run_id

__all__ = ["SqlMetadataStore"]


class SqlMetadataStore(
    RunRecords,
    LogRecords,
    CatalogRecords,
    RegistryRecordsSql,
    ActorRecordsSql,
    RetentionRecordsSql,
    StepClaimRecordsSql,
    InlineBlobRecordsSql,
    RecordChecks,
):
    """`MetadataStore` on SQLAlchemy Core. Subclasses supply the engine and the transaction
    discipline (`_create_engine`, optionally `_prepare` and `_run_transaction`).

    ``record_transition`` runs the statements of ``insert_snapshot``, ``update_run`` and
    ``append_log_entries`` (built by their ``_*_op`` halves) in one transaction."""

    async def record_transition(
        self,
        *,
        snapshot: SnapshotRecord | None = None,
        run: Run | None = None,
        expected_version: int = 0,
        log_entries: Sequence[LogEntry] = (),
        audit: AuditEvent | None = None,
    ) -> Run | None:
        ops: list[Operation[None]] = []
        bindings: list[RecordBinding] = []
        stored: Run | None = None
        run_id = transition_run_id(snapshot, run, log_entries)
        if snapshot is not None:
            binding, op = self._insert_snapshot_op(snapshot)
            ops.append(op)
            bindings.append(binding)
        if run is not None:
            stored, binding, op = self._update_run_op(run, expected_version)
            ops.append(op)
            bindings.append(binding)
        if log_entries:
            ops.append(self._append_log_op(log_entries))
        if not ops:
            return None

        def transaction(conn: Connection) -> None:
            for op in ops:
                op(conn)

        await self._write_bound(
            "record_transition",
            transaction,
            audit,
            bindings,
            log_run=run_id,
            blobs=[] if snapshot is None else [snapshot.sha256],
            run_id=run_id,
        )
        return stored
