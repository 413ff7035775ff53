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

The port is the union of narrow ports, one per cohesive group of records, each with its own
conformance mixin in `strongroom.testing`: `RunRecords` (runs, snapshots, transitions),
`ArtifactRecords`, `LogRecords`, `AuditRecords`, `CatalogRecords`, `RegistryRecords`
(definition versions, channels, approvals, actors), `RetentionRecords`, `StepClaimRecords`,
`InlineBlobRecords` (small blobs kept as rows) and `VerifyRecords` (what verify reads).
A service depends on the narrowest one it needs. `StoreCapabilities` says what a backend can
do beyond the ports (a backend may lack it).

Adapters: memory (tests and scratch vaults), SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from strongroom.models import AuditEntry
from strongroom.ports.artifacts import ArtifactRecords
from strongroom.ports.audit import AuditListener, AuditRecords
from strongroom.ports.catalog import CatalogRecords
from strongroom.ports.chains import BindingKey, ChainRow, binding_key
from strongroom.ports.inline_blobs import InlineBlobRecords
from strongroom.ports.logs import LogRecords, closed_log_reference, sealed_log_conflict
from strongroom.ports.registry import RegistryRecords
from strongroom.ports.retention import RetentionRecords
from strongroom.ports.runs import RunRecords, transition_run_id
from strongroom.ports.step_claims import StepClaimRecords
from strongroom.ports.verify import REFERENCE_BATCH, ReferenceSink, VerifyRecords

__all__ = [
    "REFERENCE_BATCH",
    "AuditListener",
    "BindingKey",
    "ChainRow",
    "MetadataStore",
    "ReferenceSink",
    "StoreCapabilities",
    "binding_key",
    "closed_log_reference",
    "sealed_log_conflict",
    "transition_run_id",
]


@dataclass(frozen=True)
class StoreCapabilities:
    """What a records backend can do beyond the ports.

    ``reopen_by_url``: a second process can open the same store from its URL (verify's audit
    walk then runs in a worker process). ``shared``: several processes may use it at once
    (a file or a server, not process memory). ``database_roles``: writes are made by an
    authenticated database role (``session_role``), which the store records."""

    reopen_by_url: bool = False
    shared: bool = False
    database_roles: bool = False


class MetadataStore(
    RunRecords,
    ArtifactRecords,
    LogRecords,
    AuditRecords,
    CatalogRecords,
    RegistryRecords,
    RetentionRecords,
    StepClaimRecords,
    InlineBlobRecords,
    VerifyRecords,
):
    """The whole records port: every narrow port, plus a lifecycle."""

    backend: str = "abstract"
    capabilities: StoreCapabilities = StoreCapabilities()

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations). Idempotent."""

    @abstractmethod
    async def close(self) -> None: ...

    def set_audit_listener(self, listener: AuditListener | None) -> None:
        """Call ``listener(first_seq, last_seq)`` after every committed transaction that
        appended audit entries (the audit service takes checkpoints from it)."""
        self._audit_listener = listener

    async def _audit_appended(self, entries: Sequence[AuditEntry]) -> None:
        listener = getattr(self, "_audit_listener", None)
        if listener is not None and entries:
            await listener(entries[0].seq, entries[-1].seq)
