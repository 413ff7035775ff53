"""What retention asks of a records store: holds, deleting a run with its tombstone, which blobs
records still use, and the blob claims that keep garbage collection from racing writers.

The rules every backend keeps (conformance: `strongroom.testing.RetentionRecordsTests`):

- ``delete_run`` is one transaction: it refuses a run that is held (by a hold on the run or on
  its project, checked inside the transaction, `Conflict` reason ``held``), that has not ended
  (reason ``not_ended``; a run is over once its log is sealed too: reason ``not_sealed``), or
  whose record is not the one the caller planned with (``expected``,
  reason ``changed``); otherwise it removes the run, its labels and metrics, snapshots,
  artifacts (and their tags), log lines and log reference, and appends the caller's event to the
  audit chain binding every removed record as deleted (and the log head as deleted), with what
  went added to its details (`RunDeletion`). Nothing else is removed: blobs are the caller's.
- ``claim_blobs`` takes, in one write transaction, a claim on each digest that no record uses
  and nobody claims; every write of a record that uses a blob refuses while a claim on it
  exists (`Conflict`, reason ``blob_reclaimed``), so a claimed blob can be deleted without a
  record coming to point at it. ``finish_blob_claims`` marks claimed digests deleted (kept
  for the grace period, so a writer that put the blob before it went learns of it); a writer
  that puts the blob back marks its claim ``restored`` (``restore_blob_claims``: records may
  use it, and no GC claims it while the mark stands), and ``drop_blob_claims`` removes the
  marks once the grace period is over.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from strongroom.errors import Conflict
from strongroom.models import (
    TERMINAL_STATUSES,
    AuditEvent,
    BindingType,
    Hold,
    HoldQuery,
    RecordBinding,
    RunStatus,
    bind_deleted,
    canonical_json,
)

__all__ = [
    "BlobClaim",
    "DeletionManifest",
    "RetentionRecords",
    "RunForRetention",
    "RunUsage",
    "deletion_refusal",
]


@dataclass(frozen=True)
class RunForRetention:
    """An ended run as retention sees it: enough to apply rules and to notice a change."""

    run_id: str
    project: str
    playbook_id: str | None
    status: RunStatus
    ended_at: datetime  # the run's updated_at: its last status change
    digest: str  # the run record's canonical digest


@dataclass(frozen=True)
class RunUsage:
    """The blobs a run's records use (digest -> size) and how many records it has."""

    blobs: dict[str, int] = field(default_factory=dict)
    records: int = 0


@dataclass(frozen=True)
class BlobClaim:
    sha256: str
    claim_id: str
    state: str  # "claimed" or "deleted"
    updated_at: datetime


