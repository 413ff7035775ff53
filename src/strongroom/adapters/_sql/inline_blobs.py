"""Small blobs kept as rows on SQL (migration 0012, `strongroom.ports.inline_blobs`): a put is
one INSERT ... ON CONFLICT DO NOTHING per blob in one transaction (an existing digest keeps its
row), a delete goes through migration 0004's door as every deletion of immutable rows does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.base import SqlStoreBase, fetch_all
from strongroom.adapters._sql.retention import allow_delete
from strongroom.adapters._sql.tables import inline_blobs_table
from strongroom.models import utcnow
from strongroom.ports.inline_blobs import (
    MAX_INLINE_BATCH,
    InlineBlobRecords,
    check_inline_blobs,
    check_inline_limit,
)

__all__ = ["InlineBlobRecordsSql"]

_c = inline_blobs_table.c


class InlineBlobRecordsSql(SqlStoreBase, InlineBlobRecords):
    """The inline blob methods of `SqlMetadataStore`."""

    async def put_inline_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        check_inline_blobs(blobs, "put_inline_blobs")
        if not blobs:
            return
        now = utcnow()
        rows = [
            {"sha256": h, "size_bytes": len(d), "data": bytes(d), "stored_at": now}
            for h, d in blobs
        ]

        def op(conn: Connection) -> None:
            stmt: Any
            if conn.dialect.name == "postgresql":
                stmt = postgresql.insert(inline_blobs_table).on_conflict_do_nothing(
                    index_elements=["sha256"]
                )
            else:
                stmt = sqlite_dialect.insert(inline_blobs_table).on_conflict_do_nothing(
                    index_elements=["sha256"]
                )
            conn.execute(stmt, rows)

        await self._write("put_inline_blobs", op, count=len(rows))

    async def get_inline_blob(self, sha256: str) -> bytes | None:
        rows = await self._read(
            "get_inline_blob", fetch_all(select(_c.data).where(_c.sha256 == sha256))
        )
        return bytes(rows[0].data) if rows else None

    async def inline_blob_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        check_inline_limit(len(digests) or 1, "inline_blob_sizes")
        if not digests:
            return {}
        stmt = select(_c.sha256, _c.size_bytes).where(_c.sha256.in_(list(digests)))
        rows = await self._read("inline_blob_sizes", fetch_all(stmt))
        return {row.sha256: int(row.size_bytes) for row in rows}

    async def delete_inline_blob(self, sha256: str) -> bool:
        def op(conn: Connection) -> bool:
            stmt = delete(inline_blobs_table).where(_c.sha256 == sha256)
            return allow_delete(conn, "inline_blobs", stmt) == 1

        return await self._write("delete_inline_blob", op, sha256=sha256)

    async def list_inline_blobs(
        self, *, after: str | None = None, limit: int = MAX_INLINE_BATCH
    ) -> list[tuple[str, int, datetime]]:
        check_inline_limit(limit, "list_inline_blobs")
        stmt = select(_c.sha256, _c.size_bytes, _c.stored_at).order_by(_c.sha256).limit(limit)
        if after is not None:
            stmt = stmt.where(_c.sha256 > after)
        rows = await self._read("list_inline_blobs", fetch_all(stmt))
        return [(row.sha256, int(row.size_bytes), row.stored_at) for row in rows]
