"""Small blobs kept as records, in memory (`strongroom.ports.inline_blobs`): a dict from
digest to bytes, with the SQL stores' rules."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime

from strongroom.models import utcnow
from strongroom.ports.inline_blobs import (
    MAX_INLINE_BATCH,
    InlineBlobRecords,
    check_inline_blobs,
    check_inline_limit,
)

__all__ = ["MemoryInlineBlobs"]


class MemoryInlineBlobs(InlineBlobRecords):
    def __init__(self) -> None:
        self._inline: dict[str, bytes] = {}
        self._inline_stored: dict[str, datetime] = {}

    async def put_inline_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        check_inline_blobs(blobs, "put_inline_blobs")
        now = utcnow()
        for sha256, data in blobs:
            if sha256 not in self._inline:
                self._inline[sha256] = bytes(data)
                self._inline_stored[sha256] = now

    async def get_inline_blob(self, sha256: str) -> bytes | None:
        return self._inline.get(sha256)

    async def inline_blob_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        check_inline_limit(len(digests) or 1, "inline_blob_sizes")
        return {d: len(self._inline[d]) for d in digests if d in self._inline}

    async def delete_inline_blob(self, sha256: str) -> bool:
        self._inline_stored.pop(sha256, None)
        return self._inline.pop(sha256, None) is not None

    async def list_inline_blobs(
        self, *, after: str | None = None, limit: int = MAX_INLINE_BATCH
    ) -> list[tuple[str, int, datetime]]:
        check_inline_limit(limit, "list_inline_blobs")
        keys = sorted(self._inline)
        start = 0 if after is None else bisect.bisect_right(keys, after)
        return [
            (key, len(self._inline[key]), self._inline_stored[key])
            for key in keys[start : start + limit]
        ]

    def _corrupt_inline_for_tests(self, sha256: str) -> None:
        """Flip the first byte of a stored row (the conformance suite's ``corrupt_blob``)."""
        data = bytearray(self._inline[sha256] or b"\0")
        data[0] ^= 0xFF
        self._inline[sha256] = bytes(data)
