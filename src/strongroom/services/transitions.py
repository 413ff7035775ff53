"""One change of a run's state, persisted as one transaction: the snapshot that records it,
the run record's descriptive fields (current step, progress) and its log lines. The
orchestrator writes every step transition this way: one commit instead of three, and never
a snapshot that says "completed" beside a run record that does not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.errors import Conflict, ValidationError
from strongroom.ids import check_entity_id
from strongroom.models import AuditEvent, LogEntry, LogLine, Run, RunState, SnapshotRecord
from strongroom.ports import MetadataStore
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import retry_on_conflict
from strongroom.services._reclaim import write_despite_gc
from strongroom.services.logs import LogService
from strongroom.services.runs import RunService
from strongroom.services.snapshots import SnapshotService, stale_snapshot

__all__ = ["Transition", "TransitionService"]

# A stale snapshot revision means another writer owns the chain; a sealed log means the run
# ended. Neither gets better by trying again.
_FINAL = frozenset({"sealed", "stale_revision"})


@dataclass(frozen=True)
class Transition:
    """What `TransitionService.record` stored."""

    snapshot: SnapshotRecord | None = None
    run: Run | None = None
    log_entries: list[LogEntry] = field(default_factory=list)


@checked_arguments
class TransitionService:
    def __init__(
        self,
        store: MetadataStore,
        snapshots: SnapshotService,
        runs: RunService,
        logs: LogService,
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._runs = runs
        self._logs = logs

    async def record(
        self,
        run_id: str,
        *,
        state: RunState | dict[str, Any] | None = None,
        expected_revision: int | None = None,
        current: Run | None = None,
        run_changes: Mapping[str, Any] | None = None,
        log_lines: Sequence[LogLine | dict[str, Any]] = (),
    ) -> Transition:
        """Store, all or nothing: snapshot revision ``expected_revision + 1`` of ``state``
        (as `SnapshotService.save`), ``run_changes`` to the run record (as
        `RunService.update`, applied to ``current`` when given) and ``log_lines`` (as
        `LogService.append_many`); each part is optional.

        A run update or log append that lost a race to another writer is prepared again
        from a fresh read and retried. A stale snapshot revision or a sealed log raises
        `Conflict` and nothing is written (the snapshot's blob, stored first, stays
        unreferenced until garbage collection)."""
        try:
            run_id = check_entity_id(run_id)
        except ValueError as exc:
            raise ValidationError(
                f"invalid run id: {exc}", operation="transitions.record", reason="bad_id"
            ) from None
        if state is not None and expected_revision is None:
            raise ValidationError(
                "a snapshot needs expected_revision", operation="transitions.record", run_id=run_id
            )
        # Everything that can refuse bad input does so before the snapshot's blob is stored.
        redacted = self._logs.prepare(run_id, log_lines) if log_lines else []
        prepared: tuple[Run, int] | None = None
        if run_changes is not None:
            prepared = await self._runs.prepare_update(run_id, current=current, **run_changes)
        snapshot = None
        if state is not None and expected_revision is not None:
            snapshot = await self._snapshots.prepare(
                run_id, state, expected_revision=expected_revision
            )
        if redacted:
            await self._logs.ensure_reference(run_id)
        first = True

        async def attempt() -> Transition:
            nonlocal first, prepared
            if prepared is None and run_changes is not None:  # a retry: the run changed
                prepared = await self._runs.prepare_update(run_id, **run_changes)
            run, version = prepared if prepared is not None else (None, 0)
            entries = await self._logs.chain(run_id, redacted, cached=first) if redacted else []
            first = False
            audit = AuditEvent(
                event="run.transition",
                subject_type="run",
                subject_id=run_id,
                details={
                    "revision": snapshot.revision if snapshot else None,
                    "version": version + 1 if run is not None else None,
                    "lines": len(entries),
                },
            )
            try:
                stored = await write_despite_gc(
                    self._store,
                    self._snapshots.blobs,
                    None if state is None else (lambda: self._snapshots.put_again(state)),
                    lambda: self._store.record_transition(
                        snapshot=snapshot,
                        run=run,
                        expected_version=version,
                        log_entries=entries,
                        audit=audit,
                    ),
                )
            except Conflict as exc:
                self._logs.forget(run_id)
                prepared = None
                if snapshot is not None and exc.details.get("reason") == "stale_revision":
                    assert expected_revision is not None
                    raise stale_snapshot(run_id, expected_revision, None) from exc
                raise
            self._logs.remember(entries)
            head = entries[-1].seq if entries else None
            if head is not None:
                self._logs.carried(run_id, head)
            return Transition(snapshot=snapshot, run=stored, log_entries=entries)

        return await retry_on_conflict(attempt, final=_FINAL)
