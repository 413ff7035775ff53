"""The one blob re-hash loop of every verify: a vault's (`verify_vault`), a bundle's
(`strongroom.bundle.verify_bundle`) and the registry's definition blobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from strongroom.errors import StrongroomError
from strongroom.models import BlobInfo
from strongroom.ports import BlobStore

__all__ = ["rehash_blobs"]

# Blobs re-hashed at once: the local store hashes in a worker thread and hashlib lets go of
# the GIL, so a few overlap reading and hashing (and S3 round trips) without holding more
# than a few read buffers.
_VERIFY_CONCURRENCY = 3
_VERIFY_RUN = 8  # blobs re-hashed per verify_each call (per thread hop)


def _nothing() -> None:
    return None


async def rehash_blobs(
    blobs: BlobStore, page: Sequence[str], verified: Callable[[], None] = _nothing
) -> list[int | StrongroomError | None]:
    """Re-hash the blobs of ``page``: runs of `_VERIFY_RUN` at a time (one `verify_each`,
    one thread hop on a local store), `_VERIFY_CONCURRENCY` runs at once (hashing releases
    the GIL); for each blob, in page order, its size, the error that fails it, or None when
    it is gone (deleted while we walked: not a corruption). ``verified`` is called as each
    one is done."""
    outcomes: list[int | StrongroomError | None] = [None] * len(page)
    runs = iter(range(0, len(page), _VERIFY_RUN))

    async def work() -> None:
        for start in runs:  # shared: each run goes to one worker
            run = page[start : start + _VERIFY_RUN]
            for offset, outcome in enumerate(await blobs.verify_each(run)):
                outcomes[start + offset] = (
                    outcome.size_bytes if isinstance(outcome, BlobInfo) else outcome
                )
                verified()

    workers = [asyncio.create_task(work()) for _ in range(min(_VERIFY_CONCURRENCY, len(page)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        # Stop the others before the error (unwrapped) goes on.
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return outcomes
