"""rentl's run state store and run index on a vault (see `.stores`)."""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import UUID

from pydantic import BaseModel

from strongroom.errors import Conflict, ErrorInfo, NotFound
from strongroom.integrations.rentl import schemas
from strongroom.integrations.rentl._base import INDEX_NAMESPACE, INDEX_TAG, PAGE, Store
from strongroom.integrations.rentl._handle import (
    as_uuid,
    validated,
)
from strongroom.integrations.rentl.errors import (
    StorageErrorCode,
)
from strongroom.models import RunStatus as StoredStatus
from strongroom.vault import Vault

__all__ = ["StrongroomRunStateStore"]

_PHASE_EVENTS = {
    "running": "started",
    "completed": "completed",
    "failed": "failed",
    "skipped": "skipped",
}
_FINISHED = {"completed", "failed", "cancelled"}


class StrongroomRunStateStore(Store):
    """rentl's ``RunStateStoreProtocol`` on a vault (see the module's table)."""

    async def save_run_state(self, record: schemas.RunStateRecord) -> None:
        parsed, payload = validated(
            record, schemas.RunStateRecord, "save_run_state", "Run state snapshot"
        )
        run_id = str(parsed.run_id)
        with self.handle.mapped("save_run_state", run_id=parsed.run_id):
            vault = await self.handle.ensure_run(run_id)
            state = self._state(parsed, payload)
            for attempt in range(5):
                revision = await vault.snapshots.latest_revision(run_id)
                try:
                    await vault.snapshots.save(run_id, state, expected_revision=revision)
                    break
                except Conflict:
                    if attempt == 4:
                        raise
            await self._mirror(
                vault, run_id, parsed.state.metadata, parsed.state.last_error, state["progress"]
            )

    async def load_run_state(self, run_id: UUID) -> schemas.RunStateRecord | None:
        rid = as_uuid(run_id, "load_run_state")
        with self.handle.mapped("load_run_state", run_id=rid):
            vault = await self.handle.vault()
            try:
                snapshot = await vault.snapshots.load(str(rid))
            except NotFound:
                return None
            payload = snapshot.state.data.get("rentl", {}).get("run_state_record")
            if not isinstance(payload, dict):
                raise self.handle.fail(
                    StorageErrorCode.VALIDATION_ERROR,
                    "Run state snapshot was not written through rentl's ports",
                    "load_run_state",
                    run_id=rid,
                    reason="not_a_rentl_snapshot",
                )
            reference = self.handle.blob_reference(vault.blobs.locate(snapshot.record.sha256))
            payload = {
                **payload,
                "location": reference.model_dump(mode="json"),
                "checksum_sha256": snapshot.record.sha256,
            }
        loaded = self._load(
            self.schemas.run_state_record,
            payload,
            "Run state snapshot",
            "load_run_state",
            run_id=rid,
        )
        return cast(schemas.RunStateRecord, loaded)

    async def save_run_index(self, record: schemas.RunIndexRecord) -> None:
        parsed, payload = validated(
            record, schemas.RunIndexRecord, "save_run_index", "Run index record"
        )
        run_id = str(parsed.metadata.run_id)
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        with self.handle.mapped("save_run_index", run_id=parsed.metadata.run_id):
            vault = await self.handle.ensure_run(run_id, parsed.project_name)
            await vault.artifacts.put_bytes(
                run_id,
                body,
                role="run_state",
                format="json",
                name="run-index.json",
                namespace=INDEX_NAMESPACE,
                tags=[INDEX_TAG],
                description="rentl run index record",
                metadata={"rentl_run_index": payload},
            )
            await self._mirror(vault, run_id, parsed.metadata, parsed.last_error)

    async def list_run_index(
        self, status: schemas.RunStatus | None = None, limit: int | None = None
    ) -> list[schemas.RunIndexRecord]:
        wanted = None if status is None else str(schemas.RunStatus(status))
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise self.handle.fail(
                StorageErrorCode.VALIDATION_ERROR,
                "limit must be a non-negative integer",
                "list_run_index",
                reason="invalid_limit",
            )
        latest: dict[str, Any] = {}
        with self.handle.mapped("list_run_index"):
            vault = await self.handle.vault()
            after: str | None = None
            while True:
                page = await vault.artifacts.list(
                    namespace=INDEX_NAMESPACE, tag=INDEX_TAG, limit=PAGE, after_id=after
                )
                for item in page:  # oldest first: the last one of a run is its newest
                    latest[item.run_id] = item.metadata.get("rentl_run_index")
                if len(page) < PAGE:
                    break
                after = page[-1].artifact_id
        records = [
            self._load(self.schemas.run_index_record, p, "Run index record", "list_run_index")
            for p in latest.values()
        ]
        if wanted is not None:
            records = [r for r in records if _status(r) == wanted]
        records.sort(key=lambda r: str(getattr(r, "updated_at", "")), reverse=True)
        return cast(list[schemas.RunIndexRecord], records[:limit] if limit is not None else records)

    async def close_run(self, run_id: UUID) -> None:
        """End the strongroom run for good, as the newest rentl state says (completed,
        failed with its last error, or cancelled), sealing its log: after this, rentl can
        no longer re-run it or log to it. A run rentl has not finished is left as it is."""
        rid = as_uuid(run_id, "close_run")
        record = await self.load_run_state(rid)
        if record is None:
            return
        parsed, _ = validated(record, schemas.RunStateRecord, "close_run", "Run state snapshot")
        status = str(parsed.state.metadata.status)
        if status not in _FINISHED:
            return
        with self.handle.mapped("close_run", run_id=rid):
            vault = await self.handle.vault()
            run = await vault.runs.get(str(rid))
            if run.status is StoredStatus.PENDING or (
                run.status is StoredStatus.PAUSED and status == "completed"
            ):  # the state machine completes only a running run
                run = await vault.runs.start(str(rid), actor=self.handle.actor)
            if run.status in (StoredStatus.RUNNING, StoredStatus.PAUSED):
                error = _error_info(parsed.state.last_error)
                await vault.runs.transition(
                    str(rid),
                    {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}[
                        status
                    ],
                    error=error if status == "failed" else None,
                    actor=self.handle.actor,
                )

    # -- mapping ------------------------------------------------------------------------------

    def _state(self, record: schemas.RunStateRecord, payload: dict[str, Any]) -> dict[str, Any]:
        """strongroom's `RunState` for a rentl record: what strongroom's tools show (phase
        history, revisions, artifacts, progress, last error) plus the record itself."""
        state = record.state
        ids = self.handle.artifact_ids
        history = []
        for entry in state.phase_history or []:
            event = _PHASE_EVENTS.get(str(entry.status))
            if event is None:
                continue
            history.append(
                {
                    "phase": str(entry.phase),
                    "status": event,
                    "at": entry.completed_at or entry.started_at or record.stored_at,
                    "revision": entry.revision,
                    "artifact_ids": [
                        ids[str(a)] for a in entry.artifact_ids or [] if str(a) in ids
                    ],
                    "error": _error_info(entry.error),
                }
            )
        phases = state.progress.phases
        done = sum(1 for p in phases if str(p.status) in ("completed", "skipped"))
        return {
            "phase_history": history,
            "phase_revisions": {
                _phase_key(str(r.phase), r.target_language): r.revision
                for r in state.phase_revisions or []
            },
            "phase_artifacts": {
                str(group.phase): [
                    ids[str(a.artifact_id)] for a in group.artifacts if str(a.artifact_id) in ids
                ]
                for group in state.artifacts
            },
            "progress": {"steps_total": len(phases), "steps_completed": done},
            "last_error": _error_info(state.last_error),
            "data": {"rentl": {"run_state_record": payload}},
        }

    async def _mirror(
        self,
        vault: Vault,
        run_id: str,
        metadata: schemas.RunMetadata,
        error: schemas.RunError | None,
        progress: dict[str, int] | None = None,
    ) -> None:
        """Carry rentl's status, current phase, last error and (from a run state) phase
        counts onto the run record."""
        run = await vault.runs.get(run_id)
        if run.status in (StoredStatus.COMPLETED, StoredStatus.FAILED, StoredStatus.CANCELLED):
            return
        status = str(metadata.status)
        actor = self.handle.actor
        wants_running = status == "running" and run.status is not StoredStatus.RUNNING
        if wants_running or (status in _FINISHED and run.status is StoredStatus.PENDING):
            run = await vault.runs.start(run_id, actor=actor)
        if status in _FINISHED and run.status is StoredStatus.RUNNING:
            run = await vault.runs.transition(run_id, StoredStatus.PAUSED, actor=actor)
        phase = None if metadata.current_phase is None else str(metadata.current_phase)
        info = _error_info(error)
        changes: dict[str, Any] = {}
        if run.current_phase != phase:
            changes["current_phase"] = phase
        if info is not None and run.last_error != info:
            changes["last_error"] = info
        if progress is not None and (
            run.progress.steps_total != progress["steps_total"]
            or run.progress.steps_completed != progress["steps_completed"]
        ):
            changes["progress"] = {**run.progress.model_dump(), **progress}
        if changes:
            await vault.runs.update(run_id, expected_version=run.version, **changes)


def _error_info(error: schemas.RunError | None) -> ErrorInfo | None:
    if error is None:
        return None
    return ErrorInfo(code=error.code, message=error.message, details=dict(error.details or {}))


def _phase_key(phase: str, language: str | None) -> str:
    return phase if language is None else f"{phase}.{language}"


def _status(record: BaseModel) -> str:
    metadata = getattr(record, "metadata", None)
    return str(getattr(metadata, "status", ""))
