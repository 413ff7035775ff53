"""In-memory blob store for tests and throwaway vaults: a dict from digest to bytes.

It behaves like the durable backends where it matters to callers: digests are validated,
puts are idempotent, and reads re-hash the stored bytes, so tamper detection can be tested
(see `MemoryBlobStore._corrupt_for_tests`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from strongroom.errors import IntegrityError, NotFound, ValidationError
from strongroom.models import BlobInfo, BlobLocation
from strongroom.ports.blobs import CHUNK_SIZE, BlobStore, check_blob_digest

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """Blobs held in a dict; nothing survives the process."""

    backend = "memory"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryBlobStore(<{len(self._blobs)} blobs>)"

    def _digest(self, value: str, operation: str) -> str:
        return check_blob_digest(value, operation=operation, backend=self.backend)

    def _not_found(self, operation: str, hexd: str) -> NotFound:
        return NotFound(
            f"{operation}: blob not found", operation=operation, sha256=hexd, backend=self.backend
        )

    def _mismatch(self, operation: str, hexd: str, actual: str) -> IntegrityError:
        return IntegrityError(
            f"{operation}: blob digest mismatch",
            operation=operation,
            sha256=hexd,
            actual_sha256=actual,
            backend=self.backend,
            path=f"blobs/{hexd}",
        )

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobInfo:
        expected = None if expected_sha256 is None else self._digest(expected_sha256, "put")
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        async for chunk in chunks:
            data = bytes(chunk)  # a caller may reuse a mutable buffer
            hasher.update(data)
            parts.append(data)
        hexd = hasher.hexdigest()
        if expected is not None and hexd != expected:
            raise self._mismatch("put", expected, hexd)
        data = b"".join(parts)
        self._blobs.setdefault(hexd, data)  # an existing digest already holds these bytes
        return BlobInfo(sha256=hexd, size_bytes=len(data))

    def get_stream(self, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        hexd = self._digest(sha256, "get")
        if chunk_size < 1:
            raise ValidationError(
                "get: chunk_size must be positive", backend=self.backend, chunk_size=chunk_size
            )
        return self._stream(hexd, chunk_size)

    async def _stream(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            data = self._blobs[hexd]
        except KeyError:
            raise self._not_found("get", hexd) from None
        hasher = hashlib.sha256()
        for start in range(0, len(data), chunk_size):
            chunk = data[start : start + chunk_size]
            hasher.update(chunk)
            yield chunk
        actual = hasher.hexdigest()
        if actual != hexd:
            raise self._mismatch("get", hexd, actual)

    async def stat(self, sha256: str) -> BlobInfo:
        hexd = self._digest(sha256, "stat")
        try:
            return BlobInfo(sha256=hexd, size_bytes=len(self._blobs[hexd]))
        except KeyError:
            raise self._not_found("stat", hexd) from None

    async def exists(self, sha256: str) -> bool:
        return self._digest(sha256, "exists") in self._blobs

    async def delete(self, sha256: str) -> bool:
        return self._blobs.pop(self._digest(sha256, "delete"), None) is not None

    async def iter_digests(self) -> AsyncIterator[str]:
        for hexd in list(self._blobs):  # a snapshot: callers may delete while iterating
            yield hexd

    async def verify(self, sha256: str) -> BlobInfo:
        # The port's default compares against its argument verbatim; hand it the bare hex.
        return await super().verify(self._digest(sha256, "verify"))

    def locate(self, sha256: str) -> BlobLocation:
        hexd = self._digest(sha256, "locate")
        return BlobLocation(
            backend=self.backend, path=f"blobs/{hexd}", uri=f"memory://blobs/{hexd}"
        )

    def _corrupt_for_tests(self, sha256: str) -> None:
        """Flip the first byte of a stored blob (an empty blob gains one), as bit rot would."""
        hexd = self._digest(sha256, "corrupt")
        data = self._blobs[hexd]
        self._blobs[hexd] = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"
