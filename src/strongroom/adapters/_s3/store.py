"""`S3BlobStore`: the blob store port on an S3 bucket.

The port's primitives on S3; the port checks arguments, hashes what passes and builds the
errors. Writing is `upload`'s (one conditional ``PutObject``, or multipart). Reading streams
one ``GetObject`` (the port hashes it: `NotFound` before the first chunk, `IntegrityError`
after the last one); ``get_bytes`` is one ``GetObject`` read whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore as obs

from strongroom.adapters._s3.config import (
    MiB,
    blob_key,
    digest_of_key,
    is_staging_key,
    parse_url,
)
from strongroom.adapters._s3.multipart import split_upload_path
from strongroom.adapters._s3.upload import S3Uploads
from strongroom.errors import NotFound
from strongroom.models import BlobLocation
from strongroom.ports.blobs import BlobSource, StagingItem, StoredBlob

__all__ = ["S3BlobStore"]

# obstore's GET stream hands over chunks of at least this size (network reads coalesced), and
# of the reader's chunk_size up to _MAX_READ.
_MIN_READ = 64 * 1024
_MAX_READ = 8 * MiB


class S3BlobStore(S3Uploads):
    """Blobs as objects in an S3 bucket, keyed by digest under an optional prefix."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3BlobStore:
        """``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``.

        Query keys: ``endpoint``, ``region``, ``allow_http``, ``max_retries``,
        ``connect_timeout`` and ``timeout`` (seconds). Credentials are refused: they come from
        the environment only. ``kwargs`` go to the constructor.
        """
        bucket, prefix, options = parse_url(url, kwargs)
        return cls(bucket, prefix, **options)

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the bucket answers and delete staging objects left by crashed writers."""
        await self.sweep_staging()

    async def close(self) -> None:
        """Wait for background clean-ups (staging deletes of abandoned puts)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def sweep_staging(self, older_than: float | None = None) -> int:
        """Delete objects under ``tmp/`` older than ``older_than`` seconds (default
        `stale_staging_after`); returns how many. Unfinished multipart uploads are not
        visible here: `list_uploads` names them and GC aborts them (`gc plan`, kind
        ``multipart``); a bucket lifecycle rule (AbortIncompleteMultipartUpload) also does."""
        horizon = datetime.now(UTC) - timedelta(
            seconds=self.stale_staging_after if older_than is None else older_than
        )
        stale: list[str] = []
        with self._err.translated("open", "tmp/"):
            async for batch in obs.list(self._store, "tmp", chunk_size=1000):
                stale.extend(m["path"] for m in batch if m["last_modified"] <= horizon)
        for start in range(0, len(stale), 1000):
            with self._err.translated("open", "tmp/"):
                await obs.delete_async(self._store, stale[start : start + 1000])
        return len(stale)

    # -- writing ----------------------------------------------------------------------------------

    async def _write(self, source: BlobSource) -> None:
        await self._put_chunks(source)

    async def _put_bytes(self, hexd: str, data: bytes) -> None:
        await self._publish_bytes(hexd, data)

    async def _put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """``put_many_concurrency`` requests at a time; every one finishes before an error."""
        gate = asyncio.Semaphore(self.put_many_concurrency)

        async def one(hexd: str, data: bytes) -> None:
            async with gate:
                await self._publish_bytes(hexd, data)

        results = await asyncio.gather(*(one(*blob) for blob in blobs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        return self._read_for("get", hexd, chunk_size)

    async def _read_for(self, operation: str, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        key = blob_key(hexd)
        with self._err.translated(operation, key):  # NotFound when absent
            result = await obs.get_async(self._store, key)
        # obstore coalesces network reads into pieces of at least this size; the port cuts
        # them to the reader's chunk_size.
        stream = result.stream(max(min(chunk_size, _MAX_READ), _MIN_READ))
        while True:
            with self._err.translated(operation, key):
                try:
                    piece = await anext(stream)
                except StopAsyncIteration:
                    break
            yield piece

    async def _get_bytes(self, hexd: str) -> tuple[bytes, None]:
        key = blob_key(hexd)
        with self._err.translated("get", key):  # NotFound when absent
            result = await obs.get_async(self._store, key)
            return bytes(await result.bytes_async()), None

    # -- metadata ---------------------------------------------------------------------------------

    async def _size(self, hexd: str) -> int:
        meta = await self._head("stat", blob_key(hexd))
        if meta is None:
            raise NotFound(hexd)
        return meta["size"]

    async def _exists(self, hexd: str) -> bool:
        return await self._key_exists("exists", blob_key(hexd))

    async def _delete(self, hexd: str) -> bool:
        key = blob_key(hexd)
        # S3 deletes are idempotent and do not say whether the key existed: ask first.
        if not await self._key_exists("delete", key):
            return False
        with self._err.translated("delete", key):
            await obs.delete_async(self._store, key)
        return True

    async def _inventory(self) -> AsyncIterator[StoredBlob]:
        # obstore follows S3's continuation tokens (1,000 keys a page) as the stream is read.
        with self._err.translated("list", "sha256/"):
            stream = obs.list(self._store, "sha256", chunk_size=1000)
        while True:
            with self._err.translated("list", "sha256/"):
                try:
                    batch = await anext(stream)
                except StopAsyncIteration:
                    return
            for meta in batch:
                hexd = digest_of_key(meta["path"])
                if hexd is not None:
                    yield StoredBlob(hexd, int(meta["size"]), meta["last_modified"])

    async def _staging(self, limit: int) -> list[StagingItem]:
        found: list[StagingItem] = []
        with self._err.translated("list", "tmp/"):
            async for batch in obs.list(self._store, "tmp", chunk_size=1000):
                for meta in batch:
                    if len(found) >= limit:
                        return found
                    found.append(
                        StagingItem(meta["path"], int(meta["size"]), meta["last_modified"], False)
                    )
        return found

    async def _remove_staging(self, path: str, older_than: datetime) -> int:
        if not is_staging_key(path):
            return 0
        with self._err.translated("remove_staging", path):
            try:
                meta = await obs.head_async(self._store, path)
            except FileNotFoundError:
                return 0
            if meta["last_modified"] >= older_than:
                return 0
            await obs.delete_async(self._store, path)
        return int(meta["size"])

    async def _uploads(self, limit: int) -> list[StagingItem]:
        found = await asyncio.to_thread(self._upload_client.list, limit)
        return [StagingItem(u.path, u.size_bytes, u.last_activity, False) for u in found]

    async def _abort_upload(self, path: str, older_than: datetime) -> int:
        parsed = split_upload_path(path)
        if parsed is None:
            return 0
        key, upload_id = parsed
        return await asyncio.to_thread(self._upload_client.abort, key, upload_id, older_than)

    async def _digests(self) -> AsyncIterator[str]:
        async for blob in self._inventory():
            yield blob.sha256

    def _locate(self, hexd: str) -> BlobLocation:
        key = blob_key(hexd)
        return BlobLocation(backend=self.backend, path=key, uri=self._err.uri(key))
