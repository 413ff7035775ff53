"""In-memory `MetadataStore`: the reference semantics of the records port, for fast tests and
scratch vaults. One asyncio lock makes every write atomic; records are stored as validated
model copies so callers can never mutate stored state by accident.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from strongroom.adapters._cursor import (
    capped_total,
    decode_metric_cursor,
    decode_run_cursor,
    encode_metric_cursor,
    encode_run_cursor,
    status_counts_of,
)
from strongroom.adapters._memory_inline_blobs import MemoryInlineBlobs
from strongroom.adapters._memory_retention import MemoryRetentionRecords
from strongroom.adapters._memory_step_claims import MemoryStepClaims
from strongroom.adapters._run_stats import run_stats_of
from strongroom.errors import Conflict, NotFound
from strongroom.models import (
    LEVEL_ORDER,
    ArtifactMetadata,
    ArtifactQuery,
    AuditEntry,
    AuditEvent,
    BoundRecord,
    CatalogObject,
    LogEntry,
    LogQuery,
    LogReference,
    Namespace,
    Provider,
    RecordBinding,
    Run,
    RunPage,
    RunQuery,
    RunStats,
    RunStatsQuery,
    RunStatusCounts,
    SnapshotRecord,
    VerifyProblem,
    bind,
    bind_deleted,
    binding_id,
    record_digest_as,
)
from strongroom.ports.metadata import (
    ChainRow,
    closed_log_reference,
    sealed_log_conflict,
    transition_run_id,
)
from strongroom.ports.verify import binding_problem, log_head_problem

__all__ = ["MemoryMetadataStore"]


_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_M = TypeVar("_M", Run, SnapshotRecord, ArtifactMetadata, LogEntry, AuditEntry)


def _copy(record: _M) -> _M:
    return record.model_copy(deep=True)


class MemoryMetadataStore(MemoryStepClaims, MemoryInlineBlobs, MemoryRetentionRecords):
    backend = "memory"

    def __init__(self) -> None:
        MemoryRetentionRecords.__init__(self)
        MemoryStepClaims.__init__(self)
        MemoryInlineBlobs.__init__(self)
        self._lock = asyncio.Lock()
        self._runs: dict[str, Run] = {}
        self._snapshots: dict[str, list[SnapshotRecord]] = {}
        self._artifacts: dict[str, ArtifactMetadata] = {}
        self._logs: dict[str, list[LogEntry]] = {}
        self._log_refs: dict[str, LogReference] = {}
        self._providers: dict[str, Provider] = {}
        self._namespaces: dict[str, Namespace] = {}
        self._objects: dict[str, CatalogObject] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _require_run(self, run_id: str, operation: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found", operation=operation, run_id=run_id)
        return run

    # -- runs ---------------------------------------------------------------------------------

    def _log_head_of(self, run_id: str) -> LogEntry | None:
        chain = self._logs.get(run_id)
        return chain[-1] if chain else None

    async def insert_run(self, run: Run, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            if run.run_id in self._runs:
                raise Conflict(
                    f"run {run.run_id} already exists", operation="insert_run", run_id=run.run_id
                )
            self._runs[run.run_id] = _copy(run)
            entries = self._bind(audit, [bind(run)])
        await self._audit_appended(entries)

    async def get_run(self, run_id: str) -> Run:
        return _copy(self._require_run(run_id, "get_run"))

    async def update_run(
        self, run: Run, *, expected_version: int, audit: AuditEvent | None = None
    ) -> Run:
        async with self._lock:
            current = self._require_run(run.run_id, "update_run")
            if current.version != expected_version:
                raise Conflict(
                    f"run {run.run_id} changed concurrently",
                    operation="update_run",
                    run_id=run.run_id,
                    reason=f"expected version {expected_version}, found {current.version}",
                )
            stored = run.model_copy(update={"version": expected_version + 1}, deep=True)
            self._runs[run.run_id] = stored
            entries = self._bind(audit, [bind(stored)], log_run=run.run_id)
        await self._audit_appended(entries)
        return _copy(stored)

    async def record_transition(
        self,
        *,
        snapshot: SnapshotRecord | None = None,
        run: Run | None = None,
        expected_version: int = 0,
        log_entries: Sequence[LogEntry] = (),
        audit: AuditEvent | None = None,
    ) -> Run | None:
        run_id = transition_run_id(snapshot, run, log_entries)
        if run_id is None:
            return None
        async with self._lock:  # every check first, then every write: all or nothing
            current = self._require_run(run_id, "record_transition")
            history = self._snapshots.get(run_id, [])
            if snapshot is not None and any(s.revision == snapshot.revision for s in history):
                raise Conflict(
                    f"snapshot revision {snapshot.revision} of run {run_id} exists",
                    operation="record_transition",
                    run_id=run_id,
                    reason="stale_revision",
                )
            if run is not None and current.version != expected_version:
                raise Conflict(
                    f"run {run_id} is at version {current.version}, not {expected_version}",
                    operation="record_transition",
                    run_id=run_id,
                    reason="stale_version",
                )
            if log_entries:
                self._check_log_append(run_id, log_entries)
            if snapshot is not None:
                self._refuse_reclaimed([snapshot.sha256], "record_transition", audit)
            stored: Run | None = None
            bindings: list[RecordBinding] = []
            if snapshot is not None:
                self._snapshots[run_id] = sorted(
                    [*history, _copy(snapshot)], key=lambda s: s.revision
                )
                bindings.append(bind(snapshot))
            if run is not None:
                stored = run.model_copy(update={"version": expected_version + 1}, deep=True)
                self._runs[run_id] = stored
                bindings.append(bind(stored))
            self._logs.setdefault(run_id, []).extend(_copy(e) for e in log_entries)
            entries = self._bind(audit, bindings, log_run=run_id)
        await self._audit_appended(entries)
        return _copy(stored) if stored is not None else None

    async def query_runs(self, query: RunQuery) -> RunPage:
        metric = query.sort_metric
        after: tuple[Any, str] | None = None
        if query.cursor and metric is not None:
            after = decode_metric_cursor(query.cursor)
        elif query.cursor:
            after = decode_run_cursor(query.cursor)
        needle = query.purpose_contains.lower() if query.purpose_contains else None

        def matches(run: Run) -> bool:
            if query.status is not None and run.status not in query.status:
                return False
            if query.project is not None and run.project != query.project:
                return False
            if query.playbook_id is not None and (
                run.playbook is None or run.playbook.playbook_id != query.playbook_id
            ):
                return False
            if query.actor is not None and run.actor != query.actor:
                return False
            if query.previous_run_id is not None and run.previous_run_id != query.previous_run_id:
                return False
            if query.created_after is not None and run.created_at < query.created_after:
                return False
            if query.created_before is not None and run.created_at >= query.created_before:
                return False
            if query.updated_after is not None and run.updated_at < query.updated_after:
                return False
            if query.updated_before is not None and run.updated_at >= query.updated_before:
                return False
            if query.labels and any(run.labels.get(k) != v for k, v in query.labels.items()):
                return False
            for condition in query.where or []:
                held = run.metrics.get(condition.key)
                if held is None or not _COMPARE[condition.op](held, condition.value):
                    return False
            if metric is not None and metric not in run.metrics:
                return False  # a metric sort leaves out the runs without the metric
            return needle is None or needle in run.purpose.lower()

        def key(run: Run) -> tuple[Any, str]:
            if metric is not None:
                return (run.metrics[metric], run.run_id)
            return (getattr(run, query.sort), run.run_id)

        selected = sorted(
            (r for r in self._runs.values() if matches(r)), key=key, reverse=query.descending
        )
        total, exact = capped_total(len(selected), query.count_limit)
        if after is not None:
            selected = [
                r for r in selected if (key(r) < after if query.descending else key(r) > after)
            ]
        page = selected[: query.limit]
        next_cursor = None
        if len(selected) > query.limit:
            last = page[-1]
            if metric is not None:
                next_cursor = encode_metric_cursor(last.metrics[metric], last.run_id)
            else:
                next_cursor = encode_run_cursor(getattr(last, query.sort), last.run_id)
        return RunPage(
            items=[_copy(r) for r in page],
            total=total,
            total_is_exact=exact,
            next_cursor=next_cursor,
        )

    async def count_runs_by_status(self, query: RunQuery) -> RunStatusCounts:
        walk = query.model_copy(update={"status": None, "cursor": None, "limit": 1000})
        read: dict[str, int] = {}
        seen = 0
        while True:
            page = await self.query_runs(walk)
            for run in page.items:
                if query.count_limit is not None and seen > query.count_limit:
                    break
                read[run.status.value] = read.get(run.status.value, 0) + 1
                seen += 1
            if page.next_cursor is None or (
                query.count_limit is not None and seen > query.count_limit
            ):
                return status_counts_of(read, query.count_limit)
            walk = walk.model_copy(update={"cursor": page.next_cursor})

    async def run_stats(self, query: RunStatsQuery) -> RunStats:
        return run_stats_of(self._runs.values(), query)

    # -- snapshots ----------------------------------------------------------------------------

    async def insert_snapshot(
        self, record: SnapshotRecord, *, audit: AuditEvent | None = None
    ) -> None:
        async with self._lock:
            self._require_run(record.run_id, "insert_snapshot")
            history = self._snapshots.setdefault(record.run_id, [])
            if any(s.revision == record.revision for s in history):
                raise Conflict(
                    f"snapshot revision {record.revision} of run {record.run_id} already exists",
                    operation="insert_snapshot",
                    run_id=record.run_id,
                    reason="stale_revision",
                )
            self._refuse_reclaimed([record.sha256], "insert_snapshot", audit)
            history.append(_copy(record))
            history.sort(key=lambda s: s.revision)
            entries = self._bind(audit, [bind(record)])
        await self._audit_appended(entries)

    async def get_snapshot(self, run_id: str, revision: int | None = None) -> SnapshotRecord:
        history = self._snapshots.get(run_id, [])
        if revision is None and history:
            return _copy(history[-1])
        for snap in history:
            if snap.revision == revision:
                return _copy(snap)
        raise NotFound(
            f"run {run_id} has no snapshot" + (f" revision {revision}" if revision else ""),
            operation="get_snapshot",
            run_id=run_id,
        )

    async def list_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        return [_copy(s) for s in self._snapshots.get(run_id, [])]

    # -- artifacts ----------------------------------------------------------------------------

    async def insert_artifacts(
        self, artifacts: Sequence[ArtifactMetadata], *, audit: AuditEvent | None = None
    ) -> None:
        async with self._lock:
            seen: set[str] = set()
            for art in artifacts:
                self._require_run(art.run_id, "insert_artifacts")
                if art.artifact_id in self._artifacts or art.artifact_id in seen:
                    raise Conflict(
                        f"artifact {art.artifact_id} already exists",
                        operation="insert_artifacts",
                        artifact_id=art.artifact_id,
                    )
                seen.add(art.artifact_id)
            self._refuse_reclaimed([a.sha256 for a in artifacts], "insert_artifacts", audit)
            for art in artifacts:
                self._artifacts[art.artifact_id] = _copy(art)
            entries = self._bind(audit, [bind(art) for art in artifacts])
        await self._audit_appended(entries)

    async def get_artifact(self, artifact_id: str) -> ArtifactMetadata:
        art = self._artifacts.get(artifact_id)
        if art is None:
            raise NotFound(
                f"artifact {artifact_id} not found",
                operation="get_artifact",
                artifact_id=artifact_id,
            )
        return _copy(art)

    async def list_artifacts(self, query: ArtifactQuery) -> list[ArtifactMetadata]:
        out: list[ArtifactMetadata] = []
        for art_id in sorted(self._artifacts):
            art = self._artifacts[art_id]
            if query.after_id is not None and art_id <= query.after_id:
                continue
            if query.run_id is not None and art.run_id != query.run_id:
                continue
            if query.role is not None and art.role != query.role:
                continue
            if query.phase is not None and art.phase != query.phase:
                continue
            if query.step is not None and art.step != query.step:
                continue
            if query.namespace is not None and art.namespace != query.namespace:
                continue
            if query.tag is not None and query.tag not in art.tags:
                continue
            out.append(_copy(art))
            if len(out) >= query.limit:
                break
        return out

    # -- logs ---------------------------------------------------------------------------------

    async def append_log_entries(
        self, entries: Sequence[LogEntry], *, audit: AuditEvent | None = None
    ) -> None:
        if not entries:
            return
        async with self._lock:
            run_id = entries[0].run_id
            self._require_run(run_id, "append_log_entries")
            self._check_log_append(run_id, entries)
            self._logs.setdefault(run_id, []).extend(_copy(e) for e in entries)
            appended = self._bind(audit, [], log_run=run_id)
        await self._audit_appended(appended)

    def _check_log_append(self, run_id: str, entries: Sequence[LogEntry]) -> None:
        ref = self._log_refs.get(run_id)
        if ref is not None and ref.sealed:
            raise sealed_log_conflict(run_id)
        expected = len(self._logs.get(run_id, [])) + 1
        for offset, entry in enumerate(entries):
            if entry.run_id != run_id or entry.seq != expected + offset:
                raise Conflict(
                    f"log of run {run_id} moved on concurrently (expected seq "
                    f"{expected + offset}, got {entry.seq})",
                    operation="append_log_entries",
                    run_id=run_id,
                    reason="stale_head",
                )

    async def read_log_entries(self, run_id: str, query: LogQuery) -> list[LogEntry]:
        min_rank = LEVEL_ORDER[query.min_level] if query.min_level else 0
        out: list[LogEntry] = []
        for entry in self._logs.get(run_id, [])[query.after_seq :]:
            if LEVEL_ORDER[entry.level] < min_rank:
                continue
            if query.event is not None and entry.event != query.event:
                continue
            if query.phase is not None and entry.phase != query.phase:
                continue
            if query.since is not None and entry.timestamp < query.since:
                continue
            out.append(_copy(entry))
            if len(out) >= query.limit:
                break
        return out

    async def log_head(self, run_id: str) -> LogEntry | None:
        chain = self._logs.get(run_id)
        return _copy(chain[-1]) if chain else None

    async def count_log_entries(self, run_id: str) -> int:
        return len(self._logs.get(run_id, []))

    async def put_log_reference(
        self, ref: LogReference, *, if_absent: bool = False, audit: AuditEvent | None = None
    ) -> None:
        async with self._lock:
            self._require_run(ref.run_id, "put_log_reference")
            if if_absent and ref.run_id in self._log_refs:
                return
            self._log_refs[ref.run_id] = ref.model_copy(deep=True)
            entries = self._bind(audit, [bind(ref)], log_run=ref.run_id)
        await self._audit_appended(entries)

    async def close_log(
        self, run_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> LogReference:
        async with self._lock:
            self._require_run(run_id, "close_log")
            chain = self._logs.get(run_id, [])
            ref = self._log_refs.get(run_id) or LogReference(
                run_id=run_id, created_at=at, updated_at=at, location="records", entry_count=0
            )
            if not ref.sealed:
                ref = closed_log_reference(ref, chain[-1] if chain else None, at)
                self._log_refs[run_id] = ref
            entries = self._bind(audit, [bind(ref)], log_run=run_id)
        await self._audit_appended(entries)
        return ref.model_copy(deep=True)

    async def get_log_reference(self, run_id: str) -> LogReference | None:
        ref = self._log_refs.get(run_id)
        return ref.model_copy(deep=True) if ref else None

    async def iter_log_rows(self, run_id: str) -> AsyncIterator[ChainRow[LogEntry]]:
        for position, entry in enumerate(list(self._logs.get(run_id, [])), start=1):
            yield ChainRow(key=position, entry=_copy(entry), column_hash=entry.hash)

    async def iter_log_run_ids(self) -> AsyncIterator[str]:
        for run_id in list(self._logs):
            if self._logs[run_id]:
                yield run_id

    # -- catalog ------------------------------------------------------------------------------

    async def put_provider(self, provider: Provider, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            self._providers[provider.provider_id] = provider.model_copy(deep=True)
            entries = self._bind(audit, [bind(provider)])
        await self._audit_appended(entries)

    async def get_provider(self, provider_id: str) -> Provider:
        found = self._providers.get(provider_id)
        if found is None:
            raise NotFound(f"provider {provider_id} not found", operation="get_provider")
        return found.model_copy(deep=True)

    async def list_providers(self) -> list[Provider]:
        return [self._providers[k].model_copy(deep=True) for k in sorted(self._providers)]

    async def put_namespace(self, namespace: Namespace, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            if namespace.provider_id not in self._providers:
                raise NotFound(
                    f"provider {namespace.provider_id} not found", operation="put_namespace"
                )
            self._namespaces[namespace.namespace_id] = namespace.model_copy(deep=True)
            entries = self._bind(audit, [bind(namespace)])
        await self._audit_appended(entries)

    async def get_namespace(self, namespace_id: str) -> Namespace:
        found = self._namespaces.get(namespace_id)
        if found is None:
            raise NotFound(f"namespace {namespace_id} not found", operation="get_namespace")
        return found.model_copy(deep=True)

    async def list_namespaces(self, provider_id: str | None = None) -> list[Namespace]:
        return [
            self._namespaces[k].model_copy(deep=True)
            for k in sorted(self._namespaces)
            if provider_id is None or self._namespaces[k].provider_id == provider_id
        ]

    async def put_object(self, obj: CatalogObject, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            if obj.namespace_id not in self._namespaces:
                raise NotFound(f"namespace {obj.namespace_id} not found", operation="put_object")
            for other in self._objects.values():
                if (
                    other.object_id != obj.object_id
                    and other.namespace_id == obj.namespace_id
                    and other.path == obj.path
                ):
                    raise Conflict(
                        f"an object already exists at {obj.namespace_id}:{obj.path}",
                        operation="put_object",
                        path=obj.path,
                    )
            self._refuse_reclaimed([obj.sha256], "put_object", audit)
            self._objects[obj.object_id] = obj.model_copy(deep=True)
            entries = self._bind(audit, [bind(obj)])
        await self._audit_appended(entries)

    async def get_object(self, object_id: str) -> CatalogObject:
        found = self._objects.get(object_id)
        if found is None:
            raise NotFound(f"object {object_id} not found", operation="get_object")
        return found.model_copy(deep=True)

    async def list_objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        chosen = [
            o
            for o in self._objects.values()
            if (namespace_id is None or o.namespace_id == namespace_id)
            and (prefix is None or o.path.startswith(prefix))
        ]
        chosen.sort(key=lambda o: (o.path, o.namespace_id))
        return [o.model_copy(deep=True) for o in chosen[:limit]]

    async def delete_object(self, object_id: str, *, audit: AuditEvent | None = None) -> None:
        async with self._lock:
            if self._objects.pop(object_id, None) is None:
                raise NotFound(f"object {object_id} not found", operation="delete_object")
            entries = self._bind(audit, [bind_deleted("object", object_id)])
        await self._audit_appended(entries)

    # -- references ---------------------------------------------------------------------------

    async def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        for history in list(self._snapshots.values()):
            for snap in history:
                yield ("snapshot", f"{snap.run_id}@{snap.revision}", snap.sha256, snap.size_bytes)
        for art in list(self._artifacts.values()):
            yield ("artifact", art.artifact_id, art.sha256, art.size_bytes)
        for obj in list(self._objects.values()):
            yield ("object", obj.object_id, obj.sha256, obj.size_bytes)
        for versions in list(self._versions.values()):
            for version in list(versions):
                subject = f"{version.kind.value}/{version.definition_id}@{version.version}"
                yield ("definition", subject, version.digest, version.size_bytes)

    # -- bindings -----------------------------------------------------------------------------

    def _bound_records(self) -> list[BoundRecord]:
        records: list[BoundRecord] = [*self._runs.values()]
        for history in self._snapshots.values():
            records.extend(history)
        records.extend(self._artifacts.values())
        records.extend(self._log_refs.values())
        records.extend(self._providers.values())
        records.extend(self._namespaces.values())
        records.extend(self._objects.values())
        for versions in self._versions.values():
            records.extend(versions)
        for moves in self._moves.values():
            records.extend(moves)
        records.extend(self._approvals.values())
        records.extend(self._actors.values())
        records.extend(self._checkpoints.values())
        records.extend(self._holds.values())
        return records

    async def iter_binding_problems(self) -> AsyncIterator[VerifyProblem]:
        latest: dict[tuple[str, str], tuple[int, RecordBinding]] = {}
        for entry in self._audit:
            for record in entry.records:
                latest[(record.type, record.id)] = (entry.seq, record)
        present: set[tuple[str, str]] = set()
        for rec in self._bound_records():
            key = binding_id(rec)
            present.add(key)
            newest = latest.get(key)
            digest = record_digest_as(rec, None if newest is None else newest[1].digest)
            problem = binding_problem(*key, digest, newest)
            if problem is not None:
                yield problem
        for (kind, ident), (seq, record) in latest.items():
            if kind == "log":
                chain = self._logs.get(ident, [])
                at = record.seq or 0
                found = chain[at - 1].hash if 0 < at <= len(chain) else None
                if at > 0 and found != record.digest:
                    yield log_head_problem(ident, seq, record, found)
            elif (kind, ident) not in present:
                problem = binding_problem(kind, ident, None, (seq, record))
                if problem is not None:
                    yield problem
