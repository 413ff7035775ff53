"""The blob port: bytes addressed by their SHA-256.

A blob's key is its digest, so blobs are immutable and identical bytes are stored once.
Writers stream, hash and publish atomically; readers verify the digest while streaming and
raise `IntegrityError` on mismatch. Adapters: memory, local directory, S3.

`BlobStore` owns what is the same for every backend. Its public methods check their arguments
(digests, ``expected_sha256``, ``chunk_size``: `ValidationError` before a backend is called),
hash what is written and compare it with ``expected_sha256``, hash what is read and compare
it with the digest asked for, and build every `NotFound` and `IntegrityError` (``operation``,
``sha256``, ``backend``, ``path``). A backend implements raw primitives only. Each receives a
checked bare lowercase hex digest (``hexd``) and signals an absent blob by raising `NotFound`
(any message: the base raises its own, with the details):

- ``async _write(source)``: consume ``source`` (a `BlobSource`: the caller's bytes, hashed by
  the base as they pass), stage them, ``info = await source.finish()`` (the `BlobInfo`; it
  raises the `IntegrityError` of a stated digest that differs: discard the staged bytes),
  then publish them under ``info.sha256`` atomically (already there: nothing to do); durable
  when it returns;
- ``_read(hexd, chunk_size)``: an async generator of the stored bytes in pieces of any size
  (``chunk_size`` is what the reader asked for, a hint; the base cuts pieces to it), raising
  `NotFound` before its first piece when absent;
- ``async _size(hexd) -> int``, ``async _delete(hexd) -> bool`` (True if it existed),
  ``_digests()`` (async generator of every stored digest, bare hex, any order) and
  ``_locate(hexd) -> BlobLocation`` (pure, no I/O).

Optional fast paths, each with a default built on the primitives, receive checked input:
``_open_sink()`` (a `BlobSink` for `put_file`'s worker threads, or None: `put_stream`);
``_exists(hexd)``; ``_put_bytes(hexd, data)`` and ``_put_many([(hexd, data), ...])`` (bytes
the base has hashed already); ``_get_bytes(hexd) -> (data, sha256 | None)``;
``_rehash(hexd) -> (sha256, size)`` (``verify``) and ``_rehash_each(hexds)`` (``verify_each``;
default: a loop over ``verify``). Backends never compare digests or build the blob errors,
and never hash what they write; a read fast path may return the SHA-256 it computed where it
read the bytes (in its worker thread, sparing a second pass), which the base then compares.
The conformance suite is
`strongroom.testing.blobs.BlobStoreTests`; docs/architecture.md ("Adding a backend") shows a
complete backend. `BlobSource` and the hashing it does are in `strongroom.ports.blob_source`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.errors import IntegrityError, NotFound, StrongroomError, ValidationError
from strongroom.models import BlobInfo, BlobLocation

__all__ = [
    "CHUNK_SIZE",
    "BlobSink",
    "BlobSource",
    "BlobStore",
    "StagingItem",
    "StoredBlob",
    "check_blob_digest",
]


from strongroom.ports.blob_pump import BlobSink, FilePump, fd_chunks
from strongroom.ports.blob_source import (
    _THREAD_HASH,
    CHUNK_SIZE,
    BlobSource,
    _close,
    _digest_of,
    _Hashing,
    _one,
    _sha256_hex,
    check_blob_digest,
)


@dataclass(frozen=True)
class StoredBlob:
    """A blob as the store lists it: ``modified`` None when the backend cannot tell."""

    sha256: str
    size_bytes: int
    modified: datetime | None


@dataclass(frozen=True)
class StagingItem:
    """Bytes a writer staged and did not publish (a temp file, a staging object)."""

    path: str  # backend-relative
    size_bytes: int
    modified: datetime
    live: bool  # a writer still holds it


# The read size the default `_rehash` and `_get_bytes` ask `_read` for.
_WHOLE_READ = 8 * 1024 * 1024


class BlobStore(ABC):
    """Async content-addressed byte store. Backends implement the ``_`` primitives only."""

    backend: str = "abstract"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare the store (create directories, check buckets). Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    # -- the public API: checks, hashing, errors ----------------------------------------------

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobInfo:
        """Consume ``chunks``, hash them, publish the blob atomically under its digest.

        Durable when it returns. Publishing a digest that already exists is a no-op.
        If ``expected_sha256`` is given and differs from the computed digest, nothing is
        published and `IntegrityError` is raised.
        """
        expected = self._expected(expected_sha256)
        source = self._source(chunks, expected)
        try:
            await self._write(source)
            return await source.finish()
        finally:
            source.abandon()

    async def put_file(
        self,
        fd: int,
        *,
        expected_sha256: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BlobInfo:
        """Store the bytes of the open descriptor ``fd`` from its position to its end (the
        caller keeps and closes it), read once: the bytes hashed are the bytes stored, even if
        the file changes meanwhile. Durable when it returns, as `put_stream`, whose guarantees
        it keeps (an existing blob is never replaced; a mismatch with ``expected_sha256``,
        an error or a cancellation leaves nothing published and nothing staged).

        ``progress(bytes_read)`` is called on the event loop as the file is read, and with
        the total before the blob is published; if it raises, the put fails with that error.
        On a backend that offers a `BlobSink` (the local store), reading, hashing and writing
        run at once in worker threads, so a large file costs about what hashing it costs;
        elsewhere this is `put_stream` over the file's chunks.
        """
        expected = self._expected(expected_sha256)
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise ValidationError(
                "put: fd must be an open file descriptor",
                operation="put",
                backend=self.backend,
                fd=repr(fd)[:100],
            )
        sink = await self._open_sink()
        if sink is None:
            return await self.put_stream(fd_chunks(fd, progress), expected_sha256=expected)
        return await FilePump(fd, sink, expected, self._put_mismatch, progress).run()

    async def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> BlobInfo:
        expected = self._expected(expected_sha256)
        if type(data) is not bytes:
            data = bytes(data)
        hexd = await _digest_of(data)
        if expected is not None and hexd != expected:
            raise self._mismatch("put", expected, hexd)
        await self._put_bytes(hexd, data)
        return BlobInfo(sha256=hexd, size_bytes=len(data))

    async def put_many(self, items: Sequence[bytes]) -> list[BlobInfo]:
        """Put several small blobs. Backends may batch durability work (one fsync pass)."""
        if not items:
            return []
        blobs = [item if type(item) is bytes else bytes(item) for item in items]
        if sum(map(len, blobs)) >= _THREAD_HASH:
            digests = await asyncio.to_thread(_digests_of, blobs)
        else:
            digests = _digests_of(blobs)
        await self._put_many(list(zip(digests, blobs, strict=True)))
        return [
            BlobInfo(sha256=hexd, size_bytes=len(data))
            for hexd, data in zip(digests, blobs, strict=True)
        ]

    def get_stream(self, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in chunks of at most ``chunk_size``, verifying the digest as
        they pass.

        Raises `NotFound` (before the first chunk) when absent and `IntegrityError` (after the
        last chunk) when the stored bytes no longer hash to ``sha256``; a consumer that must
        not act on unverified bytes buffers until the iterator ends (``get_bytes`` does).
        """
        hexd = self._hex(sha256, "get")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValidationError(
                "get: chunk_size must be a positive integer",
                operation="get",
                backend=self.backend,
                chunk_size=chunk_size if isinstance(chunk_size, int) else repr(chunk_size)[:100],
            )
        return self._verified_stream(hexd, chunk_size)

    async def _verified_stream(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        pieces = self._read_for("get", hexd, chunk_size)
        hashing = _Hashing()
        piece: bytes | None
        try:
            try:
                piece = await anext(pieces)
            except StopAsyncIteration:
                piece = None
            except NotFound:
                raise self._not_found("get", hexd) from None
            while piece is not None:
                if piece:
                    if hashing.add(piece):
                        await hashing.flush()  # hashed in a thread while the reader has it
                    if len(piece) <= chunk_size:
                        yield piece
                    else:
                        for start in range(0, len(piece), chunk_size):
                            yield piece[start : start + chunk_size]
                try:
                    piece = await anext(pieces)
                except StopAsyncIteration:
                    piece = None
        except BaseException:
            hashing.abandon()
            raise
        finally:
            await _close(pieces)
        actual = await hashing.hexdigest()
        if actual != hexd:
            raise self._mismatch("get", hexd, actual)

    async def get_bytes(self, sha256: str) -> bytes:
        """The whole blob, verified before it is returned."""
        hexd = self._hex(sha256, "get")
        try:
            data, actual = await self._get_bytes(hexd)
        except NotFound:
            raise self._not_found("get", hexd) from None
        if actual is None:
            actual = await _digest_of(data)
        if actual != hexd:
            raise self._mismatch("get", hexd, actual)
        return data

    async def verify(self, sha256: str) -> BlobInfo:
        """Re-hash a stored blob. `IntegrityError` on mismatch, `NotFound` when absent."""
        hexd = self._hex(sha256, "verify")
        try:
            actual, size = await self._rehash(hexd)
        except NotFound:
            raise self._not_found("verify", hexd) from None
        if actual != hexd:
            raise self._mismatch("verify", hexd, actual)
        return BlobInfo(sha256=hexd, size_bytes=size)

    async def verify_each(self, digests: Sequence[str]) -> list[BlobInfo | StrongroomError | None]:
        """`verify` of each digest, in order: its `BlobInfo`, the error that fails it (a
        mismatch, a malformed digest...), or None when it is absent (`NotFound`)."""
        out: list[BlobInfo | StrongroomError | None] = [None] * len(digests)
        wanted: list[tuple[int, str]] = []
        for index, digest in enumerate(digests):
            try:
                wanted.append((index, self._hex(digest, "verify")))
            except ValidationError as exc:
                out[index] = exc
        if not wanted:
            return out
        found = await self._rehash_each([hexd for _, hexd in wanted])
        for (index, hexd), result in zip(wanted, found, strict=True):
            if isinstance(result, NotFound):
                continue
            if isinstance(result, StrongroomError):
                out[index] = result
            elif result[0] != hexd:
                out[index] = self._mismatch("verify", hexd, result[0])
            else:
                out[index] = BlobInfo(sha256=hexd, size_bytes=result[1])
        return out

    async def stat(self, sha256: str) -> BlobInfo:
        """Size of a stored blob without reading it. `NotFound` when absent."""
        hexd = self._hex(sha256, "stat")
        try:
            size = await self._size(hexd)
        except NotFound:
            raise self._not_found("stat", hexd) from None
        return BlobInfo(sha256=hexd, size_bytes=size)

    async def exists(self, sha256: str) -> bool:
        return await self._exists(self._hex(sha256, "exists"))

    async def delete(self, sha256: str) -> bool:
        """Remove a blob; True if it existed. Callers own reference checks (retention, GC)."""
        return await self._delete(self._hex(sha256, "delete"))

    def iter_digests(self) -> AsyncIterator[str]:
        """Every stored digest, in no particular order."""
        return self._digests()

    def locate(self, sha256: str) -> BlobLocation:
        """Where the blob lives (pure computation, no I/O)."""
        return self._locate(self._hex(sha256, "locate"))

    def iter_inventory(self) -> AsyncIterator[StoredBlob]:
        """Every stored blob with its size and, where the backend knows it, when it was last
        written (garbage collection leaves blobs younger than its grace period alone)."""
        return self._inventory()

    async def list_staging(self, *, limit: int = 100_000) -> list[StagingItem]:
        """What writers left half-done: temp files, staging objects (at most ``limit``).
        ``live``: a writer still holds it (never removed)."""
        return await self._staging(limit)

    async def remove_staging(self, path: str, *, older_than: datetime) -> int:
        """Remove one staging item `list_staging` named, if it is not live and was last
        written before ``older_than``; returns the bytes freed (0: kept or already gone)."""
        return await self._remove_staging(path, older_than)

    async def list_uploads(self, *, limit: int = 10_000) -> list[StagingItem]:
        """Incomplete multipart uploads writers left (S3; other backends have none), at most
        ``limit``: ``path`` names the key and the upload, ``size_bytes`` is what its parts hold,
        ``modified`` its last activity (the newest part)."""
        return await self._uploads(limit)

    async def abort_upload(self, path: str, *, older_than: datetime) -> int:
        """Abort one upload `list_uploads` named, if its last activity is before
        ``older_than``; returns the bytes freed (0: it moved since, is gone, or ``path`` is
        not one this store names)."""
        return await self._abort_upload(path, older_than)

    # -- primitives: what a backend implements ------------------------------------------------

    @abstractmethod
    async def _write(self, source: BlobSource) -> None:
        """Consume ``source``, stage the bytes, ``info = await source.finish()`` (raising the
        mismatch: discard the staged bytes then), publish them under ``info.sha256``
        atomically (already there: nothing to do). Durable when it returns."""

    @abstractmethod
    def _read(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        """The stored bytes as they are, in pieces of any size (``chunk_size`` is a hint);
        `NotFound` before the first piece when absent. An async generator, so closing it early
        releases what it holds."""

    def _read_for(self, operation: str, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        """`_read` on behalf of the public ``operation`` (``get``, ``verify``): a backend whose
        own errors name the operation (S3's) overrides this instead. Default: `_read`."""
        return self._read(hexd, chunk_size)

    @abstractmethod
    async def _size(self, hexd: str) -> int:
        """The stored size without reading the bytes; `NotFound` when absent."""

    @abstractmethod
    async def _delete(self, hexd: str) -> bool:
        """Remove the blob; True if it existed."""

    @abstractmethod
    def _digests(self) -> AsyncIterator[str]:
        """Every stored digest (bare lowercase hex), in no particular order."""

    @abstractmethod
    def _locate(self, hexd: str) -> BlobLocation:
        """Where the blob lives (pure computation, no I/O)."""

    # -- optional fast paths, with defaults built on the primitives ---------------------------

    async def _open_sink(self) -> BlobSink | None:
        """A `BlobSink` staging one new blob for `put_file`, or None (the default): the
        backend's writes do not block a thread, and `put_file` is `put_stream`."""
        return None

    async def _inventory(self) -> AsyncIterator[StoredBlob]:
        """Default: `_digests` and `_size` each, times unknown."""
        async for hexd in self._digests():
            try:
                size = await self._size(hexd)
            except NotFound:
                continue  # deleted while listed
            yield StoredBlob(hexd, size, None)

    async def _staging(self, limit: int) -> list[StagingItem]:
        """Default: a backend that stages nothing outside its blobs."""
        return []

    async def _remove_staging(self, path: str, older_than: datetime) -> int:
        return 0

    async def _uploads(self, limit: int) -> list[StagingItem]:
        """Default: a backend without multipart uploads."""
        return []

    async def _abort_upload(self, path: str, older_than: datetime) -> int:
        return 0

    async def _exists(self, hexd: str) -> bool:
        try:
            await self._size(hexd)
        except NotFound:
            return False
        return True

    async def _put_bytes(self, hexd: str, data: bytes) -> None:
        """Store ``data``, which the base has hashed to ``hexd``; durable when it returns."""
        info = BlobInfo(sha256=hexd, size_bytes=len(data))
        await self._write(BlobSource(_one(data), hexd, self._put_mismatch, known=info))

    async def _put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Store each ``(hexd, data)`` pair (hashed by the base). Default: `_put_bytes` each."""
        for hexd, data in blobs:
            await self._put_bytes(hexd, data)

    async def _get_bytes(self, hexd: str) -> tuple[bytes, str | None]:
        """The stored bytes as they are, and None, or their SHA-256 when the backend hashed
        them where it read them (e.g. in its reading thread, sparing the base a pass over
        them); `NotFound` when absent. The base hashes (if need be) and compares."""
        pieces = self._read_for("get", hexd, _WHOLE_READ)
        try:
            return b"".join([piece async for piece in pieces]), None
        finally:
            await _close(pieces)

    async def _rehash(self, hexd: str) -> tuple[str, int]:
        """The SHA-256 (hex) and size of the stored bytes; `NotFound` when absent. The base
        compares. Default: `_read` hashed by the base."""
        hashing = _Hashing()
        size = 0
        pieces = self._read_for("verify", hexd, _WHOLE_READ)
        try:
            async for piece in pieces:
                if hashing.add(piece):
                    await hashing.flush()
                size += len(piece)
        except BaseException:
            hashing.abandon()
            raise
        finally:
            await _close(pieces)
        return await hashing.hexdigest(), size

    async def _rehash_each(self, hexds: Sequence[str]) -> list[tuple[str, int] | StrongroomError]:
        """`_rehash` of each digest, in order, or the error that stopped it (`NotFound` when
        absent). Default: a loop over the public `verify` (so ``verify_each`` is one, as it
        always was: whatever wraps `verify` wraps it too); a local store does the whole
        sequence in one thread hop."""
        out: list[tuple[str, int] | StrongroomError] = []
        for hexd in hexds:
            try:
                info = await self.verify(hexd)
            except StrongroomError as exc:
                out.append(exc)
            else:
                out.append((info.sha256, info.size_bytes))
        return out

    # -- what the base builds for every backend -----------------------------------------------

    def _hex(self, value: str, operation: str) -> str:
        return check_blob_digest(value, operation=operation, backend=self.backend)

    def _expected(self, value: str | None) -> str | None:
        return None if value is None else self._hex(value, "put")

    def _source(self, chunks: AsyncIterable[bytes], expected: str | None) -> BlobSource:
        """A `BlobSource` over ``chunks`` (also for a backend's internal copies, which the
        digest it checks at the end protects)."""
        return BlobSource(chunks, expected, self._put_mismatch)

    def _put_mismatch(self, expected: str, actual: str) -> IntegrityError:
        return self._mismatch("put", expected, actual)

    def _error_details(self, hexd: str) -> dict[str, Any]:
        """Where the blob is, for the errors the base raises. Default: the located path."""
        return {"path": self._locate(hexd).path}

    def _not_found(self, operation: str, hexd: str) -> NotFound:
        return NotFound(
            f"{operation}: blob not found",
            operation=operation,
            sha256=hexd,
            backend=self.backend,
            **self._error_details(hexd),
        )

    def _mismatch(self, operation: str, hexd: str, actual: str) -> IntegrityError:
        return IntegrityError(
            f"{operation}: blob digest mismatch",
            operation=operation,
            sha256=hexd,
            actual_sha256=actual,
            backend=self.backend,
            **self._error_details(hexd),
        )


def _digests_of(blobs: Sequence[bytes]) -> list[str]:
    return [_sha256_hex(data) for data in blobs]
