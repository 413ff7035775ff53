"""The blob port: bytes addressed by their SHA-256.

A blob's key is its digest, so blobs are immutable and identical bytes are stored once.
Writers stream, hash and publish atomically; readers verify the digest while streaming and
raise `IntegrityError` on mismatch. Adapters: memory, local directory, S3.

Note for implementers: only the abstract methods are primitives. The convenience methods
have default bodies built on them; override where the backend can do better.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from strongroom.errors import IntegrityError, NotFound, StrongroomError, ValidationError
from strongroom.ids import check_digest
from strongroom.models import BlobInfo, BlobLocation

__all__ = ["CHUNK_SIZE", "BlobStore", "check_blob_digest"]

CHUNK_SIZE = 1024 * 1024


def check_blob_digest(value: str, *, operation: str, backend: str) -> str:
    """Bare lowercase hex of a digest argument, or `ValidationError` (never reaches storage)."""
    try:
        return check_digest(value)
    except ValueError as exc:
        raise ValidationError(
            f"{operation}: malformed blob digest",
            operation=operation,
            backend=backend,
            reason=str(exc),
            value=repr(value)[:100],
        ) from exc


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class BlobStore(ABC):
    """Async content-addressed byte store."""

    backend: str = "abstract"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare the store (create directories, check buckets). Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    # -- primitives ---------------------------------------------------------------------------

    @abstractmethod
    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobInfo:
        """Consume ``chunks``, hash them, publish the blob atomically under its digest.

        Durable when it returns. Publishing a digest that already exists is a no-op.
        If ``expected_sha256`` is given and differs from the computed digest, nothing is
        published and `IntegrityError` is raised.
        """

    @abstractmethod
    def get_stream(self, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the blob's bytes, verifying the digest as they pass.

        Raises `NotFound` (before the first chunk) when absent and `IntegrityError` (after the
        last chunk) when the stored bytes no longer hash to ``sha256``; a consumer that must
        not act on unverified bytes buffers until the iterator ends (``get_bytes`` does).
        """

    @abstractmethod
    async def stat(self, sha256: str) -> BlobInfo:
        """Size of a stored blob without reading it. `NotFound` when absent."""

    @abstractmethod
    async def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    async def delete(self, sha256: str) -> bool:
        """Remove a blob; True if it existed. Callers own reference checks (retention, GC)."""

    @abstractmethod
    def iter_digests(self) -> AsyncIterator[str]:
        """Every stored digest, in no particular order."""

    @abstractmethod
    def locate(self, sha256: str) -> BlobLocation:
        """Where the blob lives (pure computation, no I/O)."""

    # -- conveniences -------------------------------------------------------------------------

    async def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> BlobInfo:
        return await self.put_stream(_one(data), expected_sha256=expected_sha256)

    async def put_many(self, items: Sequence[bytes]) -> list[BlobInfo]:
        """Put several small blobs. Backends may batch durability work (one fsync pass).

        Note for implementers: the default is a loop over ``put_bytes``.
        """
        return [await self.put_bytes(item) for item in items]

    async def get_bytes(self, sha256: str) -> bytes:
        """The whole blob, verified before it is returned."""
        parts = [chunk async for chunk in self.get_stream(sha256)]
        return b"".join(parts)

    async def verify_each(self, digests: Sequence[str]) -> list[BlobInfo | StrongroomError | None]:
        """`verify` of each digest, in order: its `BlobInfo`, the error that fails it (a
        mismatch, a malformed digest...), or None when it is absent (`NotFound`).

        Note for implementers: the default is a loop over ``verify``; a local store verifies
        the whole sequence in one thread hop.
        """
        out: list[BlobInfo | StrongroomError | None] = []
        for digest in digests:
            try:
                out.append(await self.verify(digest))
            except NotFound:
                out.append(None)
            except StrongroomError as exc:
                out.append(exc)
        return out

    async def verify(self, sha256: str) -> BlobInfo:
        """Re-hash a stored blob. `IntegrityError` on mismatch, `NotFound` when absent."""
        sha256 = check_blob_digest(sha256, operation="verify", backend=self.backend)
        hasher = hashlib.sha256()
        size = 0
        async for chunk in self.get_stream(sha256):
            hasher.update(chunk)
            size += len(chunk)
        if hasher.hexdigest() != sha256:  # get_stream already checks; belt and braces
            raise IntegrityError("blob digest mismatch", sha256=sha256, backend=self.backend)
        return BlobInfo(sha256=sha256, size_bytes=size)
