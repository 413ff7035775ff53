"""`SqlMetadataStore`: the records port on SQLAlchemy Core, assembled from one class per group
of record kinds (runs, logs, catalog) on `SqlStoreBase`, plus what spans them all: every
blob reference (snapshots, artifacts, objects) that ``verify`` checks against the blob store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import select

from strongroom.adapters._sql.catalog import CatalogRecords
from strongroom.adapters._sql.logs import LogRecords
from strongroom.adapters._sql.runs import RunRecords
from strongroom.adapters._sql.tables import artifacts_table, catalog_objects_table, snapshots_table

__all__ = ["SqlMetadataStore"]


class SqlMetadataStore(RunRecords, LogRecords, CatalogRecords):
    """`MetadataStore` on SQLAlchemy Core. Subclasses supply the engine and the transaction
    discipline (`_create_engine`, optionally `_prepare` and `_run_transaction`)."""

    async def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        s = snapshots_table.c
        snapshot_rows = select(s.run_id, s.revision, s.sha256, s.size_bytes)
        async for row in self._keyset_pages(snapshot_rows, [s.run_id, s.revision]):
            yield ("snapshot", f"{row.run_id}@{row.revision}", row.sha256, row.size_bytes)
        a = artifacts_table.c
        artifact_rows = select(a.artifact_id, a.sha256, a.size_bytes)
        async for row in self._keyset_pages(artifact_rows, [a.artifact_id]):
            yield ("artifact", row.artifact_id, row.sha256, row.size_bytes)
        o = catalog_objects_table.c
        object_rows = select(o.object_id, o.sha256, o.size_bytes)
        async for row in self._keyset_pages(object_rows, [o.object_id]):
            yield ("object", row.object_id, row.sha256, row.size_bytes)
