"""The audit chain in memory: the half of `MemoryMetadataStore` that chains audit events and
keeps the latest binding of each record. A write binds what it stored by calling `_bind` in
the same synchronous stretch as the write itself (no ``await`` between them), which is what
"one transaction" means on one event loop."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime

from strongroom.errors import Conflict
from strongroom.models import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditQuery,
    LogEntry,
    MerkleCheckpoint,
    RecordBinding,
    audit_columns,
    bind,
    bind_log_head,
    chain_audit_events,
)
from strongroom.ports.metadata import ChainRow, MetadataStore, binding_key

__all__ = ["MemoryAuditRecords"]


class MemoryAuditRecords(MetadataStore):
    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._checkpoints: dict[int, MerkleCheckpoint] = {}
        self._bound_at: dict[tuple[str, str], int] = {}  # (type, id) -> newest binding seq
        self._first_bound: dict[tuple[str, str], int] = {}  # (type, id) -> first binding seq
        # The query index: (column, value) -> the seqs of the entries with that value, ascending
        # (`audit_columns`, as the SQL stores keep them).
        self._audit_index: dict[tuple[str, str], list[int]] = {}
        # garbage collection's blob claims: sha256 -> (claim id, state, updated_at)
        self._claims: dict[str, tuple[str, str, datetime]] = {}

    def _refuse_reclaimed(
        self, digests: Sequence[str], operation: str, audit: AuditEvent | None
    ) -> None:
        """Before an audited write of records that use ``digests``: refuse while garbage
        collection claims one (as the SQL stores do inside the write's transaction)."""
        if audit is None:
            return
        found = sorted(
            d
            for d in set(digests)
            if self._claims.get(d, ("", "", None))[1] in ("claimed", "deleted")
        )
        if found:
            raise Conflict(
                f"{operation}: blob sha256:{found[0]} is being reclaimed by garbage collection; "
                "put it again and retry",
                operation=operation,
                backend="memory",
                reason="blob_reclaimed",
                sha256=found,
            )

    def _log_head_of(self, run_id: str) -> LogEntry | None:
        """The run's log head, for the log binding a run write carries (the store knows)."""
        return None

    def _bind(
        self,
        audit: AuditEvent | None,
        bindings: Sequence[RecordBinding],
        *,
        log_run: str | None = None,
    ) -> list[AuditEntry]:
        """Append ``audit`` with ``bindings`` (and ``log_run``'s log head); call it right
        after the write, with no ``await`` in between."""
        if audit is None:
            return []
        bound = list(bindings)
        if log_run is not None:
            head = self._log_head_of(log_run)
            if head is not None:
                bound.append(bind_log_head(head))
        return self._chain([(audit, bound)])

    def _chain(
        self, events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]]
    ) -> list[AuditEntry]:
        last = self._audit[-1] if self._audit else None
        head_seq, head_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
        return self._extend(chain_audit_events(events, head_seq=head_seq, head_hash=head_hash))

    def _extend(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        for entry in entries:
            self._audit.append(entry.model_copy(deep=True))
            for column, value in audit_columns(entry).items():
                if value is not None:
                    self._audit_index.setdefault((column, value), []).append(entry.seq)
            for record in entry.records:
                self._bound_at[(record.type, record.id)] = entry.seq
                self._first_bound.setdefault((record.type, record.id), entry.seq)
        return list(entries)

    async def append_audit_events(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        entries = self._chain([(e, ()) for e in events])
        await self._audit_appended(entries)
        return entries

    async def append_audit_entries(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        expected = len(self._audit) + 1
        for offset, entry in enumerate(entries):
            if entry.seq != expected + offset:
                raise Conflict(
                    "audit log moved on concurrently",
                    operation="append_audit_entries",
                    reason="stale_head",
                    expected_seq=expected + offset,
                    seq=entry.seq,
                )
        self._extend(entries)

    async def audit_head(self) -> AuditEntry | None:
        return self._audit[-1].model_copy(deep=True) if self._audit else None

    async def read_audit_entries(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        return [e.model_copy(deep=True) for e in self._audit[after_seq : after_seq + limit]]

    async def query_audit(self, query: AuditQuery) -> AuditPage:
        found: list[AuditEntry] = []
        for seq in self._query_candidates(query):
            entry = self._audit[seq - 1]
            if query.matches(entry):
                if len(found) == query.limit:
                    return AuditPage(entries=found, next_cursor=found[-1].seq)
                found.append(entry.model_copy(deep=True))
        return AuditPage(entries=found)

    def _query_candidates(self, query: AuditQuery) -> Iterator[int]:
        """The seqs a query walks, in its order: those of its most selective exact filter
        (every seq without one), bounded by its cursor."""
        lists = [
            self._audit_index.get((column, value), [])
            for column, value in (
                ("run_id", query.run_id),
                ("actor", query.actor),
                ("event", None if query.event_prefix else query.event),
            )
            if value is not None
        ]
        seqs: Sequence[int] = min(lists, key=len) if lists else range(1, len(self._audit) + 1)
        if query.after_seq is not None:
            yield from seqs[bisect.bisect_right(seqs, query.after_seq) :]
            return
        end = len(seqs) if query.before_seq is None else bisect.bisect_left(seqs, query.before_seq)
        for position in range(end - 1, -1, -1):
            yield seqs[position]

    async def read_audit_hashes(self, *, after_seq: int, limit: int) -> list[tuple[int, str]]:
        return [(e.seq, e.hash) for e in self._audit[after_seq : after_seq + limit]]

    async def iter_audit_rows(self, after_seq: int = 0) -> AsyncIterator[ChainRow[AuditEntry]]:
        for position in range(after_seq, len(self._audit)):
            entry = self._audit[position]
            yield ChainRow(
                key=position + 1,
                entry=entry.model_copy(deep=True),
                column_hash=entry.hash,
                bindings=[binding_key(b) for b in entry.records],
            )

    async def latest_binding(
        self, record_type: str, record_id: str
    ) -> tuple[AuditEntry, RecordBinding] | None:
        seq = self._bound_at.get((record_type, record_id))
        if seq is None:
            return None
        entry = self._audit[seq - 1]
        binding = [r for r in entry.records if r.type == record_type and r.id == record_id][-1]
        return entry.model_copy(deep=True), binding

    async def binding_span(self, record_type: str, record_id: str) -> tuple[int, int] | None:
        last = self._bound_at.get((record_type, record_id))
        if last is None:
            return None
        return self._first_bound[(record_type, record_id)], last

    async def insert_checkpoint(
        self, checkpoint: MerkleCheckpoint, *, audit: AuditEvent | None = None
    ) -> None:
        if checkpoint.tree_size in self._checkpoints:
            raise Conflict(
                f"checkpoint at tree size {checkpoint.tree_size} already exists",
                operation="insert_checkpoint",
            )
        self._checkpoints[checkpoint.tree_size] = checkpoint.model_copy(deep=True)
        await self._audit_appended(self._bind(audit, [bind(checkpoint)]))

    async def list_checkpoints(self) -> list[MerkleCheckpoint]:
        return [self._checkpoints[k].model_copy(deep=True) for k in sorted(self._checkpoints)]