class RetentionRecords(ABC):
    """Holds, run deletion and the blob claims of garbage collection."""

    # -- holds --------------------------------------------------------------------------------

    @abstractmethod
    async def insert_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        """Store a new hold (`Conflict` if its id exists; `NotFound` for a run hold whose run
        does not exist, unless the write is verbatim, ``audit`` None: an import copies a
        released hold of a run deleted since)."""

    @abstractmethod
    async def release_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        """Store ``hold`` (its released fields set) over the stored one, which must be
        active (`Conflict`, reason ``released``); `NotFound` if there is none."""

    @abstractmethod
    async def get_hold(self, hold_id: str) -> Hold: ...

    @abstractmethod
    async def list_holds(self, query: HoldQuery) -> list[Hold]:
        """Holds, newest first; active ones only unless ``include_released``."""

    @abstractmethod
    def iter_holds(self) -> AsyncIterator[Hold]:
        """Every hold, released ones too, in pages by hold id (export)."""

    @abstractmethod
    async def held_runs(self, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` an active hold covers (on the run or on its project)."""

    # -- runs ---------------------------------------------------------------------------------

    @abstractmethod
    def iter_ended_runs(self) -> AsyncIterator[RunForRetention]:
        """Every completed, failed or cancelled run, in pages (any order)."""

    @abstractmethod
    async def run_usage(self, run_id: str) -> RunUsage:
        """The blobs the run's snapshots and artifacts use (`NotFound` for an unknown run)."""

    @abstractmethod
    async def delete_run(
        self, run_id: str, *, expected: str | None, audit: AuditEvent | None
    ) -> dict[str, object]:
        """Delete the run and everything of it, as the module docstring says; returns the
        details its tombstone carries (`RunDeletion` fields). Without ``audit`` the deletion
        is verbatim and checks nothing but the run's existence (an import copying a
        deletion whose tombstone it copies)."""

    # -- blobs --------------------------------------------------------------------------------

    @abstractmethod
    async def referenced_blobs(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` a record (snapshot, artifact, catalog object, definition
        version) uses."""

    @abstractmethod
    async def blob_users(self, digests: Sequence[str]) -> dict[str, set[str]]:
        """Who uses each of ``digests``: ``run:<run_id>`` (its snapshots or artifacts),
        ``object:<object_id>``, ``definition``; a digest nobody uses is left out."""

    @abstractmethod
    async def claim_blobs(self, digests: Sequence[str], claim_id: str) -> list[str]:
        """Claim each of ``digests`` that no record uses and no claim holds, in one write
        transaction; returns the ones claimed."""

    @abstractmethod
    async def finish_blob_claims(self, digests: Sequence[str]) -> None:
        """The claimed blobs are deleted: mark their claims ``deleted``."""

    @abstractmethod
    async def restore_blob_claims(self, digests: Sequence[str]) -> int:
        """A writer put these deleted blobs back: their ``deleted`` claims become
        ``restored`` (a record may use the blob again, and no GC claims it until the claim is
        dropped after the grace period). Returns how many changed."""

    @abstractmethod
    async def drop_blob_claims(self, *, before: datetime) -> int:
        """Remove the ``deleted`` and ``restored`` claims last changed before ``before`` (a
        ``claimed`` one is never removed here). Returns how many went."""

    @abstractmethod
    async def list_blob_claims(
        self, *, state: str | None = None, digests: Sequence[str] | None = None, limit: int = 1000
    ) -> list[BlobClaim]:
        """Claims (of ``digests`` only, when given), oldest first (a GC killed mid-apply
        leaves ``claimed`` ones to finish)."""


def deletion_refusal(
    run_id: str,
    *,
    status: str,
    digest: str,
    expected: str | None,
    hold_id: str | None,
    finished: bool,
    **details: Any,
) -> Conflict | None:
    """Why ``delete_run`` must refuse a run (checked inside its transaction), or None: not
    ended, changed since planned, held, or its log not sealed with its artifact yet."""
    details["run_id"] = run_id
    if status not in {s.value for s in TERMINAL_STATUSES}:
        return Conflict(
            f"run {run_id} is {status}: only completed, failed or cancelled runs can be deleted",
            reason="not_ended",
            **details,
        )
    if expected is not None and digest != expected:
        return Conflict(
            f"run {run_id} changed since it was planned for deletion", reason="changed", **details
        )
    if hold_id is not None:
        return Conflict(
            f"run {run_id} is held (hold {hold_id}): release the hold first",
            reason="held",
            hold_id=hold_id,
            **details,
        )
    if not finished:
        return Conflict(
            f"run {run_id} has ended but its log is not sealed yet: retry once it is",
            reason="not_sealed",
            **details,
        )
    return None


class DeletionManifest:
    """What a run's deletion removes, as a store gathers it in the deleting transaction: each
    record's ``[type, id, digest]`` (in order: the run, snapshots by revision, artifacts by id,
    the log reference, the log head), its deletion binding, and the blobs the run used."""

    def __init__(self, run_id: str, run_digest: str) -> None:
        self.run_id = run_id
        self.run_digest = run_digest
        self.entries: list[list[str]] = [["run", run_id, run_digest]]
        self.bindings: list[RecordBinding] = [bind_deleted("run", run_id)]
        self.blobs: set[str] = set()
        self.log_head: dict[str, Any] | None = None

    def add(self, kind: BindingType, ident: str, digest: str, blob: str | None = None) -> None:
        self.entries.append([kind, ident, digest])
        self.bindings.append(bind_deleted(kind, ident))
        if blob is not None:
            self.blobs.add(blob)

    def add_log_head(self, seq: int, head_hash: str) -> None:
        self.log_head = {"seq": seq, "hash": head_hash}
        self.add("log", self.run_id, head_hash)

    def details(self, project: str, status: str) -> dict[str, object]:
        """The tombstone's computed details (`RunDeletion` fields)."""
        counts: dict[str, int] = {}
        for kind, _, _ in self.entries:
            counts[kind] = counts.get(kind, 0) + 1
        ordered = sorted(self.blobs)
        return {
            "run_id": self.run_id,
            "project": project,
            "status": status,
            "run_digest": self.run_digest,
            "log_head": self.log_head,
            "records": counts,
            "manifest_sha256": hashlib.sha256(canonical_json(self.entries)).hexdigest(),
            "blob_count": len(ordered),
            "blobs_sha256": hashlib.sha256(canonical_json(ordered)).hexdigest(),
        }
