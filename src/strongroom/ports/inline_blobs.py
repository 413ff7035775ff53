"""Small blobs kept in the records store (issue 21): the records half of
`strongroom.adapters.InlineBlobStore`.

A blob of at most the store's threshold (64 KiB by default) is a row of the records store, not
a file or an object: putting one is one short transaction instead of a file write, an fsync, a
directory fsync and the record's own commit. The row holds the bytes and their SHA-256 (the
key) as the blob port hashed them; the blob port still verifies every read against the digest,
so a row edited behind the store's back is an `IntegrityError` on read and a problem for
``verify``, exactly like a blob file edited on disk.

Rules every backend keeps:

- ``put_inline_blobs`` stores every pair in one transaction; a digest already stored is left
  as it is (content addressing: same key, same bytes). Durable as a committed record is: on
  SQLite (WAL, ``synchronous=NORMAL``) a crash of the process loses nothing committed; after a
  power cut the last transactions may be lost, never half-applied, and a blob's row is always
  committed before the record that refers to it, so a record never points at a lost blob.
- Rows are never updated (the SQL stores refuse UPDATE with a trigger, as they do for the
  other immutable tables); ``delete_inline_blob`` is garbage collection's door.
- A blob larger than `MAX_INLINE_BYTES` is refused (`ValidationError`): the threshold is the
  caller's choice below that bound.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from strongroom.errors import ValidationError

__all__ = [
    "DEFAULT_INLINE_THRESHOLD",
    "MAX_INLINE_BATCH",
    "MAX_INLINE_BYTES",
    "InlineBlobRecords",
    "check_inline_blobs",
    "check_inline_limit",
]

MAX_INLINE_BYTES: Final = 1024 * 1024
"""The largest blob a records store keeps inline, whatever threshold its caller chose."""

DEFAULT_INLINE_THRESHOLD: Final = 64 * 1024
"""Blobs of at most this many bytes go to the records store (docs/performance.md: measured)."""

MAX_INLINE_BATCH: Final = 1000
"""The most digests ``inline_blob_sizes`` takes, and the largest page ``list_inline_blobs``
returns."""


def check_inline_blobs(blobs: Sequence[tuple[str, bytes]], operation: str) -> None:
    """`ValidationError` for a blob over `MAX_INLINE_BYTES`."""
    for sha256, data in blobs:
        if len(data) > MAX_INLINE_BYTES:
            raise ValidationError(
                f"{operation}: a blob of {len(data)} bytes is too large to keep inline "
                f"(at most {MAX_INLINE_BYTES})",
                operation=operation,
                reason="too_large",
                sha256=sha256,
                size_bytes=len(data),
            )


def check_inline_limit(limit: int, operation: str) -> None:
    if isinstance(limit, bool) or not 1 <= limit <= MAX_INLINE_BATCH:
        raise ValidationError(
            f"{operation}: limit must be between 1 and {MAX_INLINE_BATCH}",
            operation=operation,
            reason="out_of_range",
        )


class InlineBlobRecords(ABC):
    """Blob bytes kept as rows of the records store. Digests are bare lowercase hex, checked
    by the caller (the blob port)."""

    @abstractmethod
    async def put_inline_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Store each ``(sha256, data)`` (hashed by the caller) in one transaction; a digest
        already stored is left as it is. `ValidationError` (nothing stored) for a blob over
        `MAX_INLINE_BYTES`."""

    @abstractmethod
    async def get_inline_blob(self, sha256: str) -> bytes | None:
        """The stored bytes, as they are (the caller verifies them), or None."""

    @abstractmethod
    async def inline_blob_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        """The size of each of ``digests`` stored inline (absent ones are left out); at most
        `MAX_INLINE_BATCH` digests (`ValidationError` beyond)."""

    @abstractmethod
    async def delete_inline_blob(self, sha256: str) -> bool:
        """Remove the row; True if it existed."""

    @abstractmethod
    async def list_inline_blobs(
        self, *, after: str | None = None, limit: int = MAX_INLINE_BATCH
    ) -> list[tuple[str, int, datetime]]:
        """``(sha256, size, stored_at)`` of stored blobs in digest order, from just after
        ``after``; at most ``limit`` (1..`MAX_INLINE_BATCH`). ``stored_at``: when the row was
        first stored (a put of a digest already there keeps it)."""
