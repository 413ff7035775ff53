"""How bytes get into the bucket.

A blob is hashed while it streams, so where it may be published depends on what is known when
the upload starts:

- the whole blob fits in one part (``part_size``, default 16 MiB; ``put_bytes`` and small
  streams): one ``PutObject`` straight to the final key with ``If-None-Match: *``. An
  existing key holds the same bytes (its name is their digest), so "already exists" is success;
- a larger stream whose digest the caller states (``expected_sha256``): a multipart upload
  straight to the final key. The source is checked as it ends; on mismatch the source raises,
  obstore aborts the upload and nothing becomes visible (S3 shows a multipart object only once
  it is completed);
- a larger stream of unknown digest: a multipart upload to ``<prefix>/tmp/<uuid>``, then a
  server-side ``CopyObject`` to the final key unless that key already exists, then the staging
  object is deleted. ``CopyObject`` copies at most 5 GiB in one request and obstore exposes no
  ranged ``UploadPartCopy``; bigger blobs are copied through this process instead (streamed
  down and up again, re-verified, bounded memory: one more download and upload). Callers that
  know the digest of a big blob save both the staging and the copy by stating it.

Multipart uploads go through ``obstore.put_async`` fed by an async iterator (not
``open_writer``): obstore then aborts the upload itself when the source or a request fails,
which ``open_writer`` cannot do (closing it completes the upload), and it bounds memory to about
``(max_concurrency + 1) * part_size`` with ``max_concurrency`` parts in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Self

import obstore as obs
from obstore.exceptions import AlreadyExistsError

from strongroom.adapters._s3.base import S3StoreBase
from strongroom.adapters._s3.config import MAX_OBJECT_SIZE, MAX_PARTS, blob_key
from strongroom.adapters._s3.errors import S3Errors
from strongroom.errors import NotFound, StorageIOError
from strongroom.ports.blobs import BlobSource

if TYPE_CHECKING:
    from obstore import PutResult

__all__ = ["S3Uploads", "Source"]


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done-callback marking an abandoned future's exception as seen."""
    if not future.cancelled():
        future.exception()


class _Aborted(Exception):
    """Raised into an abandoned upload's source so obstore aborts the multipart upload."""


class Source:
    """The async iterator obstore pulls an upload's bytes from: replays, counts, checks.

    It first replays ``head`` (chunks already taken from ``blob`` while deciding how to
    upload), then continues with ``blob`` (the port's `BlobSource`, which hashes them). When
    ``blob`` ends its digest is checked (``blob.finish()``) *before* obstore sees the end, so a
    stated digest that differs aborts the upload instead of completing it. An exception from
    the caller's iterator is remembered so the store re-raises it as is.
    """

    def __init__(self, errors: S3Errors, head: list[bytes], blob: BlobSource, limit: int) -> None:
        self._errors = errors
        self._head = head
        self._index = 0
        self.blob = blob
        self._limit = limit
        self._ended = False
        self._aborted = False
        self.failure: BaseException | None = None

    @property
    def size(self) -> int:
        return self.blob.size

    def abort(self) -> None:
        self._aborted = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._aborted:
            raise _Aborted("upload abandoned")
        if self._index < len(self._head):
            chunk = self._head[self._index]
            self._head[self._index] = b""  # let obstore own the only reference
            self._index += 1
            return chunk
        if not self._ended:
            try:
                chunk = await anext(self.blob)
            except StopAsyncIteration:
                self._ended = True
            except BaseException as exc:
                self.failure = exc
                raise
            else:
                if self._aborted:
                    raise _Aborted("upload abandoned")
                if self.blob.size > self._limit:
                    raise self._errors.too_large(self._limit)
                return chunk
        await self.blob.finish()  # IntegrityError when a stated digest differs
        raise StopAsyncIteration


