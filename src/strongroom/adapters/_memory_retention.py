"""Retention in memory: the half of `MemoryMetadataStore` that keeps holds, deletes a run under
its tombstone and keeps garbage collection's blob claims, with the rules of
`strongroom.ports.retention` (the SQL stores' behaviour, in Python)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from strongroom.adapters._memory_registry import MemoryRegistryRecords
from strongroom.errors import Conflict, NotFound
from strongroom.models import (
    TERMINAL_STATUSES,
    ArtifactMetadata,
    AuditEvent,
    CatalogObject,
    Hold,
    HoldQuery,
    LogEntry,
    LogReference,
    Run,
    SnapshotRecord,
    bind,
    record_digest,
    utcnow,
)
from strongroom.ports.retention import (
    BlobClaim,
    DeletionManifest,
    RunForRetention,
    RunUsage,
    deletion_refusal,
)

__all__ = ["MemoryRetentionRecords"]


class MemoryRetentionRecords(MemoryRegistryRecords):
    # Kept by `MemoryMetadataStore` (declared here for the methods below).
    _lock: asyncio.Lock
    _runs: dict[str, Run]
    _snapshots: dict[str, list[SnapshotRecord]]
    _artifacts: dict[str, ArtifactMetadata]
    _logs: dict[str, list[LogEntry]]
    _log_refs: dict[str, LogReference]
    _objects: dict[str, CatalogObject]

    def __init__(self) -> None:
        MemoryRegistryRecords.__init__(self)
        self._holds: dict[str, Hold] = {}

    def _drop_step_claims(self, run_id: str) -> None:
        """Step claims go with their run (`MemoryStepClaims` keeps them)."""

    # -- holds --------------------------------------------------------------------------------

    def _hold_over(self, run: Run) -> Hold | None:
        for hold in self._holds.values():
            if hold.active and (hold.run_id == run.run_id or hold.project == run.project):
                return hold
        return None

    async def insert_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            if hold.hold_id in self._holds:
                raise Conflict(
                    f"hold {hold.hold_id} exists", operation="insert_hold", reason="duplicate_id"
                )
            if audit is not None and hold.run_id is not None and hold.run_id not in self._runs:
                raise NotFound(
                    f"run {hold.run_id} not found", operation="insert_hold", run_id=hold.run_id
                )
            self._holds[hold.hold_id] = hold.model_copy(deep=True)
            entries = self._bind(audit, [bind(hold)])
        await self._audit_appended(entries)

    async def release_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            stored = self._holds.get(hold.hold_id)
            if stored is None:
                raise NotFound(f"no hold {hold.hold_id}", operation="release_hold")
            if not stored.active:
                raise Conflict(
                    f"hold {hold.hold_id} is already released",
                    operation="release_hold",
                    reason="released",
                    hold_id=hold.hold_id,
                )
            self._holds[hold.hold_id] = hold.model_copy(deep=True)
            entries = self._bind(audit, [bind(hold)])
        await self._audit_appended(entries)

    async def get_hold(self, hold_id: str) -> Hold:
        hold = self._holds.get(hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id}", operation="get_hold", hold_id=hold_id)
        return hold.model_copy(deep=True)

    async def list_holds(self, query: HoldQuery) -> list[Hold]:
        chosen = [
            h
            for h in self._holds.values()
            if (query.include_released or h.active)
            and (query.run_id is None or h.run_id == query.run_id)
            and (query.project is None or h.project == query.project)
        ]
        chosen.sort(key=lambda h: (h.created_at, h.hold_id), reverse=True)
        return [h.model_copy(deep=True) for h in chosen[: query.limit]]

    async def iter_holds(self) -> AsyncIterator[Hold]:
        for hold_id in sorted(self._holds):
            yield self._holds[hold_id].model_copy(deep=True)

    async def held_runs(self, run_ids: Sequence[str]) -> set[str]:
        return {
            run_id
            for run_id in set(run_ids)
            if (run := self._runs.get(run_id)) is not None and self._hold_over(run) is not None
        }

    # -- runs ---------------------------------------------------------------------------------

    async def iter_ended_runs(self) -> AsyncIterator[RunForRetention]:
        for run in list(self._runs.values()):
            if run.status in TERMINAL_STATUSES:
                yield RunForRetention(
                    run_id=run.run_id,
                    project=run.project,
                    playbook_id=None if run.playbook is None else run.playbook.playbook_id,
                    status=run.status,
                    ended_at=run.updated_at,
                    digest=record_digest(run),
                )

    async def run_usage(self, run_id: str) -> RunUsage:
        if run_id not in self._runs:
            raise NotFound(f"run {run_id} not found", operation="run_usage", run_id=run_id)
        blobs: dict[str, int] = {}
        records = 1
        for snap in self._snapshots.get(run_id, []):
            blobs[snap.sha256] = snap.size_bytes
            records += 1
        for art in self._artifacts.values():
            if art.run_id == run_id:
                blobs[art.sha256] = art.size_bytes
                records += 1
        return RunUsage(blobs=blobs, records=records)

    async def delete_run(
        self, run_id: str, *, expected: str | None, audit: AuditEvent | None
    ) -> dict[str, object]:
        async with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise NotFound(f"run {run_id} not found", operation="delete_run", run_id=run_id)
            digest = record_digest(run)
            hold = self._hold_over(run)
            ref = self._log_refs.get(run_id)
            refusal = deletion_refusal(
                run_id,
                status=run.status.value,
                digest=digest,
                expected=expected,
                hold_id=None if hold is None else hold.hold_id,
                finished=ref is not None and ref.sealed and ref.sealed_artifact_id is not None,
                operation="delete_run",
            )
            if refusal is not None and audit is not None:  # verbatim (an import): no checks
                raise refusal
            gone = DeletionManifest(run_id, digest)
            for snap in self._snapshots.get(run_id, []):
                gone.add("snapshot", f"{run_id}@{snap.revision}", record_digest(snap), snap.sha256)
            arts = sorted(
                (a for a in self._artifacts.values() if a.run_id == run_id),
                key=lambda a: a.artifact_id,
            )
            for art in arts:
                gone.add("artifact", art.artifact_id, record_digest(art), art.sha256)
            if ref is not None:
                gone.add("log_ref", run_id, record_digest(ref))
            chain = self._logs.get(run_id, [])
            if chain:
                gone.add_log_head(chain[-1].seq, chain[-1].hash)
            computed = gone.details(run.project, run.status.value)
            for art in arts:
                del self._artifacts[art.artifact_id]
            self._snapshots.pop(run_id, None)
            self._logs.pop(run_id, None)
            self._log_refs.pop(run_id, None)
            self._drop_step_claims(run_id)
            del self._runs[run_id]
            entries = []
            if audit is not None:
                event = audit.model_copy(update={"details": {**audit.details, **computed}})
                entries = self._chain([(event, gone.bindings)])
        await self._audit_appended(entries)
        return computed

    # -- blobs --------------------------------------------------------------------------------

    def _used(self) -> set[str]:
        used = {s.sha256 for history in self._snapshots.values() for s in history}
        used.update(a.sha256 for a in self._artifacts.values())
        used.update(o.sha256 for o in self._objects.values())
        used.update(v.digest for versions in self._versions.values() for v in versions)
        return used

    async def referenced_blobs(self, digests: Sequence[str]) -> set[str]:
        return set(digests) & self._used()

    async def blob_users(self, digests: Sequence[str]) -> dict[str, set[str]]:
        wanted = set(digests)
        users: dict[str, set[str]] = {}

        def add(digest: str, user: str) -> None:
            if digest in wanted:
                users.setdefault(digest, set()).add(user)

        for history in self._snapshots.values():
            for snap in history:
                add(snap.sha256, f"run:{snap.run_id}")
        for art in self._artifacts.values():
            add(art.sha256, f"run:{art.run_id}")
        for obj in self._objects.values():
            add(obj.sha256, f"object:{obj.object_id}")
        for versions in self._versions.values():
            for version in versions:
                add(version.digest, "definition")
        return users

    async def claim_blobs(self, digests: Sequence[str], claim_id: str) -> list[str]:
        async with self._lock, self._registry_lock:
            used = self._used()
            now = utcnow()
            mine = sorted(d for d in set(digests) if d not in used and d not in self._claims)
            for digest in mine:
                self._claims[digest] = (claim_id, "claimed", now)
            return mine

    async def finish_blob_claims(self, digests: Sequence[str]) -> None:
        now = utcnow()
        for digest in set(digests):
            claim = self._claims.get(digest)
            if claim is not None:
                self._claims[digest] = (claim[0], "deleted", now)

    async def restore_blob_claims(self, digests: Sequence[str]) -> int:
        now = utcnow()
        changed = 0
        for digest in set(digests):
            claim = self._claims.get(digest)
            if claim is not None and claim[1] == "deleted":
                self._claims[digest] = (claim[0], "restored", now)
                changed += 1
        return changed

    async def drop_blob_claims(self, *, before: datetime) -> int:
        gone = [
            d
            for d, (_, state, at) in self._claims.items()
            if state in ("deleted", "restored") and at < before
        ]
        for digest in gone:
            del self._claims[digest]
        return len(gone)

    async def list_blob_claims(
        self, *, state: str | None = None, digests: Sequence[str] | None = None, limit: int = 1000
    ) -> list[BlobClaim]:
        chosen = sorted(
            (BlobClaim(d, c, s, at) for d, (c, s, at) in self._claims.items()),
            key=lambda b: (b.updated_at, b.sha256),
        )
        wanted = None if digests is None else set(digests)
        return [
            b
            for b in chosen
            if (state is None or b.state == state) and (wanted is None or b.sha256 in wanted)
        ][:limit]
