"""The logs port: each run's hash-chained log lines and its log reference (sealed when the
run ends). ``append_log_entries`` relies on the unique (run, seq) key: the caller computes
the chain from the head it read, so a racing writer collides; ``close_log`` seals at the head
in one transaction with the lock appends take. Every write takes ``audit`` (see
`strongroom.ports.metadata`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from strongroom.errors import Conflict
from strongroom.models import AuditEvent, LogEntry, LogQuery, LogReference
from strongroom.ports.chains import ChainRow

__all__ = ["LogRecords", "closed_log_reference", "sealed_log_conflict"]


def sealed_log_conflict(run_id: str) -> Conflict:
    """What `append_log_entries` raises for a run whose log is sealed."""
    return Conflict(
        f"the log of run {run_id} is sealed; no more lines can be appended",
        operation="logs.append",
        run_id=run_id,
        reason="sealed",
    )


def closed_log_reference(ref: LogReference, head: LogEntry | None, at: datetime) -> LogReference:
    """``ref`` sealed at ``head`` (the log's last entry, None when empty): what `close_log`
    stores. The sealed artifact is attached afterwards by the log service."""
    return ref.model_copy(
        update={
            "sealed": True,
            "entry_count": head.seq if head else 0,
            "head_hash": head.hash if head else None,
            "updated_at": at,
        }
    )


class LogRecords(ABC):
    """Log chains and references (conformance: `strongroom.testing.LogRecordsTests`)."""

    @abstractmethod
    async def append_log_entries(
        self, entries: Sequence[LogEntry], *, audit: AuditEvent | None = None
    ) -> None:
        """Append entries of one run's chain (consecutive seqs). `Conflict` if a seq exists,
        or (reason ``sealed``) if the run's log reference is sealed: checked in the same
        transaction, so no line lands after a seal."""

    @abstractmethod
    async def read_log_entries(self, run_id: str, query: LogQuery) -> list[LogEntry]:
        """Entries with seq > after_seq that match the filters, in seq order."""

    @abstractmethod
    async def log_head(self, run_id: str) -> LogEntry | None:
        """The entry with the highest seq, or None for an empty log."""

    @abstractmethod
    async def count_log_entries(self, run_id: str) -> int: ...

    @abstractmethod
    async def put_log_reference(
        self, ref: LogReference, *, if_absent: bool = False, audit: AuditEvent | None = None
    ) -> None:
        """Insert or replace a run's log reference; with ``if_absent``, insert only when the
        run has none (an existing one, sealed or not, is left alone)."""

    @abstractmethod
    async def close_log(
        self, run_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> LogReference:
        """Atomically mark the run's log sealed at its current head (``entry_count`` and
        ``head_hash`` of the head, ``updated_at=at``; the reference is created if missing) and
        return the stored reference. From then on `append_log_entries` refuses the run. A log
        already sealed is returned unchanged."""

    @abstractmethod
    async def get_log_reference(self, run_id: str) -> LogReference | None: ...

    @abstractmethod
    def iter_log_run_ids(self) -> AsyncIterator[str]:
        """Every run id that has at least one log entry."""

    @abstractmethod
    def iter_log_rows(self, run_id: str) -> AsyncIterator[ChainRow[LogEntry]]:
        """Every stored log row of a run, in key order."""
