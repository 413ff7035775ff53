"""What a blob backend's ``_write`` consumes: `BlobSource`, the caller's bytes hashed as they
pass (in a worker thread, in batches), with ``finish()`` giving the digest or refusing a
mismatch with the digest the caller stated; and the digest check every blob method applies
(`check_blob_digest`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Self

from strongroom.errors import IntegrityError, ValidationError
from strongroom.ids import check_digest
from strongroom.models import BlobInfo

__all__ = ["CHUNK_SIZE", "BlobSource", "check_blob_digest"]

CHUNK_SIZE = 1024 * 1024

# A stream's pieces are hashed in batches of this many bytes in a worker thread (hashlib
# releases the GIL), one batch at a time and in order, while the next batch passes through:
# the hashing overlaps the backend's I/O and the consumer, and a hop costs little next to
# hashing 4 MiB (1 MiB batches measured ~7% slower on memory-store puts of 1 MiB chunks).
_HASH_BATCH = 4 * 1024 * 1024
# Bytes hashed at once (a whole buffer, the tail of a stream) go to a worker thread from this
# size on; less is hashed on the event loop (about 0.7 ms per MiB with SHA-NI).
_THREAD_HASH = 1024 * 1024
# BlobSource joins smaller chunks up to this size before a backend sees them.
_SMALL_CHUNK = 64 * 1024


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


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _digest_of(data: bytes) -> str:
    if len(data) >= _THREAD_HASH:
        return await asyncio.to_thread(_sha256_hex, data)
    return _sha256_hex(data)


def _update(hasher: Any, batch: list[bytes]) -> None:
    for piece in batch:
        hasher.update(piece)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Hashing:
    """SHA-256 of bytes passing through in order: `add` each piece, `flush` when it says so
    (a batch goes to a worker thread while the caller carries on), `hexdigest` at the end."""

    __slots__ = ("_batch", "_batch_size", "_hasher", "_pending")

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._pending: asyncio.Future[None] | None = None

    def add(self, piece: bytes) -> bool:
        """Take ``piece``; True when a batch is ready and the caller must await `flush`."""
        self._batch.append(piece)
        self._batch_size += len(piece)
        return self._batch_size >= _HASH_BATCH

    async def flush(self) -> None:
        """Wait for the previous batch, then start hashing this one in a worker thread."""
        batch, self._batch, self._batch_size = self._batch, [], 0
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, _update, self._hasher, batch)

    async def hexdigest(self) -> str:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        if self._batch_size >= _THREAD_HASH:
            await asyncio.to_thread(_update, self._hasher, self._batch)
        elif self._batch:
            _update(self._hasher, self._batch)
        self._batch, self._batch_size = [], 0
        return self._hasher.hexdigest()

    def abandon(self) -> None:
        """The bytes will never be finished: a batch still being hashed is left to end alone."""
        if self._pending is not None:
            self._pending.add_done_callback(_retrieve)
            self._pending = None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _close(pieces: AsyncIterator[bytes]) -> None:
    aclose = getattr(pieces, "aclose", None)
    if aclose is not None:
        await aclose()


class BlobSource:
    """The bytes of one blob on their way into a backend (what `BlobStore._write` consumes).

    Iterating yields the caller's bytes as immutable ``bytes`` chunks, hashed (in a worker
    thread, a batch behind) and counted as they pass; chunks smaller than 64 KiB are joined
    up to that size first, so a trickle of tiny chunks costs a backend nothing each. Once it
    is exhausted, ``await finish()`` gives the blob's `BlobInfo`, or raises `IntegrityError`
    when the caller stated another digest (``expected``): a backend never hashes or compares
    digests itself. ``expected`` (checked bare hex, or None) lets a backend that can publish
    under the final name while streaming do so.
    """

    __slots__ = (
        "_ended",
        "_hashing",
        "_held",
        "_info",
        "_mismatch",
        "_next",
        "_small",
        "expected",
        "size",
    )

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        expected: str | None,
        mismatch: Callable[[str, str], IntegrityError],
        *,
        known: BlobInfo | None = None,
    ) -> None:
        self.expected = expected
        self.size = 0
        self._next = aiter(chunks).__anext__
        self._hashing = None if known is not None else _Hashing()
        self._info = known
        self._mismatch = mismatch
        self._ended = False
        self._small = bytearray()  # small chunks being joined
        self._held: bytes | None = None  # a large chunk that follows them

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._held
        if chunk is not None:
            self._held = None
        else:
            if self._ended:
                raise StopAsyncIteration
            small = self._small
            while True:
                try:
                    chunk = await self._next()
                except StopAsyncIteration:
                    self._ended = True
                    if not small:
                        raise
                    chunk = bytes(small)
                    break
                if len(chunk) < _SMALL_CHUNK:
                    small += chunk  # a copy: a caller may reuse a mutable buffer
                    if len(small) < _SMALL_CHUNK:
                        continue
                    chunk = bytes(small)
                    break
                if type(chunk) is not bytes:
                    chunk = bytes(chunk)  # a caller may reuse a mutable buffer
                if small:
                    self._held, chunk = chunk, bytes(small)
                break
            if small:
                self._small = bytearray()
        hashing = self._hashing
        if hashing is not None and hashing.add(chunk):
            await hashing.flush()
        self.size += len(chunk)
        return chunk

    def abandon(self) -> None:
        """Called by the port once the write is over (a no-op after `finish`)."""
        if self._hashing is not None:
            self._hashing.abandon()

    async def finish(self) -> BlobInfo:
        """The blob's digest and size once every chunk was consumed; `IntegrityError` (nothing
        may be published) when it differs from ``expected``. Idempotent."""
        if self._info is not None:
            return self._info
        if not self._ended or self._hashing is None:
            raise RuntimeError("BlobSource.finish() called before the source was exhausted")
        actual = await self._hashing.hexdigest()
        if self.expected is not None and actual != self.expected:
            raise self._mismatch(self.expected, actual)
        self._info = BlobInfo(sha256=actual, size_bytes=self.size)
        return self._info
