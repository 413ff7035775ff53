"""The side a transfer writes: a vault (through the `MetadataStore` port: lookups by primary
key, verbatim inserts, the few in-place updates `compare.updatable` allows) or a bundle
directory (`BundleWriter`)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from strongroom.bundle import BundleWriter, RecordKind, verify_bundle
from strongroom.errors import Conflict, NotFound
from strongroom.models import (
    RUN_DELETED_EVENT,
    ArtifactQuery,
    AuditEntry,
    HoldQuery,
    LogQuery,
    RunQuery,
    VerifyReport,
)
from strongroom.ports import BlobStore, MetadataStore
from strongroom.services.verify import ProgressCallback
from strongroom.transfer.report import describe_vault
from strongroom.transfer.sources import ARTIFACT_PAGE
from strongroom.vault import Vault

__all__ = ["BundleSink", "Sink", "VaultSink"]

T = TypeVar("T")


async def _maybe(call: Awaitable[T]) -> T | None:
    try:
        return await call
    except NotFound:
        return None


class Sink(ABC):
    """What the copy engine writes to."""

    blobs: BlobStore

    @abstractmethod
    def describe(self) -> dict[str, str]: ...

    @abstractmethod
    async def needs_check(self) -> bool:
        """False when the target holds no record at all (nothing can conflict)."""
        ...

    @abstractmethod
    async def present(self, kind: RecordKind, batch: Sequence[Any]) -> list[Any | None]:
        """The target's record under each record's primary key, or None."""
        ...

    async def begin_kind(self, kind: RecordKind, *, check_only: bool) -> None:
        return None

    @abstractmethod
    async def write(self, kind: RecordKind, new: Sequence[Any], *, check_only: bool) -> None: ...

    @abstractmethod
    async def replace(self, kind: RecordKind, pairs: Sequence[tuple[Any, Any]]) -> None:
        """Bring records the target holds in an earlier state (second) up to date (first)."""
        ...

    async def audit_head(self) -> tuple[int, str] | None:
        return None

    async def end_kind(self, kind: RecordKind, *, check_only: bool) -> bool:
        """True when the kind turned out to be already there in full (bundle re-export)."""
        return False

    async def finish(self, source: dict[str, str], counts: dict[str, int]) -> None:
        return None

    @abstractmethod
    async def verify(self, progress: ProgressCallback) -> VerifyReport: ...

    async def conflict_hint(self) -> str:
        return ""

    async def close(self) -> None:
        return None


class VaultSink(Sink):
    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.blobs = vault.blobs
        self.store = vault.metadata
        self._checkpoints: dict[int, Any] | None = None
        # Runs this pass found missing from the target: nothing hangs off them there.
        self._absent_runs: set[str] = set()
        self._artifact_cursor: str | None = None
        # The target's channel history per definition, read once per pass, and where each
        # channel will point once the moves seen so far this pass are applied.
        self._moves: dict[tuple[Any, str], dict[str, Any]] = {}
        self._pointers: dict[tuple[Any, str], dict[Any, str | None]] = {}

    def describe(self) -> dict[str, str]:
        return describe_vault(self.vault)

    async def needs_check(self) -> bool:
        # Snapshots, artifacts, log entries and log references all need a run.
        store = self.store
        return bool(
            (await store.query_runs(RunQuery(limit=1, count_limit=1))).total
            or await store.audit_head() is not None
            or await store.list_providers()
            or await store.list_namespaces()
            or await store.list_objects(None, limit=1)
            or await store.list_checkpoints()
            or await store.list_definitions()
            or await store.list_approvals()
            or await store.list_actors()
            or await store.list_holds(HoldQuery(include_released=True, limit=1))
        )

    async def conflict_hint(self) -> str:
        if (await self.store.query_runs(RunQuery(limit=1, count_limit=1))).total == 0:
            return (
                "; the target holds no run but has its own catalog and audit trail (a vault "
                "that was initialised on its own, e.g. by `strongroom init`): import into a "
                "new, empty location instead"
            )
        return ""

    async def present(self, kind: RecordKind, batch: Sequence[Any]) -> list[Any | None]:
        store = self.store
        name = kind.name
        if name == "providers":
            return [await _maybe(store.get_provider(r.provider_id)) for r in batch]
        if name == "namespaces":
            return [await _maybe(store.get_namespace(r.namespace_id)) for r in batch]
        if name == "runs":
            runs = [await _maybe(store.get_run(r.run_id)) for r in batch]
            self._absent_runs.update(
                r.run_id for r, got in zip(batch, runs, strict=True) if not got
            )
            return runs
        if name == "snapshots":
            by_run: dict[str, dict[int, Any]] = {}
            for run_id in dict.fromkeys(r.run_id for r in batch):
                if run_id not in self._absent_runs:
                    by_run[run_id] = {s.revision: s for s in await store.list_snapshots(run_id)}
            return [by_run.get(r.run_id, {}).get(r.revision) for r in batch]
        if name == "artifacts":
            return await self._artifacts_present(batch)
        if name == "log_entries":
            found: dict[tuple[str, int], Any] = {}
            for run_id, group in _groups(batch, lambda r: r.run_id):
                if run_id in self._absent_runs:
                    continue
                low, high = min(r.seq for r in group), max(r.seq for r in group)
                after = low - 1
                while after < high:
                    limit = min(high - after, 100_000)
                    got = await store.read_log_entries(
                        run_id, LogQuery(after_seq=after, limit=limit)
                    )
                    for entry in got:
                        found[(run_id, entry.seq)] = entry
                    if len(got) < limit:
                        break
                    after = got[-1].seq
            return [found.get((r.run_id, r.seq)) for r in batch]
        if name == "log_references":
            return [
                None if r.run_id in self._absent_runs else await store.get_log_reference(r.run_id)
                for r in batch
            ]
        if name == "objects":
            out: list[Any | None] = []
            for obj in batch:
                existing = await _maybe(store.get_object(obj.object_id))
                if existing is None:
                    await self._check_object_path(kind, obj)
                out.append(existing)
            return out
        if name == "definition_versions":
            # Same label or same content: either is this record (or a conflicting one).
            return [
                await _maybe(
                    store.get_definition_version(r.kind, r.definition_id, version=r.version)
                )
                or await _maybe(
                    store.get_definition_version(r.kind, r.definition_id, digest=r.digest)
                )
                for r in batch
            ]
        if name == "channel_moves":
            return [await self._move_present(kind, move) for move in batch]
        if name == "approvals":
            return [await _maybe(store.get_approval(r.approval_id)) for r in batch]
        if name == "actors":
            return [await _maybe(store.get_actor(r.key_id)) for r in batch]
        if name == "holds":
            return [await _maybe(store.get_hold(r.hold_id)) for r in batch]
        if name == "audit_entries":
            low, high = batch[0].seq, batch[-1].seq
            audit = await store.read_audit_entries(after_seq=low - 1, limit=high - low + 1)
            by_seq = {e.seq: e for e in audit}
            return [by_seq.get(r.seq) for r in batch]
        if name == "checkpoints":
            if self._checkpoints is None:
                self._checkpoints = {c.tree_size: c for c in await store.list_checkpoints()}
            return [self._checkpoints.get(r.tree_size) for r in batch]
        raise AssertionError(name)  # pragma: no cover

    async def _move_present(self, kind: RecordKind, move: Any) -> Any | None:
        """The target's copy of a channel move, or None; a new move must follow where the
        channel points in the target (after the new moves before it), else the histories
        diverged: `Conflict` in the check pass, before anything is written."""
        key = (move.kind, move.definition_id)
        if key not in self._moves:
            history = await self.store.list_channel_moves(*key)
            self._moves[key] = {m.move_id: m for m in history}
            current = await self.store.get_channels(*key)
            self._pointers[key] = {c: m.to_digest for c, m in current.items()}
        existing = self._moves[key].get(move.move_id)
        if existing is None:
            pointers = self._pointers[key]
            at = pointers.get(move.channel)
            if move.from_digest != at:
                raise Conflict(
                    f"channel {move.channel.value} of {move.kind.value} {move.definition_id} "
                    f"moved differently in the target: it points at {at or 'nothing'} where "
                    f"the source's move {move.move_id} expects {move.from_digest or 'nothing'}",
                    operation="transfer",
                    kind=kind.name,
                    key=move.move_id,
                    reason="channel_diverged",
                    current_digest=at,
                    expected_digest=move.from_digest,
                )
            pointers[move.channel] = move.to_digest
        return existing

    async def _check_object_path(self, kind: RecordKind, obj: Any) -> None:
        """Another object at the same (namespace, path) would make put_object fail later."""
        same = await self.store.list_objects(obj.namespace_id, prefix=obj.path, limit=1)
        if same and same[0].path == obj.path and same[0].object_id != obj.object_id:
            raise Conflict(
                f"the target already holds another catalog object ({same[0].object_id}) at "
                f"{obj.namespace_id}:{obj.path}, where the source has {obj.object_id}",
                operation="transfer",
                kind=kind.name,
                key=obj.object_id,
                path=obj.path,
            )

    async def _artifacts_present(self, batch: Sequence[Any]) -> list[Any | None]:
        """Artifacts come in id order, batch after batch: read the target's artifacts in the
        same id range with keyset pages instead of one lookup each."""
        ids = [r.artifact_id for r in batch]
        cursor = self._artifact_cursor
        if ids != sorted(ids) or (cursor is not None and ids[0] <= cursor):
            return [await _maybe(self.store.get_artifact(i)) for i in ids]  # not in order
        wanted, last = set(ids), ids[-1]
        found: dict[str, Any] = {}
        while True:
            page = await self.store.list_artifacts(
                ArtifactQuery(after_id=cursor, limit=ARTIFACT_PAGE)
            )
            found.update((a.artifact_id, a) for a in page if a.artifact_id in wanted)
            if len(page) < ARTIFACT_PAGE or page[-1].artifact_id >= last:
                break
            cursor = page[-1].artifact_id
        self._artifact_cursor = last
        return [found.get(i) for i in ids]

    async def begin_kind(self, kind: RecordKind, *, check_only: bool) -> None:
        self._checkpoints = None
        self._artifact_cursor = None
        self._moves = {}
        self._pointers = {}
        if kind.name == "runs":
            self._absent_runs = set()

    async def write(self, kind: RecordKind, new: Sequence[Any], *, check_only: bool) -> None:
        if check_only or not new:
            return
        store = self.store
        name = kind.name
        if name == "providers":
            for r in new:
                await store.put_provider(r)
        elif name == "namespaces":
            for r in new:
                await store.put_namespace(r)
        elif name == "runs":
            for r in new:
                await store.insert_run(r)
        elif name == "snapshots":
            for r in new:
                await store.insert_snapshot(r)
        elif name == "artifacts":
            await store.insert_artifacts(new)
        elif name == "log_entries":
            for _run_id, group in _groups(new, lambda r: r.run_id):
                await store.append_log_entries(group)
        elif name == "log_references":
            for r in new:
                await store.put_log_reference(r)
        elif name == "objects":
            for r in new:
                await store.put_object(r)
        elif name == "definition_versions":
            for r in new:
                await store.insert_definition_version(r)
        elif name == "channel_moves":
            # In history order, through the compare-and-set: the pointers follow, and a
            # target whose channel moved on its own refuses (StaleChannel).
            for r in new:
                await store.move_channel(r)
        elif name == "approvals":
            for r in new:
                await store.insert_approval(r)  # stored as is, revoked state included
        elif name == "actors":
            for r in new:
                await store.insert_actor(r)  # stored as is, revoked state included
        elif name == "holds":
            for r in new:
                await store.insert_hold(r)  # stored as is, released state included
        elif name == "audit_entries":
            await store.append_audit_entries(new)
            await _apply_deletions(store, new)
        elif name == "checkpoints":
            for r in new:
                await store.insert_checkpoint(r)
        else:  # pragma: no cover
            raise AssertionError(name)

    async def replace(self, kind: RecordKind, pairs: Sequence[tuple[Any, Any]]) -> None:
        store = self.store
        for new, old in pairs:
            if kind.name == "runs":
                # update_run stores version expected + 1: step up to the source's version,
                # which leaves the run exactly as the source has it.
                for version in range(old.version, new.version):
                    await store.update_run(new, expected_version=version)
            elif kind.name == "log_references":
                await store.put_log_reference(new)
            elif kind.name == "providers":
                await store.put_provider(new)
            elif kind.name == "namespaces":
                await store.put_namespace(new)
            elif kind.name == "approvals":
                await store.revoke_approval(
                    new.approval_id,
                    at=new.revoked_at,
                    by=new.revoked_by,
                    reason=new.revoke_reason,
                    signature=new.revoke_signature,
                )
            elif kind.name == "holds":
                await store.release_hold(new)
            elif kind.name == "actors":
                await store.revoke_actor(
                    new.key_id,
                    at=new.revoked_at,
                    by=new.revoked_by,
                    reason=new.revoke_reason,
                    signature=new.revoke_signature,
                )
            else:  # pragma: no cover - compare.updatable decides
                raise AssertionError(kind.name)

    async def audit_head(self) -> tuple[int, str] | None:
        head = await self.store.audit_head()
        return (head.seq, head.hash) if head is not None else None

    async def verify(self, progress: ProgressCallback) -> VerifyReport:
        return await self.vault.verify(on_progress=progress)


class BundleSink(Sink):
    def __init__(self, path: Path) -> None:
        self.writer = BundleWriter(path)
        self.blobs = self.writer.blobs

    async def open(self) -> None:
        await self.writer.open()

    def describe(self) -> dict[str, str]:
        return {"kind": "bundle", "path": str(self.writer.path)}

    async def needs_check(self) -> bool:
        return self.writer.existing is not None

    async def present(self, kind: RecordKind, batch: Sequence[Any]) -> list[Any | None]:
        return [None] * len(batch)  # a bundle's records files are written whole each time

    async def replace(self, kind: RecordKind, pairs: Sequence[tuple[Any, Any]]) -> None:
        # `present` reports no record, so the engine never has an earlier state to update.
        raise Conflict(
            "a bundle's records are written whole, never updated in place",
            operation="export",
            kind=kind.name,
            reason="bundle_update",
        )

    async def begin_kind(self, kind: RecordKind, *, check_only: bool) -> None:
        await self.writer.begin_kind(kind)

    async def write(self, kind: RecordKind, new: Sequence[Any], *, check_only: bool) -> None:
        await self.writer.write(new)

    async def end_kind(self, kind: RecordKind, *, check_only: bool) -> bool:
        return await self.writer.end_kind(kind, check_only=check_only)

    async def finish(self, source: dict[str, str], counts: dict[str, int]) -> None:
        await self.writer.finish(source, counts)

    async def verify(self, progress: ProgressCallback) -> VerifyReport:
        return await verify_bundle(self.writer.path, on_progress=progress)

    async def close(self) -> None:
        await self.writer.close()


def _groups(items: Sequence[Any], key: Callable[[Any], str]) -> list[tuple[str, list[Any]]]:
    """Consecutive runs of items with the same key."""
    out: list[tuple[str, list[Any]]] = []
    for item in items:
        k = key(item)
        if out and out[-1][0] == k:
            out[-1][1].append(item)
        else:
            out.append((k, [item]))
    return out


async def _apply_deletions(store: MetadataStore, entries: Sequence[AuditEntry]) -> None:
    """Deletions the copied entries record, applied to what the target still holds from an
    earlier import: a run deleted under its tombstone, a catalog object deleted since (the
    records kinds were copied first and cannot say what went)."""
    for entry in entries:
        if entry.event == RUN_DELETED_EVENT and entry.subject_type == "run":
            with contextlib.suppress(NotFound):
                await store.delete_run(entry.subject_id, expected=None, audit=None)
        for binding in entry.records:
            if binding.type == "object" and binding.digest is None:
                with contextlib.suppress(NotFound):
                    await store.delete_object(binding.id)
