"""`S3BlobStore`: the blob store port on an S3 bucket.

Writing is `upload`'s. Reading streams one ``GetObject`` and hashes as it goes: `NotFound`
before the first chunk, `IntegrityError` after the last one, like the local store.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore as obs

from strongroom.adapters._s3.base import hash_piece
from strongroom.adapters._s3.config import MiB, blob_key, parse_url
from strongroom.adapters._s3.upload import S3Uploads
from strongroom.errors import NotFound, ValidationError
from strongroom.models import BlobInfo, BlobLocation
from strongroom.ports.blobs import CHUNK_SIZE

__all__ = ["S3BlobStore"]

# obstore's GET stream hands over chunks of at least this size (network reads coalesced);
# get_stream then cuts them to the caller's chunk_size.
_MIN_READ = 64 * 1024
_MAX_READ = 8 * MiB
_DIGEST_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")


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
        visible here: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those."""
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

    async def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> BlobInfo:
        expected = None if expected_sha256 is None else self._digest(expected_sha256, "put")
        if type(data) is not bytes:
            data = bytes(data)
        hasher = hashlib.sha256()
        await hash_piece(hasher, data)
        hexd = hasher.hexdigest()
        if expected is not None and hexd != expected:
            raise self._err.mismatch("put", expected, hexd)
        await self._publish_bytes(hexd, data)
        return BlobInfo(sha256=hexd, size_bytes=len(data))

    async def put_many(self, items: Sequence[bytes]) -> list[BlobInfo]:
        """Put several blobs, ``put_many_concurrency`` requests at a time, results in order."""
        if not items:
            return []
        gate = asyncio.Semaphore(self.put_many_concurrency)

        async def one(item: bytes) -> BlobInfo:
            async with gate:
                return await self.put_bytes(item)

        results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        infos: list[BlobInfo] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            infos.append(result)
        return infos

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobInfo:
        expected = None if expected_sha256 is None else self._digest(expected_sha256, "put")
        return await self._put_chunks(aiter(chunks), expected)

    # -- reading ----------------------------------------------------------------------------------

    def get_stream(self, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        hexd = self._digest(sha256, "get")
        if chunk_size < 1:
            raise ValidationError(
                "get: chunk_size must be positive", backend=self.backend, chunk_size=chunk_size
            )
        return self._stream("get", hexd, chunk_size)

    async def _stream(self, operation: str, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        key = blob_key(hexd)
        try:
            with self._err.translated(operation, key):
                result = await obs.get_async(self._store, key)
        except NotFound:
            raise self._err.not_found(operation, hexd) from None
        hasher = hashlib.sha256()
        cut = min(chunk_size, _MAX_READ)  # chunks may be smaller than asked, never larger
        stream = result.stream(max(cut, _MIN_READ))
        carry = b""
        while True:
            with self._err.translated(operation, key):
                try:
                    piece = await anext(stream)
                except StopAsyncIteration:
                    break
            await hash_piece(hasher, piece)
            if carry:
                piece = carry + piece
            start, end = 0, len(piece)
            while end - start >= cut:
                yield piece[start : start + cut]
                start += cut
            carry = piece[start:] if start else piece
        if carry:
            yield carry
        actual = hasher.hexdigest()
        if actual != hexd:
            raise self._err.mismatch(operation, hexd, actual)

    async def get_bytes(self, sha256: str) -> bytes:
        hexd = self._digest(sha256, "get")
        key = blob_key(hexd)
        try:
            with self._err.translated("get", key):
                result = await obs.get_async(self._store, key)
                data = bytes(await result.bytes_async())
        except NotFound:
            raise self._err.not_found("get", hexd) from None
        hasher = hashlib.sha256()
        await hash_piece(hasher, data)
        actual = hasher.hexdigest()
        if actual != hexd:
            raise self._err.mismatch("get", hexd, actual)
        return data

    async def verify(self, sha256: str) -> BlobInfo:
        hexd = self._digest(sha256, "verify")
        size = 0
        async for chunk in self._stream("verify", hexd, _MAX_READ):  # hashes as it reads
            size += len(chunk)
        return BlobInfo(sha256=hexd, size_bytes=size)

    # -- metadata ---------------------------------------------------------------------------------

    async def stat(self, sha256: str) -> BlobInfo:
        hexd = self._digest(sha256, "stat")
        meta = await self._head("stat", blob_key(hexd))
        if meta is None:
            raise self._err.not_found("stat", hexd)
        return BlobInfo(sha256=hexd, size_bytes=meta["size"])

    async def exists(self, sha256: str) -> bool:
        return await self._key_exists("exists", blob_key(self._digest(sha256, "exists")))

    async def delete(self, sha256: str) -> bool:
        hexd = self._digest(sha256, "delete")
        key = blob_key(hexd)
        # S3 deletes are idempotent and do not say whether the key existed: ask first.
        if not await self._key_exists("delete", key):
            return False
        with self._err.translated("delete", key):
            await obs.delete_async(self._store, key)
        return True

    async def iter_digests(self) -> AsyncIterator[str]:
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
                match = _DIGEST_KEY_RE.fullmatch(meta["path"])
                if (
                    match
                    and match.group(3)[0:2] == match.group(1)
                    and match.group(3)[2:4] == match.group(2)
                ):
                    yield match.group(3)

    def locate(self, sha256: str) -> BlobLocation:
        hexd = self._digest(sha256, "locate")
        key = blob_key(hexd)
        return BlobLocation(backend=self.backend, path=key, uri=self._err.uri(key))
