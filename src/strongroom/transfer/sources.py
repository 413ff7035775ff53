"""The side a transfer reads: every record of a vault (`iter_vault_records`) or of a bundle,
kind by kind in `RECORD_KINDS` order, and its blob store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from strongroom.bundle import KINDS_BY_NAME, BundleReader, RecordKind
from strongroom.models import ArtifactQuery, LogQuery, RunQuery
from strongroom.ports import BlobStore, MetadataStore
from strongroom.transfer.report import describe_vault
from strongroom.vault import Vault

__all__ = [
    "ARTIFACT_PAGE",
    "AUDIT_KIND",
    "BundleSource",
    "Source",
    "VaultSource",
    "iter_vault_records",
]

ARTIFACT_PAGE = 1000
AUDIT_KIND = KINDS_BY_NAME["audit_entries"]
_RUN_PAGE = 1000
_LOG_PAGE = 5000
_AUDIT_PAGE = 1000
_BATCH = 500
_OBJECTS_FIRST = 10_000


async def _run_pages(store: MetadataStore) -> AsyncIterator[list[Any]]:
    cursor: str | None = None
    while True:
        page = await store.query_runs(
            RunQuery(sort="created_at", descending=False, limit=_RUN_PAGE, cursor=cursor)
        )
        if page.items:
            yield list(page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def iter_vault_records(vault: Vault, kind: RecordKind) -> AsyncIterator[list[Any]]:
    """Every record of ``kind`` in a vault, in batches, in the bundle file order."""
    store = vault.metadata
    name = kind.name
    if name == "providers":
        yield await store.list_providers()
    elif name == "namespaces":
        yield await store.list_namespaces()
    elif name == "runs":
        async for page in _run_pages(store):
            yield page
    elif name in ("snapshots", "log_references"):
        batch: list[Any] = []
        async for page in _run_pages(store):
            for run in page:
                if name == "snapshots":
                    batch.extend(await store.list_snapshots(run.run_id))
                else:
                    ref = await store.get_log_reference(run.run_id)
                    if ref is not None:
                        batch.append(ref)
                if len(batch) >= _BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch
    elif name == "artifacts":
        after: str | None = None
        while True:
            items = await store.list_artifacts(ArtifactQuery(limit=ARTIFACT_PAGE, after_id=after))
            if items:
                yield items
            if len(items) < ARTIFACT_PAGE:
                return
            after = items[-1].artifact_id
    elif name == "log_entries":
        run_ids = sorted([run_id async for run_id in store.iter_log_run_ids()])
        for run_id in run_ids:
            seq = 0
            while True:
                entries = await store.read_log_entries(
                    run_id, LogQuery(after_seq=seq, limit=_LOG_PAGE)
                )
                if entries:
                    yield entries
                if len(entries) < _LOG_PAGE:
                    break
                seq = entries[-1].seq
    elif name == "objects":
        # list_objects has no cursor: ask for more until the answer is not cut off.
        limit = _OBJECTS_FIRST
        while len(objects := await store.list_objects(None, limit=limit)) >= limit:
            limit *= 8
        for start in range(0, len(objects), _BATCH):
            yield objects[start : start + _BATCH]
    elif name in ("definition_versions", "channel_moves"):
        # Per definition, by (kind, definition_id): its versions oldest first, or its channel
        # history in order (re-applied in that order, each move expects the one before).
        for latest in await store.list_definitions():
            key = (latest.kind, latest.definition_id)
            if name == "definition_versions":
                records: list[Any] = await store.list_definition_versions(*key)
            else:
                records = await store.list_channel_moves(*key)
            if records:
                yield records
    elif name == "approvals":
        approvals = await store.list_approvals()
        for start in range(0, len(approvals), _BATCH):
            yield approvals[start : start + _BATCH]
    elif name == "actors":
        actors = await store.list_actors()
        for start in range(0, len(actors), _BATCH):
            yield actors[start : start + _BATCH]
    elif name == "holds":
        holds: list[Any] = []
        async for hold in store.iter_holds():
            holds.append(hold)
            if len(holds) >= _BATCH:
                yield holds
                holds = []
        if holds:
            yield holds
    elif name == "audit_entries":
        seq = 0
        while True:
            audit = await store.read_audit_entries(after_seq=seq, limit=_AUDIT_PAGE)
            if audit:
                yield audit
            if len(audit) < _AUDIT_PAGE:
                return
            seq = audit[-1].seq
    elif name == "checkpoints":
        yield await store.list_checkpoints()
    else:  # pragma: no cover - RECORD_KINDS is closed
        raise AssertionError(name)


class Source(ABC):
    """What the copy engine reads from."""

    blobs: BlobStore

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """The report's ``source``."""
        ...

    @abstractmethod
    def manifest_source(self) -> dict[str, str]:
        """What a bundle written from this source says about it: backend kinds only."""
        ...

    async def total(self, kind: RecordKind) -> int | None:
        return None

    @abstractmethod
    def records(self, kind: RecordKind) -> AsyncIterator[list[Any]]: ...

    async def audit_hash(self, seq: int) -> str | None:
        """The hash of the source's audit entry ``seq``, None when it has none."""
        async for batch in self.records(AUDIT_KIND):
            for entry in batch:
                if entry.seq == seq:
                    return str(entry.hash)
        return None

    async def close(self) -> None:
        return None


class VaultSource(Source):
    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.blobs = vault.blobs

    def describe(self) -> dict[str, str]:
        return describe_vault(self.vault)

    def manifest_source(self) -> dict[str, str]:
        return {
            "metadata_backend": self.vault.metadata.backend,
            "blob_backend": self.vault.blobs.backend,
        }

    async def total(self, kind: RecordKind) -> int | None:
        if kind.name == "runs":
            # The progress total: every run, not the run index's capped count.
            query = RunQuery(limit=1, count_limit=None)
            return (await self.vault.metadata.query_runs(query)).total
        if kind.name == "audit_entries":
            head = await self.vault.metadata.audit_head()
            return head.seq if head else 0
        return None

    def records(self, kind: RecordKind) -> AsyncIterator[list[Any]]:
        return iter_vault_records(self.vault, kind)

    async def audit_hash(self, seq: int) -> str | None:
        found = await self.vault.metadata.read_audit_entries(after_seq=seq - 1, limit=1)
        return found[0].hash if found and found[0].seq == seq else None


class BundleSource(Source):
    def __init__(self, path: Path) -> None:
        self.reader = BundleReader(path)
        self.blobs = self.reader.blobs

    async def open(self) -> None:
        await self.reader.open()

    def describe(self) -> dict[str, str]:
        return {"kind": "bundle", "path": str(self.reader.path)}

    def manifest_source(self) -> dict[str, str]:
        source = self.reader.manifest.get("source")
        if isinstance(source, dict):
            return {str(k): str(v) for k, v in source.items()}
        return {}

    async def total(self, kind: RecordKind) -> int | None:
        return self.reader.count(kind)

    def records(self, kind: RecordKind) -> AsyncIterator[list[Any]]:
        return self.reader.records(kind)

    async def close(self) -> None:
        await self.reader.close()
