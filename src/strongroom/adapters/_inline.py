"""`InlineBlobStore`: small blobs as rows of the records store, the rest in a blob store.

Every vault's ``vault.blobs`` is one (issue 21). A blob of at most ``threshold`` bytes (64 KiB
by default, `strongroom.ports.inline_blobs.DEFAULT_INLINE_THRESHOLD`) is put with one short
transaction of the records store (`InlineBlobRecords`) instead of a file (or an S3 object),
its fsync, its directory's fsync and then the record's own commit; a larger one goes to the
``large`` store as before. It is one `BlobStore`: the same digests, the same verified reads,
the same errors, the same listing (``iter_digests`` and ``iter_inventory`` give every blob
once, wherever it is), so verify, export, import and garbage collection see one store.

Where a blob lives is decided by its size alone, so a digest has one home; a vault written
before inline blobs (or with another threshold) may hold a small blob as a file too, which is
read from the row first and listed once. ``locate`` names the blob's address in the large
store's namespace (a record's ``location``), whichever place holds the bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path

from strongroom.errors import StrongroomError, ValidationError
from strongroom.models import BlobInfo, BlobLocation
from strongroom.ports import BlobSource, BlobStore
from strongroom.ports.blobs import StagingItem, StoredBlob
from strongroom.ports.inline_blobs import (
    DEFAULT_INLINE_THRESHOLD,
    MAX_INLINE_BATCH,
    MAX_INLINE_BYTES,
    InlineBlobRecords,
)

__all__ = ["InlineBlobStore"]

# Hash a row in a worker thread above this size (as the port does for put_bytes).
_THREAD_HASH = 256 * 1024


class _Resumed(BlobSource):
    """The rest of a stream whose first chunks were read already: replays ``head``, then goes
    on with ``source``, which hashed and counted every chunk as it passed and gives the blob's
    `BlobInfo` (or the mismatch) on `finish`."""

    def __init__(self, head: list[bytes], source: BlobSource) -> None:
        # BlobSource's own state is unused: everything goes through ``source``.
        self.expected = source.expected
        self.size = 0
        self._replay = head
        self._source = source

    async def __anext__(self) -> bytes:
        chunk = self._replay.pop(0) if self._replay else await self._source.__anext__()
        self.size += len(chunk)
        return chunk

    def abandon(self) -> None:
        self._source.abandon()

    async def finish(self) -> BlobInfo:
        return await self._source.finish()


def check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise ValidationError(
            "inline_threshold must be an integer", operation="open_vault", reason="bad_threshold"
        )
    if not 0 <= threshold <= MAX_INLINE_BYTES:
        raise ValidationError(
            f"inline_threshold must be between 0 and {MAX_INLINE_BYTES} bytes, got {threshold}",
            operation="open_vault",
            reason="bad_threshold",
        )
    return threshold


class InlineBlobStore(BlobStore):
    """Blobs up to ``threshold`` bytes in ``records``, larger ones in ``large``."""

    def __init__(
        self,
        records: InlineBlobRecords,
        large: BlobStore,
        *,
        threshold: int = DEFAULT_INLINE_THRESHOLD,
    ) -> None:
        self.records = records
        self.large = large
        self.threshold = check_threshold(threshold)
        self.backend = large.backend

    @property
    def root(self) -> Path | None:
        """The large store's directory on this machine, if it has one."""
        root = getattr(self.large, "root", None)
        return root if isinstance(root, Path) else None

    def _inline(self, size: int) -> bool:
        return size <= self.threshold and self.threshold > 0

    async def open(self) -> None:
        await self.large.open()

    async def close(self) -> None:
        await self.large.close()

    # -- writes -------------------------------------------------------------------------------

    async def _write(self, source: BlobSource) -> None:
        head: list[bytes] = []
        size = 0
        async for chunk in source:
            head.append(chunk)
            size += len(chunk)
            if not self._inline(size):
                await self.large._write(_Resumed(head, source))
                return
        if not self._inline(size):  # an empty stream with no threshold (0): nothing inline
            await self.large._write(_Resumed(head, source))
            return
        info = await source.finish()
        await self.records.put_inline_blobs([(info.sha256, b"".join(head))])

    async def put_file(
        self,
        fd: int,
        *,
        expected_sha256: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BlobInfo:
        """A small file is read whole (``pread``, then the position moved to its end) and kept
        inline; a larger one, or a descriptor that cannot be read at an offset (a pipe), is the
        large store's, which reads it once from its position, hashing as it writes."""
        small = await asyncio.to_thread(_pread_small, fd, self.threshold)
        if small is None:
            return await self.large.put_file(fd, expected_sha256=expected_sha256, progress=progress)
        if progress is not None and small:
            progress(len(small))
        info = await self.put_bytes(small, expected_sha256=expected_sha256)
        os.lseek(fd, len(small), os.SEEK_CUR)  # read to its end, as the large store leaves it
        return info

    async def _put_bytes(self, hexd: str, data: bytes) -> None:
        if self._inline(len(data)):
            await self.records.put_inline_blobs([(hexd, data)])
        else:
            await self.large._put_bytes(hexd, data)

    async def _put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        small = [(hexd, data) for hexd, data in blobs if self._inline(len(data))]
        large = [(hexd, data) for hexd, data in blobs if not self._inline(len(data))]
        if large:
            await self.large._put_many(large)
        if small:
            await self.records.put_inline_blobs(small)

    # -- reads --------------------------------------------------------------------------------

    def _read(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        return self._read_for("get", hexd, chunk_size)

    async def _read_for(self, operation: str, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        data = await self.records.get_inline_blob(hexd)
        if data is not None:
            yield data
            return
        pieces = self.large._read_for(operation, hexd, chunk_size)
        try:
            async for piece in pieces:
                yield piece
        finally:
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _get_bytes(self, hexd: str) -> tuple[bytes, str | None]:
        data = await self.records.get_inline_blob(hexd)
        if data is not None:
            return data, None
        return await self.large._get_bytes(hexd)

    async def _size(self, hexd: str) -> int:
        sizes = await self.records.inline_blob_sizes([hexd])
        if hexd in sizes:
            return sizes[hexd]
        return await self.large._size(hexd)

    async def _exists(self, hexd: str) -> bool:
        if await self.records.inline_blob_sizes([hexd]):
            return True
        return await self.large._exists(hexd)

    async def _rehash(self, hexd: str) -> tuple[str, int]:
        data = await self.records.get_inline_blob(hexd)
        if data is None:
            return await self.large._rehash(hexd)
        if len(data) >= _THREAD_HASH:
            digest = await asyncio.to_thread(_sha256, data)
        else:
            digest = _sha256(data)
        return digest, len(data)

    async def _rehash_each(self, hexds: Sequence[str]) -> list[tuple[str, int] | StrongroomError]:
        inline: set[str] = set()
        for start in range(0, len(hexds), MAX_INLINE_BATCH):
            batch = hexds[start : start + MAX_INLINE_BATCH]
            inline.update(await self.records.inline_blob_sizes(batch))
        elsewhere = [hexd for hexd in hexds if hexd not in inline]
        found = dict(zip(elsewhere, await self.large._rehash_each(elsewhere), strict=True))
        out: list[tuple[str, int] | StrongroomError] = []
        for hexd in hexds:
            if hexd not in inline:
                out.append(found[hexd])
                continue
            try:  # the public verify, as the port's default does (a wrapper of it sees it)
                info = await self.verify(hexd)
            except StrongroomError as exc:
                out.append(exc)
            else:
                out.append((info.sha256, info.size_bytes))
        return out

    # -- listing and deletion -----------------------------------------------------------------

    async def _delete(self, hexd: str) -> bool:
        inline = await self.records.delete_inline_blob(hexd)
        elsewhere = await self.large._delete(hexd)
        return inline or elsewhere

    async def _inline_pages(self) -> AsyncIterator[list[tuple[str, int, datetime]]]:
        after: str | None = None
        while True:
            page = await self.records.list_inline_blobs(after=after, limit=MAX_INLINE_BATCH)
            if not page:
                return
            yield page
            after = page[-1][0]

    async def _not_inline(self, batch: list[StoredBlob]) -> list[StoredBlob]:
        """Those of ``batch`` (from the large store) without a row: a small blob written as a
        file before inline blobs has a row too once put again, and is listed once."""
        candidates = [blob.sha256 for blob in batch if self._inline(blob.size_bytes)]
        if not candidates:
            return batch
        rows = await self.records.inline_blob_sizes(candidates)
        return [blob for blob in batch if blob.sha256 not in rows]

    async def _inventory(self) -> AsyncIterator[StoredBlob]:
        async for page in self._inline_pages():
            for hexd, size, stored_at in page:
                yield StoredBlob(hexd, size, stored_at)
        batch: list[StoredBlob] = []
        async for blob in self.large.iter_inventory():
            batch.append(blob)
            if len(batch) == MAX_INLINE_BATCH:
                for kept in await self._not_inline(batch):
                    yield kept
                batch = []
        for kept in await self._not_inline(batch):
            yield kept

    async def _digests(self) -> AsyncIterator[str]:
        async for blob in self._inventory():
            yield blob.sha256

    def _locate(self, hexd: str) -> BlobLocation:
        return self.large._locate(hexd)

    # -- what only the large store stages -----------------------------------------------------

    async def _staging(self, limit: int) -> list[StagingItem]:
        return await self.large.list_staging(limit=limit)

    async def _remove_staging(self, path: str, older_than: datetime) -> int:
        return await self.large.remove_staging(path, older_than=older_than)

    async def _uploads(self, limit: int) -> list[StagingItem]:
        return await self.large.list_uploads(limit=limit)

    async def _abort_upload(self, path: str, older_than: datetime) -> int:
        return await self.large.abort_upload(path, older_than=older_than)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pread_small(fd: int, threshold: int) -> bytes | None:
    """The bytes from ``fd``'s position to its end if there are at most ``threshold`` of them
    (at most ``threshold + 1`` read, the position left where it was), else None; None too when
    ``fd`` cannot be read at an offset or is no descriptor (the large store reports that its
    way)."""
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        return None
    try:
        position = os.lseek(fd, 0, os.SEEK_CUR)
        data = os.pread(fd, threshold + 1, position)
    except OSError:
        return None
    if len(data) > threshold:
        return None
    return data
