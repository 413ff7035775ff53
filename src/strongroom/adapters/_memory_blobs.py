"""In-memory blob store for tests and throwaway vaults: a dict from digest to bytes.

It behaves like the durable backends where it matters to callers, since the port's base class
does the checking: digests are validated, puts are idempotent, and reads re-hash the stored
bytes, so tamper detection can be tested (see `MemoryBlobStore._corrupt_for_tests`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from strongroom.errors import NotFound
from strongroom.models import BlobLocation
from strongroom.ports.blobs import BlobSource, BlobStore, StoredBlob

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """Blobs held in a dict; nothing survives the process."""

    backend = "memory"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._written: dict[str, datetime] = {}  # when each blob was first stored

    def __repr__(self) -> str:
        return f"MemoryBlobStore(<{len(self._blobs)} blobs>)"

    async def _write(self, source: BlobSource) -> None:
        parts = [chunk async for chunk in source]
        info = await source.finish()
        self._blobs.setdefault(info.sha256, b"".join(parts))  # an existing one: same bytes
        self._written.setdefault(info.sha256, datetime.now(UTC))

    async def _put_bytes(self, hexd: str, data: bytes) -> None:
        self._blobs.setdefault(hexd, data)
        self._written.setdefault(hexd, datetime.now(UTC))

    async def _put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        for hexd, data in blobs:
            self._blobs.setdefault(hexd, data)
            self._written.setdefault(hexd, datetime.now(UTC))

    async def _read(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        yield self._stored(hexd)

    async def _get_bytes(self, hexd: str) -> tuple[bytes, str | None]:
        return self._stored(hexd), None

    async def _size(self, hexd: str) -> int:
        return len(self._stored(hexd))

    async def _exists(self, hexd: str) -> bool:
        return hexd in self._blobs

    async def _delete(self, hexd: str) -> bool:
        self._written.pop(hexd, None)
        return self._blobs.pop(hexd, None) is not None

    async def _inventory(self) -> AsyncIterator[StoredBlob]:
        for hexd, data in list(self._blobs.items()):
            yield StoredBlob(hexd, len(data), self._written.get(hexd))

    async def _digests(self) -> AsyncIterator[str]:
        for hexd in list(self._blobs):  # a snapshot: callers may delete while iterating
            yield hexd

    def _locate(self, hexd: str) -> BlobLocation:
        return BlobLocation(
            backend=self.backend, path=f"blobs/{hexd}", uri=f"memory://blobs/{hexd}"
        )

    def _stored(self, hexd: str) -> bytes:
        try:
            return self._blobs[hexd]
        except KeyError:
            raise NotFound(hexd) from None

    def _corrupt_for_tests(self, sha256: str) -> None:
        """Flip the first byte of a stored blob (an empty blob gains one), as bit rot would."""
        hexd = self._hex(sha256, "corrupt")
        data = self._blobs[hexd]
        self._blobs[hexd] = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"
