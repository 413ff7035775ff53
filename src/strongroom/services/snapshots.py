"""Run state snapshots: an append-only history of the full resumable state of a run.

Each snapshot is a blob (canonical JSON of `RunState`) plus a record with its revision,
SHA-256 and size. ``save`` is compare-and-set on the revision: a stale writer gets `Conflict`.
"""

from __future__ import annotations

from typing import Any

import pydantic

from strongroom.errors import Conflict, IntegrityError, NotFound
from strongroom.models import (
    AuditEvent,
    RunSnapshot,
    RunState,
    SnapshotRecord,
    check_json_value,
    sorted_json,
)
from strongroom.ports import BlobStore, MetadataStore
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import check_int, parse, validation_error
from strongroom.services._reclaim import is_reclaimed, write_despite_gc

__all__ = ["SnapshotService", "snapshot_event", "stale_snapshot"]


def _state_json(state: RunState) -> bytes:
    """The canonical JSON of a state. ``data`` is usually plain JSON already (the
    orchestrator's plan: megabytes at thousands of steps), so it is encoded as is instead of
    being walked by pydantic first; anything else in it (datetimes, models) takes the slow
    path, with the same result."""
    head = state.model_dump(mode="json", exclude={"data"})
    try:
        return sorted_json({**head, "data": state.data})
    except (TypeError, ValueError):
        return sorted_json(state.model_dump(mode="json"))


@checked_arguments
class SnapshotService:
    def __init__(self, store: MetadataStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs

    @property
    def blobs(self) -> BlobStore:
        """The blob store the states go to."""
        return self._blobs

    async def save(
        self,
        run_id: str,
        state: RunState | dict[str, Any],
        *,
        expected_revision: int,
    ) -> SnapshotRecord:
        """Append revision ``expected_revision + 1``; `Conflict` if the latest revision is not
        ``expected_revision`` (0 = the run has no snapshot yet)."""
        record = await self.prepare(
            run_id, state, expected_revision=expected_revision, precheck=True
        )
        try:
            await write_despite_gc(
                self._store,
                self._blobs,
                lambda: self.put_again(state),
                lambda: self._store.insert_snapshot(record, audit=snapshot_event(record)),
            )
        except Conflict as exc:
            if is_reclaimed(exc):
                raise
            # The unique (run_id, revision) key is the real compare-and-set: a racing writer
            # that passed the check above collides here.
            raise stale_snapshot(run_id, expected_revision, None) from exc
        return record

    async def put_again(self, state: RunState | dict[str, Any]) -> None:
        """Store the blob of ``state`` again (garbage collection deleted it between `prepare`
        and the record's write: `strongroom.services._reclaim`)."""
        parsed = parse(RunState, state, operation="snapshots.save")
        await self._blobs.put_bytes(_state_json(parsed))

    async def prepare(
        self,
        run_id: str,
        state: RunState | dict[str, Any],
        *,
        expected_revision: int,
        precheck: bool = False,
    ) -> SnapshotRecord:
        """The first half of `save`: validate, check, store the state's blob and return the
        record that `save` would insert (`TransitionService` inserts it with the rest of a
        transition).

        ``precheck=False`` skips reading the latest revision first (one round trip fewer, for
        a writer that owns the chain, like the orchestrator): the unique (run, revision) key
        still refuses a stale insert, but only after the state's blob was stored (it stays
        unreferenced until garbage collection). The first revision is always checked, which
        also makes an unknown run fail before anything is written."""
        check_int(
            expected_revision, name="expected_revision", operation="snapshots.save", run_id=run_id
        )
        parsed = parse(RunState, state, operation="snapshots.save", run_id=run_id)
        # Not in the model (a stored state must load whatever it holds): pydantic would write
        # NaN as null, and a state nested too deeply fails only when serialized.
        check_json_value(parsed.data, field="data", operation="snapshots.save", run_id=run_id)
        if precheck or expected_revision == 0:
            latest = await self.latest_revision(run_id)
            if latest == 0:
                await self._store.get_run(run_id)  # NotFound before any blob is written
            if latest != expected_revision:
                raise stale_snapshot(run_id, expected_revision, latest)
        payload = _state_json(parsed)
        blob = await self._blobs.put_bytes(payload)
        return SnapshotRecord(
            run_id=run_id,
            revision=expected_revision + 1,
            sha256=blob.sha256,
            size_bytes=blob.size_bytes,
        )

    async def load(self, run_id: str, revision: int | None = None) -> RunSnapshot:
        """The latest snapshot (or ``revision``), verified against its digest and size."""
        if revision is not None:
            check_int(revision, name="revision", operation="snapshots.load", run_id=run_id)
        record = await self._store.get_snapshot(run_id, revision)
        data = await self._blobs.get_bytes(record.sha256)
        if len(data) != record.size_bytes:
            raise IntegrityError(
                "snapshot size does not match its record",
                operation="snapshots.load",
                run_id=run_id,
                sha256=record.sha256,
            )
        try:
            state = RunState.model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise validation_error(
                exc, operation="snapshots.load", what="RunState", run_id=run_id
            ) from exc
        return RunSnapshot(record=record, state=state)

    async def history(self, run_id: str) -> list[SnapshotRecord]:
        await self._store.get_run(run_id)
        return await self._store.list_snapshots(run_id)

    async def latest_revision(self, run_id: str) -> int:
        try:
            return (await self._store.get_snapshot(run_id)).revision
        except NotFound:
            return 0


def snapshot_event(record: SnapshotRecord) -> AuditEvent:
    """The audit event a snapshot is written with."""
    return AuditEvent(
        event="snapshot.saved",
        subject_type="run",
        subject_id=record.run_id,
        details={"revision": record.revision},
    )


def stale_snapshot(run_id: str, expected: int, latest: int | None) -> Conflict:
    """What a save of a revision that is not the next one raises."""
    found = f", latest is {latest}" if latest is not None else ""
    return Conflict(
        f"snapshot of run {run_id} is stale: expected revision {expected}{found}",
        operation="snapshots.save",
        run_id=run_id,
        reason="stale_revision",
        expected_revision=expected,
        latest_revision=latest,
    )
