"""`SqlMetadataStore`: the records port on SQLAlchemy Core, assembled from one class per group
of record kinds (runs, logs, catalog, registry) on `SqlStoreBase`, plus what spans them all:
the blob references ``verify`` checks against the blob store, and the body-versus-column
consistency check that catches a row edited by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, Select, Table, select
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.base import PAGE_SIZE, AnyRow, Operation, fetch_all, parse_body
from strongroom.adapters._sql.binding_check import BindingChecks
from strongroom.adapters._sql.catalog import CatalogRecords
from strongroom.adapters._sql.logs import LogRecords
from strongroom.adapters._sql.registry import RegistryRecordsSql, definition_subject
from strongroom.adapters._sql.registry_tables import (
    approvals_table,
    channel_moves_table,
    channel_pointers_table,
    definition_versions_table,
)
from strongroom.adapters._sql.runs import RunRecords
from strongroom.adapters._sql.tables import (
    artifact_tags_table,
    artifacts_table,
    audit_checkpoints_table,
    catalog_objects_table,
    log_refs_table,
    namespaces_table,
    providers_table,
    runs_table,
    snapshots_table,
)
from strongroom.errors import IntegrityError
from strongroom.models import (
    Approval,
    ArtifactMetadata,
    AuditEvent,
    CatalogObject,
    ChannelMove,
    DefinitionVersion,
    LogEntry,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    RecordBinding,
    Run,
    SnapshotRecord,
    VerifyProblem,
    bind,
)
from strongroom.ports.metadata import transition_run_id

__all__ = ["SqlMetadataStore"]

# (kind, table, model, key columns, subject of a row): the records that point at blobs or are
# indexed by copies of their own fields.
_CHECKED: tuple[
    tuple[str, Table, type[BaseModel], tuple[str, ...], Callable[[AnyRow], str]], ...
] = (
    ("run", runs_table, Run, ("run_id",), lambda r: str(r.run_id)),
    (
        "snapshot",
        snapshots_table,
        SnapshotRecord,
        ("run_id", "revision"),
        lambda r: f"{r.run_id}@{r.revision}",
    ),
    ("artifact", artifacts_table, ArtifactMetadata, ("artifact_id",), lambda r: str(r.artifact_id)),
    ("object", catalog_objects_table, CatalogObject, ("object_id",), lambda r: str(r.object_id)),
    (
        "definition",
        definition_versions_table,
        DefinitionVersion,
        ("kind", "definition_id", "digest"),
        lambda r: definition_subject(r.kind, r.definition_id, r.version),
    ),
    ("channel_move", channel_moves_table, ChannelMove, ("move_id",), lambda r: str(r.move_id)),
    (
        "audit_checkpoint",
        audit_checkpoints_table,
        MerkleCheckpoint,
        ("tree_size",),
        lambda r: f"checkpoint@{r.tree_size}",
    ),
    ("log_ref", log_refs_table, LogReference, ("run_id",), lambda r: f"log:{r.run_id}"),
    ("provider", providers_table, Provider, ("provider_id",), lambda r: str(r.provider_id)),
    ("namespace", namespaces_table, Namespace, ("namespace_id",), lambda r: str(r.namespace_id)),
    ("approval", approvals_table, Approval, ("approval_id",), lambda r: str(r.approval_id)),
)

# The column (and record field) holding the blob digest of the kinds that point at a blob.
_BLOB_COLUMN: dict[str, str] = {
    "snapshot": "sha256",
    "artifact": "sha256",
    "object": "sha256",
    "definition": "digest",
}


class SqlMetadataStore(RunRecords, LogRecords, CatalogRecords, RegistryRecordsSql, BindingChecks):
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
            ops.append(self._insert_snapshot_op(snapshot))
            bindings.append(bind(snapshot))
        if run is not None:
            stored, op = self._update_run_op(run, expected_version)
            ops.append(op)
            bindings.append(bind(stored))
        if log_entries:
            ops.append(self._append_log_op(log_entries))
        if not ops:
            return None

        def transaction(conn: Connection) -> None:
            for op in ops:
                op(conn)

        await self._write_bound(
            "record_transition", transaction, audit, bindings, log_run=run_id, run_id=run_id
        )
        return stored

    async def _checked_rows(self, table: Table, keys: tuple[str, ...]) -> AsyncIterator[AnyRow]:
        columns: list[Column[Any]] = [table.c[k] for k in keys]
        async for row in self._keyset_pages(select(table), columns):
            yield row

    async def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        for kind, table, model, keys, subject_of in _CHECKED:
            column = _BLOB_COLUMN.get(kind)
            if column is None:
                continue
            async for row in self._checked_rows(table, keys):
                subject = subject_of(row)
                try:
                    record = parse_body(model, row.body, kind, subject)
                except IntegrityError:
                    # Reported by iter_record_problems; the indexed copy is all there is.
                    yield (kind, subject, getattr(row, column), row.size_bytes)
                    continue
                yield (kind, subject, getattr(record, column), record.size_bytes)  # type: ignore[attr-defined]

    async def _tag_problems(self) -> AsyncIterator[VerifyProblem]:
        """The tag index (what "artifacts tagged X" reads) must hold exactly each artifact's
        tags: an edited, added or removed tag row is reported."""
        art, tags = artifacts_table.c, artifact_tags_table.c
        after: str | None = None
        while True:
            stmt = select(art.artifact_id, art.body).order_by(art.artifact_id).limit(PAGE_SIZE)
            if after is not None:
                stmt = stmt.where(art.artifact_id > after)

            def page(
                conn: Connection, stmt: Select[Any] = stmt
            ) -> tuple[list[AnyRow], dict[str, set[str]]]:
                rows = list(conn.execute(stmt).all())
                ids = [r.artifact_id for r in rows]
                indexed: dict[str, set[str]] = {i: set() for i in ids}
                if ids:
                    query = select(tags.artifact_id, tags.tag).where(tags.artifact_id.in_(ids))
                    for t in conn.execute(query):
                        indexed[t.artifact_id].add(t.tag)
                return rows, indexed

            rows, indexed = await self._read("iter_record_problems", page)
            for row in rows:
                try:
                    record = parse_body(ArtifactMetadata, row.body, "artifact", row.artifact_id)
                except IntegrityError:
                    continue  # reported with the record checks
                if set(record.tags) != indexed[row.artifact_id]:
                    yield VerifyProblem(
                        kind="artifact",
                        code="integrity_error",
                        subject=str(row.artifact_id),
                        message=f"the tag index of artifact {row.artifact_id} differs from its "
                        "record's tags (the index was edited)",
                        details={
                            "expected": sorted(record.tags),
                            "found": sorted(indexed[row.artifact_id]),
                        },
                    )
            if len(rows) < PAGE_SIZE:
                break
            after = str(rows[-1].artifact_id)
        orphans = (
            select(tags.artifact_id)
            .outerjoin(artifacts_table, art.artifact_id == tags.artifact_id)
            .where(art.artifact_id.is_(None))
            .distinct()
            .limit(PAGE_SIZE)
        )
        for orphan in await self._read("iter_record_problems", fetch_all(orphans)):
            yield VerifyProblem(
                kind="artifact",
                code="integrity_error",
                subject=str(orphan.artifact_id),
                message=f"the tag index names artifact {orphan.artifact_id}, which does not "
                "exist (the index was edited)",
            )

    async def _pointer_problems(self) -> AsyncIterator[VerifyProblem]:
        """Each channel pointer row must be exactly what its move set: the definition, the
        channel and the digest (what a promotion's compare-and-set reads)."""
        ptr, mv = channel_pointers_table.c, channel_moves_table.c
        stmt = select(ptr.kind, ptr.definition_id, ptr.channel, ptr.digest, ptr.move_id, mv.body)
        stmt = stmt.outerjoin(channel_moves_table, mv.move_id == ptr.move_id)
        async for row in self._keyset_pages(stmt, [ptr.kind, ptr.definition_id, ptr.channel]):
            subject = f"{row.kind}/{row.definition_id}#{row.channel}"
            try:
                move = (
                    None
                    if row.body is None
                    else parse_body(ChannelMove, row.body, "channel_move", str(row.move_id))
                )
            except IntegrityError:
                continue  # reported with the records
            expected = (
                None
                if move is None
                else (move.kind.value, move.definition_id, move.channel.value, move.to_digest)
            )
            if expected != (row.kind, row.definition_id, row.channel, row.digest):
                yield VerifyProblem(
                    kind="registry",
                    code="integrity_error",
                    subject=subject,
                    message=f"channel pointer {subject} is not what its move {row.move_id} set "
                    "(the pointer was edited)",
                    details={"move_id": row.move_id, "expected": expected, "found": row.digest},
                )

    async def iter_record_problems(self) -> AsyncIterator[VerifyProblem]:
        async for problem in self._pointer_problems():
            yield problem
        async for problem in self._tag_problems():
            yield problem
        for kind, table, model, keys, subject_of in _CHECKED:
            async for row in self._checked_rows(table, keys):
                subject = subject_of(row)
                try:
                    record = parse_body(model, row.body, kind, subject)
                except IntegrityError as exc:
                    yield VerifyProblem(
                        kind=kind,
                        code=exc.code,
                        subject=subject,
                        message=exc.message,
                        details=exc.details,
                    )
                    continue
                differing = sorted(
                    name
                    for name in table.columns.keys()  # noqa: SIM118 - a ColumnCollection
                    if name != "body"
                    and _is_copied_field(record, name)
                    and _normal(getattr(record, name)) != _normal(getattr(row, name))
                )
                if differing:
                    yield VerifyProblem(
                        kind=kind,
                        code="integrity_error",
                        subject=subject,
                        message=f"stored {kind} {subject} contradicts itself: "
                        f"{', '.join(differing)} differ between the record and its index "
                        "columns (the row was edited)",
                        details={"fields": differing},
                    )


def _is_copied_field(record: BaseModel, name: str) -> bool:
    """A column that copies a field of the record, or a property derived from one (an
    approval's ``scope``)."""
    return name in type(record).model_fields or isinstance(
        getattr(type(record), name, None), property
    )


def _normal(value: Any) -> Any:
    """Compare enum members with their stored text."""
    return getattr(value, "value", value)
