"""A writer's side of garbage collection: when the records store refuses a record because GC
claims a blob it uses (`Conflict`, reason ``blob_reclaimed``), wait for that GC to finish
deleting it, put the bytes again, mark the claim ``restored`` (GC leaves the blob alone while
that mark stands, for the grace period) and write again (docs/retention.md, "Writers and GC").

A claim is settled when GC has deleted the blob (state ``deleted``). A ``claimed`` claim older
than `CLAIM_LEASE` belongs to a GC that died between claiming and deleting: the writer finishes
it as GC would (the blob was unused when claimed and nothing could come to use it since)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Final, TypeVar

from strongroom.errors import Conflict
from strongroom.models import utcnow
from strongroom.ports import BlobStore
from strongroom.ports.retention import RetentionRecords

__all__ = ["CLAIM_LEASE", "is_reclaimed", "write_despite_gc"]

T = TypeVar("T")

CLAIM_LEASE: Final = timedelta(minutes=10)
"""How long a GC may hold a claim before deleting the blob; older claims are abandoned."""

_ATTEMPTS: Final = 8


def is_reclaimed(exc: BaseException) -> bool:
    return isinstance(exc, Conflict) and exc.details.get("reason") == "blob_reclaimed"


async def _settle(store: RetentionRecords, blobs: BlobStore, digests: Sequence[str]) -> None:
    """Return once no claim on ``digests`` is still being deleted (finishing abandoned ones)."""
    wanted = set(digests)
    pause = 0.02
    while True:
        claims = await store.list_blob_claims(state="claimed", digests=sorted(wanted))
        if not claims:
            return
        abandoned = [c.sha256 for c in claims if utcnow() - c.updated_at > CLAIM_LEASE]
        for digest in abandoned:
            await blobs.delete(digest)
        if abandoned:
            await store.finish_blob_claims(abandoned)
            continue
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def write_despite_gc(
    store: RetentionRecords,
    blobs: BlobStore,
    put_again: Callable[[], Awaitable[object]] | None,
    write: Callable[[], Awaitable[T]],
) -> T:
    """``write()``; when it is refused because GC reclaims one of its blobs, settle, call
    ``put_again()`` (which stores the same bytes again) and retry, a bounded number of times.
    Without ``put_again`` (a stream that cannot be read twice) the refusal is raised."""
    deadline = time.monotonic() + 2 * CLAIM_LEASE.total_seconds()
    attempt = 0
    while True:
        try:
            return await write()
        except Conflict as exc:
            attempt += 1
            if not is_reclaimed(exc) or put_again is None:
                raise
            if attempt >= _ATTEMPTS or time.monotonic() > deadline:
                raise
            digests = [str(d) for d in exc.details.get("sha256", [])]
            await _settle(store, blobs, digests)
            await put_again()
            await store.restore_blob_claims(digests)
