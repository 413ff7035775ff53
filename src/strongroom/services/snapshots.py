"""Run state snapshots: an append-only history of the full resumable state of a run.

Each snapshot is a blob (canonical JSON of `RunState`) plus a record with its revision,
SHA-256 and size. ``save`` is compare-and-set on the revision: a stale writer gets `Conflict`.
"""

from __future__ import annotations

from typing import Any

import pydantic

from strongroom.errors import Conflict, IntegrityError, NotFound, ValidationError
from strongroom.models import RunSnapshot, RunState, SnapshotRecord, canonical_json
from strongroom.ports import BlobStore, MetadataStore
from strongroom.services._common import parse, validation_error

__all__ = ["SnapshotService"]


class SnapshotService:
    def __init__(self, store: MetadataStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs

    async def save(
        self, run_id: str, state: RunState | dict[str, Any], *, expected_revision: int
    ) -> SnapshotRecord:
        """Append revision ``expected_revision + 1``; `Conflict` if the latest revision is not
        ``expected_revision`` (0 = the run has no snapshot yet)."""
        if expected_revision < 0:
            raise ValidationError(
                "expected_revision must be >= 0", operation="snapshots.save", run_id=run_id
            )
        parsed = parse(RunState, state, operation="snapshots.save", run_id=run_id)
        latest = await self.latest_revision(run_id)
        if latest == 0:
            await self._store.get_run(run_id)  # NotFound before any blob is written
        if latest != expected_revision:
            raise _stale(run_id, expected_revision, latest)
        payload = canonical_json(parsed.model_dump(mode="json"))
        blob = await self._blobs.put_bytes(payload)
        record = SnapshotRecord(
            run_id=run_id,
            revision=expected_revision + 1,
            sha256=blob.sha256,
            size_bytes=blob.size_bytes,
        )
        try:
            await self._store.insert_snapshot(record)
        except Conflict as exc:
            # The unique (run_id, revision) key is the real compare-and-set: a racing writer
            # that passed the check above collides here.
            raise _stale(run_id, expected_revision, None) from exc
        return record

    async def load(self, run_id: str, revision: int | None = None) -> RunSnapshot:
        """The latest snapshot (or ``revision``), verified against its digest and size."""
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


def _stale(run_id: str, expected: int, latest: int | None) -> Conflict:
    found = f", latest is {latest}" if latest is not None else ""
    return Conflict(
        f"snapshot of run {run_id} is stale: expected revision {expected}{found}",
        operation="snapshots.save",
        run_id=run_id,
        reason="stale_revision",
        expected_revision=expected,
        latest_revision=latest,
    )
