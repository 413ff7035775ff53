"""The records port: typed records, queries and compare-and-set writes.

Every conditional write is a value the backend makes atomic (a unique key or a row version),
never check-then-set in the caller:
- ``insert_*`` raise `Conflict` when the key exists;
- ``update_run(run, expected_version)`` raises `Conflict` unless the stored version matches,
  and stores ``run`` with ``version = expected_version + 1``;
- ``insert_snapshot`` relies on the unique (run_id, revision) key: the service writes
  ``expected_revision + 1``, so a stale writer collides and gets `Conflict`;
- ``append_log_entries`` / ``append_audit_entries`` rely on the unique (chain, seq) key the
  same way: the caller computes the chain from the head it read, a racing writer collides;
- ``close_log`` seals a run's log at its head in one transaction with the row lock the
  appends take, so a line either lands before the seal (and is counted) or is refused;
- ``record_transition`` writes a snapshot record, a run update and log lines of one run in
  one transaction (the orchestrator's step transitions), each part under its own rule above.
Batches are all-or-nothing. Unknown ids raise `NotFound`.

Audit bindings: every method that writes a record takes ``audit``, an `AuditEvent`. When it is
given, the store appends it to the audit chain **in the same transaction** as the write,
chained from the head it reads under the audit lock, with a `RecordBinding` for every record
it wrote (computed by the store from exactly what it stored) and, for a run update or a log
append, the run's log head. So there is never a record without its entry, or the reverse.
Without ``audit`` the write is verbatim (``strongroom import`` copies records and the chain
that already binds them). ``append_audit_events`` appends events that bind nothing of their
own; ``append_audit_entries`` copies entries verbatim. The store keeps an index of every
binding (type, id, seq) so a read can check a record against its latest binding.

The registry's records (definition versions, channels, approvals) are part of it too: see
`strongroom.ports.registry.RegistryRecords`, which this port extends.

Adapters: memory (tests and scratch vaults), SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from strongroom.errors import Conflict, IntegrityError, ValidationError
from strongroom.models import (
    ArtifactMetadata,
    ArtifactQuery,
    AuditEntry,
    AuditEvent,
    CatalogObject,
    LogEntry,
    LogQuery,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    RecordBinding,
    Run,
    RunPage,
    RunQuery,
    SnapshotRecord,
    VerifyProblem,
)
from strongroom.ports.registry import RegistryRecords

__all__ = [
    "REFERENCE_BATCH",
    "AuditListener",
    "BindingKey",
    "ChainRow",
    "MetadataStore",
    "ReferenceSink",
    "binding_key",
    "closed_log_reference",
    "sealed_log_conflict",
    "transition_run_id",
]


E = TypeVar("E", AuditEntry, LogEntry)

# Called after a transaction that appended audit entries committed: (first seq, last seq).
AuditListener = Callable[[int, int], Awaitable[None]]

# verify's check of blob references, given (kind, subject, sha256, size_bytes) in batches of at
# most REFERENCE_BATCH as `MetadataStore.iter_all_record_problems` reads the records.
ReferenceSink = Callable[[list[tuple[str, str, str, int]]], Awaitable[None]]
REFERENCE_BATCH = 1000


@dataclass
class ChainRow(Generic[E]):
    """One stored row of a hash chain, as verify reads it: by the row's own key (``key``),
    never by a value inside the body (a forged body cannot make a reader go back or loop).

    ``entry`` is the parsed body, or None with ``error`` when it does not validate;
    ``column_hash`` the hash column kept beside the body (None where there is none);
    ``bindings`` the store's binding index rows for this seq as `binding_key` tuples (audit
    rows of stores that keep an index separate from the bodies; None otherwise); ``columns``
    the other copies of body fields the row keeps for queries (level, event, phase,
    timestamp of a log line), which must agree with the body; ``text`` the body as stored,
    when the store has it (a replay can then check the hash against the stored text
    without re-serializing the entry)."""

    key: int
    entry: E | None
    error: IntegrityError | None = None
    column_hash: str | None = None
    bindings: list[BindingKey] | None = field(default=None)
    columns: dict[str, object] | None = field(default=None)
    positions: list[int] | None = field(default=None)  # of ``bindings`` in the index
    text: str | None = None


# A binding as compared by verify: (type, id, digest, log seq).
BindingKey = tuple[str, str, str | None, int | None]


def binding_key(binding: RecordBinding) -> BindingKey:
    return (binding.type, binding.id, binding.digest, binding.seq)


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


def transition_run_id(
    snapshot: SnapshotRecord | None, run: Run | None, log_entries: Sequence[LogEntry]
) -> str | None:
    """The one run the parts of a `record_transition` belong to (None when there are no
    parts); `ValidationError` when they name several."""
    run_ids = {
        *([snapshot.run_id] if snapshot else []),
        *([run.run_id] if run else []),
        *(entry.run_id for entry in log_entries),
    }
    if len(run_ids) > 1:
        raise ValidationError(
            "record_transition: every part must belong to the same run",
            operation="record_transition",
            run_ids=sorted(run_ids),
        )
    return next(iter(run_ids), None)


class MetadataStore(RegistryRecords, ABC):
    backend: str = "abstract"

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations). Idempotent."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- runs ---------------------------------------------------------------------------------

    @abstractmethod
    async def insert_run(self, run: Run, *, audit: AuditEvent | None = None) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str) -> Run: ...

    @abstractmethod
    async def update_run(
        self, run: Run, *, expected_version: int, audit: AuditEvent | None = None
    ) -> Run:
        """Replace the run if its stored version is ``expected_version``; returns the stored run."""

    @abstractmethod
    async def query_runs(self, query: RunQuery) -> RunPage:
        """Filter, sort by (query.sort, run_id), keyset-paginate; ``total`` ignores the cursor.

        ``total`` counts at most ``query.count_limit`` matches (all when it is None): more
        than that -> ``total == count_limit`` and ``total_is_exact`` False (see
        `strongroom.adapters._cursor.capped_total`). The cursor is opaque to callers; an
        undecodable cursor raises `ValidationError`.
        """

    # -- snapshots ----------------------------------------------------------------------------

    @abstractmethod
    async def insert_snapshot(
        self, record: SnapshotRecord, *, audit: AuditEvent | None = None
    ) -> None:
        """`Conflict` if (run_id, revision) exists; `NotFound` if the run does not."""

    @abstractmethod
    async def get_snapshot(self, run_id: str, revision: int | None = None) -> SnapshotRecord:
        """The given revision, or the latest when None. `NotFound` when there is none."""

    @abstractmethod
    async def list_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """Every revision of a run, oldest first."""

    # -- a run's state change, in one transaction ---------------------------------------------

    @abstractmethod
    async def record_transition(
        self,
        *,
        snapshot: SnapshotRecord | None = None,
        run: Run | None = None,
        expected_version: int = 0,
        log_entries: Sequence[LogEntry] = (),
        audit: AuditEvent | None = None,
    ) -> Run | None:
        """What one change of a run's state writes, all or nothing: ``insert_snapshot``,
        ``update_run(run, expected_version=...)`` and ``append_log_entries`` (each optional,
        all of one run), under the same rules as those methods, in one transaction. Returns
        the stored run (None without ``run``).

        Conflicts carry a ``reason`` saying which part lost: ``stale_revision`` (the snapshot
        revision exists), ``stale_version`` (the run changed), ``stale_head`` (the log moved
        on) or ``sealed`` (the log is sealed)."""

    # -- artifacts ----------------------------------------------------------------------------

    @abstractmethod
    async def insert_artifacts(
        self, artifacts: Sequence[ArtifactMetadata], *, audit: AuditEvent | None = None
    ) -> None:
        """All-or-nothing. `NotFound` if a run is missing, `Conflict` on a duplicate id."""

    @abstractmethod
    async def get_artifact(self, artifact_id: str) -> ArtifactMetadata: ...

    @abstractmethod
    async def list_artifacts(self, query: ArtifactQuery) -> list[ArtifactMetadata]:
        """Matching artifacts ordered by artifact_id (time-ordered), after ``query.after_id``."""

    # -- logs ---------------------------------------------------------------------------------

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

    # -- audit --------------------------------------------------------------------------------

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
    def iter_log_rows(self, run_id: str) -> AsyncIterator[ChainRow[LogEntry]]:
        """Every stored log row of a run, in key order."""

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
    def iter_binding_problems(self) -> AsyncIterator[VerifyProblem]:
        """Every record whose canonical digest is not the one its latest binding carries, has
        no binding, or is missing while the chain says it exists (and log heads the chain
        carried that the log no longer has)."""

    def set_audit_listener(self, listener: AuditListener | None) -> None:
        """Call ``listener(first_seq, last_seq)`` after every committed transaction that
        appended audit entries (the audit service takes checkpoints from it)."""
        self._audit_listener = listener

    async def _audit_appended(self, entries: Sequence[AuditEntry]) -> None:
        listener = getattr(self, "_audit_listener", None)
        if listener is not None and entries:
            await listener(entries[0].seq, entries[-1].seq)

    @abstractmethod
    async def audit_head(self) -> AuditEntry | None: ...

    @abstractmethod
    async def read_audit_entries(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        """Entries with seq > after_seq, in seq order."""

    @abstractmethod
    async def insert_checkpoint(
        self, checkpoint: MerkleCheckpoint, *, audit: AuditEvent | None = None
    ) -> None:
        """`Conflict` if a checkpoint for that tree_size exists."""

    @abstractmethod
    async def list_checkpoints(self) -> list[MerkleCheckpoint]:
        """Oldest first."""

    # -- catalog ------------------------------------------------------------------------------

    @abstractmethod
    async def put_provider(self, provider: Provider, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace."""

    @abstractmethod
    async def get_provider(self, provider_id: str) -> Provider: ...

    @abstractmethod
    async def list_providers(self) -> list[Provider]: ...

    @abstractmethod
    async def put_namespace(self, namespace: Namespace, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace. `NotFound` if its provider is missing."""

    @abstractmethod
    async def get_namespace(self, namespace_id: str) -> Namespace: ...

    @abstractmethod
    async def list_namespaces(self, provider_id: str | None = None) -> list[Namespace]: ...

    @abstractmethod
    async def put_object(self, obj: CatalogObject, *, audit: AuditEvent | None = None) -> None:
        """Insert or replace by object_id; (namespace_id, path) is unique: another object at
        the same path raises `Conflict`. `NotFound` if the namespace is missing."""

    @abstractmethod
    async def get_object(self, object_id: str) -> CatalogObject: ...

    @abstractmethod
    async def list_objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        """Objects ordered by path."""

    @abstractmethod
    async def delete_object(self, object_id: str, *, audit: AuditEvent | None = None) -> None:
        """`NotFound` if absent."""

    # -- references (verify, GC) --------------------------------------------------------------

    @abstractmethod
    def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        """Every (kind, subject_id, sha256, size_bytes) a record holds: kind is 'snapshot'
        (subject 'run_id@revision'), 'artifact', 'object' or 'definition' (a published
        definition version, subject 'kind/definition_id@version'). Values are the ones reads
        use."""

    async def iter_record_problems(self) -> AsyncIterator[VerifyProblem]:
        """Records whose stored form contradicts itself: a row whose copy used for reads does
        not validate or disagrees with the columns kept for indexing (a hand edit).

        Note for implementers: a store that keeps one copy of each record yields nothing,
        which is this default.
        """
        return
        yield  # an async generator that yields nothing

    async def iter_all_record_problems(
        self, references: ReferenceSink | None = None
    ) -> AsyncIterator[VerifyProblem]:
        """What `iter_record_problems` and `iter_binding_problems` yield, together (verify
        calls this), and, when ``references`` is given, every blob reference of
        `iter_blob_references` passed to it in batches of at most `REFERENCE_BATCH`. A store
        that can do all of it in one read of each record overrides it (the SQL stores do)."""
        async for problem in self.iter_record_problems():
            yield problem
        async for problem in self.iter_binding_problems():
            yield problem
        if references is not None:
            batch: list[tuple[str, str, str, int]] = []
            async for reference in self.iter_blob_references():
                batch.append(reference)
                if len(batch) >= REFERENCE_BATCH:
                    await references(batch)
                    batch = []
            if batch:
                await references(batch)
