"""The audit port: the one hash chain every governed write is bound into, its binding index
and its Merkle checkpoints. Appends rely on the unique seq: the chain is computed from the
head read under the audit lock. Writes of the other ports append their audit entry in their
own transaction (see `strongroom.ports.metadata`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from strongroom.models import (
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditQuery,
    MerkleCheckpoint,
    RecordBinding,
)
from strongroom.ports.chains import ChainRow

__all__ = ["AuditListener", "AuditRecords"]

# Called after a transaction that appended audit entries committed: (first seq, last seq).
AuditListener = Callable[[int, int], Awaitable[None]]


class AuditRecords(ABC):
    """The audit chain (conformance: `strongroom.testing.AuditRecordsTests`)."""

    @abstractmethod
    async def append_audit_entries(self, entries: Sequence[AuditEntry]) -> None:
        """Append consecutive entries verbatim (an import). `Conflict` if a seq exists (a
        racing writer won). Their bindings enter the binding index."""

    @abstractmethod
    async def append_audit_events(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """Chain ``events`` onto the audit log (under the audit lock, in one transaction) and
        return the entries stored."""

    @abstractmethod
    def iter_audit_rows(self, after_seq: int = 0) -> AsyncIterator[ChainRow[AuditEntry]]:
        """Every stored audit row with key > ``after_seq``, in key order, with its binding
        index rows: what verify replays."""

    @abstractmethod
    async def read_audit_hashes(self, *, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """(seq, hash) of the entries after ``after_seq``, from the hash column: what a
        checkpoint is computed from (verify recomputes every hash from the bodies)."""

    @abstractmethod
    async def latest_binding(
        self, record_type: str, record_id: str
    ) -> tuple[AuditEntry, RecordBinding] | None:
        """The newest audit entry that binds the record, and its binding of it; None when
        no entry names it. The entry is read from the chain itself, so a caller can check it
        (its hash, that it really carries the binding) rather than trust the index."""

    @abstractmethod
    async def binding_span(self, record_type: str, record_id: str) -> tuple[int, int] | None:
        """The seqs of the first and of the newest audit entry binding the record (None:
        never bound), from the binding index: where in the chain the record was written
        first and last (verify orders signed acts by them)."""

    @abstractmethod
    async def audit_head(self) -> AuditEntry | None: ...

    @abstractmethod
    async def read_audit_entries(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        """Entries with seq > after_seq, in seq order."""

    @abstractmethod
    async def query_audit(self, query: AuditQuery) -> AuditPage:
        """A page of the entries `AuditQuery.matches`: at most ``query.limit``, newest first
        (oldest first with ``after_seq``), with the next page's cursor when more match.
        Each filter is answered from an index (SQL: the ``event``, ``actor`` and ``run_id``
        columns kept beside each entry's body, `audit_columns`), never by reading the chain:
        the cost of a page is about its size, not the chain's."""

    @abstractmethod
    async def insert_checkpoint(
        self, checkpoint: MerkleCheckpoint, *, audit: AuditEvent | None = None
    ) -> None:
        """`Conflict` if a checkpoint for that tree_size exists."""

    @abstractmethod
    async def list_checkpoints(self) -> list[MerkleCheckpoint]:
        """Oldest first."""