class S3Uploads(S3StoreBase):
    """The write paths of the S3 blob store (see the module docstring)."""

    async def _publish_bytes(self, hexd: str, data: bytes) -> None:
        key = blob_key(hexd)
        if len(data) <= self.part_size:
            if self._conditional_put:
                try:
                    with self._err.translated("put", key), contextlib.suppress(AlreadyExistsError):
                        # If-None-Match: * failed: the key exists and, named by its digest,
                        # already holds these bytes.
                        await obs.put_async(self._store, key, data, mode="create")
                    return
                except StorageIOError as exc:
                    if exc.details.get("reason") not in ("not_supported", "http_501"):
                        raise
                    # An S3-compatible store without conditional PutObject: a plain put can
                    # only ever replace a blob by the same bytes, so it is safe, just not free.
                    self._conditional_put = False
            with self._err.translated("put", key):
                await obs.put_async(self._store, key, data)
            return
        if await self._key_exists("put", key):
            return
        with self._err.translated("put", key):
            await self._multipart(key, data)

    def _multipart(self, key: str, data: bytes | Source) -> Coroutine[Any, Any, PutResult]:
        """A multipart upload of ``data`` to ``key``: ``part_size`` parts, ``max_concurrency``
        of them in flight."""
        return obs.put_async(
            self._store,
            key,
            data,
            use_multipart=True,
            chunk_size=self.part_size,
            max_concurrency=self.max_concurrency,
        )

    async def _put_chunks(self, blob: BlobSource) -> None:
        """Upload a stream the way its size and stated digest allow (see the module
        docstring). The port's `BlobSource` hashes; ``blob.finish()`` checks."""
        head: list[bytes] = []
        exhausted = False
        # Read up to one part: most blobs end here and go out as one conditional PutObject.
        while blob.size <= self.part_size:
            try:
                head.append(await anext(blob))
            except StopAsyncIteration:
                exhausted = True
                break
        if exhausted:
            info = await blob.finish()
            data = b"".join(head)
            head.clear()
            await self._publish_bytes(info.sha256, data)
            return
        limit = min(MAX_PARTS * self.part_size, MAX_OBJECT_SIZE)
        source = Source(self._err, head, blob, limit)
        if blob.expected is not None:
            await self._put_expected(blob.expected, source)
        else:
            await self._put_staged(source)

    async def _put_expected(self, expected: str, source: Source) -> None:
        """Stream straight to the final key: the source checks the digest before it ends."""
        key = blob_key(expected)
        if await self._key_exists("put", key):
            async for _ in source:  # only to check the caller's bytes against expected
                pass
        else:
            await self._upload(key, source)

    async def _put_staged(self, source: Source) -> None:
        """Stream to a staging key, then copy to the final key (named by the digest)."""
        staging = f"tmp/{uuid.uuid4().hex}"
        await self._upload(staging, source, staging=True)
        hexd = (await source.blob.finish()).sha256
        key = blob_key(hexd)
        try:
            if not await self._key_exists("put", key):
                if source.size <= self.copy_limit:
                    try:
                        with self._err.translated("put", key):
                            await obs.copy_async(self._store, staging, key, overwrite=True)
                    except NotFound as exc:
                        raise self._err.staging_vanished(staging, key) from exc
                else:
                    await self._copy_through(staging, key, hexd)
                info = await self._head("put", key)
                if info is None or info["size"] != source.size:
                    raise self._err.io_error(
                        "put",
                        key,
                        "put: the copied blob is missing or has the wrong size",
                        reason="copy_failed",
                    )
        finally:
            await self._discard(staging)

    async def _upload(
        self, key: str, source: Source, *, staging: bool = False, callers: bool = True
    ) -> None:
        """Multipart-upload ``source`` to ``key``. With ``callers`` the source wraps the
        caller's iterator, whose own exceptions then propagate untranslated."""
        # put_async hands back an asyncio future already: the upload runs in obstore's runtime.
        upload = asyncio.ensure_future(self._multipart(key, source))
        try:
            with self._err.translated("put", key, source=source if callers else None):
                await asyncio.shield(upload)
        except asyncio.CancelledError:
            # Let the upload fail on its next chunk so obstore aborts the multipart upload
            # (dropping it would leave the parts behind); a staging object that completed
            # anyway is deleted in the background.
            source.abort()
            if staging:
                upload.add_done_callback(lambda done: self._after_abandoned(done, key))
            else:
                upload.add_done_callback(_retrieve)
            raise

    def _after_abandoned(self, done: asyncio.Future[Any], staging: str) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self._spawn(self._discard_quietly(staging))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _discard(self, staging: str) -> None:
        """Delete a staging object; a failure leaves it to `sweep_staging`."""
        await asyncio.shield(self._spawn(self._discard_quietly(staging)))

    async def _discard_quietly(self, staging: str) -> None:
        with contextlib.suppress(Exception):
            await obs.delete_async(self._store, staging)

    async def _copy_through(self, staging: str, key: str, hexd: str) -> None:
        """Copy a blob too large for CopyObject by streaming it through this process."""
        try:
            with self._err.translated("put", staging):
                result = await obs.get_async(self._store, staging)
        except NotFound as exc:
            raise self._err.staging_vanished(staging, key) from exc
        # Re-verified on the way: the port's source checks the digest before the upload ends.
        blob = self._source(result.stream(self.part_size), hexd)
        await self._upload(key, Source(self._err, [], blob, 2**63), callers=False)
