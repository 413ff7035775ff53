"""`InlineBlobStore` (small blobs as rows of the records store, the rest in a blob store)
against the blob port's conformance suite, on both sides of its threshold and over memory and
SQLite records, plus what is its own: where each blob lives, one listing of both places, a
small blob written as a file before inline blobs, garbage collection's times."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from _sql_tamper import corrupt_inline_row
from strongroom.adapters import InlineBlobStore, LocalBlobStore, SqliteMetadataStore
from strongroom.adapters._memory import MemoryMetadataStore
from strongroom.adapters._memory_blobs import MemoryBlobStore
from strongroom.errors import IntegrityError, ValidationError
from strongroom.ports.blobs import BlobStore
from strongroom.ports.inline_blobs import MAX_INLINE_BYTES
from strongroom.testing.blobs import BlobStoreTests
from test_vault_sqlite_local import flip_one_byte


class _ClosingInline(InlineBlobStore):
    """Opens and closes its records store too (a vault does that itself)."""

    async def open(self) -> None:
        opener = getattr(self.records, "open", None)
        if opener is not None:
            await opener()
        await super().open()

    async def close(self) -> None:
        await super().close()
        closer = getattr(self.records, "close", None)
        if closer is not None:
            await closer()


async def _corrupt(store: BlobStore, sha256: str) -> None:
    assert isinstance(store, InlineBlobStore)
    if await corrupt_inline_row(store.records, sha256):
        return
    large = store.large
    if isinstance(large, MemoryBlobStore):
        large._corrupt_for_tests(sha256)
    else:
        assert isinstance(large, LocalBlobStore)
        flip_one_byte(large.root / large.locate(sha256).path)


class TestInlineMemoryDefault(BlobStoreTests):
    """Memory records and blobs, the default threshold: nearly every blob is a row."""

    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        return InlineBlobStore(MemoryMetadataStore(), MemoryBlobStore())

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        await _corrupt(store, sha256)


class TestInlineMemorySmall(BlobStoreTests):
    """A 16-byte threshold: the suite's blobs fall on both sides."""

    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        return InlineBlobStore(MemoryMetadataStore(), MemoryBlobStore(), threshold=16)

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        await _corrupt(store, sha256)


class TestInlineSqliteLocal(BlobStoreTests):
    """SQLite records and a local directory, a 100-byte threshold."""

    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        records = SqliteMetadataStore(tmp_path / "records.db")
        await records.open()
        return _ClosingInline(records, LocalBlobStore(tmp_path / "blobs"), threshold=100)

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        await _corrupt(store, sha256)


@pytest_asyncio.fixture
async def sqlite_local(tmp_path: Path) -> AsyncIterator[InlineBlobStore]:
    records = SqliteMetadataStore(tmp_path / "records.db")
    await records.open()
    store = _ClosingInline(records, LocalBlobStore(tmp_path / "blobs"), threshold=100)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "sha256").rglob("*") if p.is_file())


async def test_the_size_decides_where_a_blob_lives(sqlite_local: InlineBlobStore) -> None:
    large = sqlite_local.large
    assert isinstance(large, LocalBlobStore)
    edge = await sqlite_local.put_bytes(b"x" * 100)
    over = await sqlite_local.put_bytes(b"y" * 101)
    empty = await sqlite_local.put_bytes(b"")
    assert set(await sqlite_local.records.inline_blob_sizes([edge.sha256, empty.sha256])) == {
        edge.sha256,
        empty.sha256,
    }
    assert _files(large.root) == [over.sha256]
    streamed = await sqlite_local.put_stream(_chunks(b"z" * 250, 7))
    assert _files(large.root) == sorted([over.sha256, streamed.sha256])
    assert await sqlite_local.get_bytes(streamed.sha256) == b"z" * 250
    many = await sqlite_local.put_many([b"a" * 10, b"b" * 300, b"c" * 100])
    assert sorted(_files(large.root)) == sorted([over.sha256, streamed.sha256, many[1].sha256])
    for info, data in zip(many, [b"a" * 10, b"b" * 300, b"c" * 100], strict=True):
        assert await sqlite_local.get_bytes(info.sha256) == data


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_put_file_keeps_a_small_file_inline_and_streams_a_large_one(
    sqlite_local: InlineBlobStore, tmp_path: Path
) -> None:
    large = sqlite_local.large
    assert isinstance(large, LocalBlobStore)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"s" * 60)
    big.write_bytes(b"B" * 5000)
    seen: list[int] = []
    for path in (small, big):
        fd = os.open(path, os.O_RDONLY)
        try:
            info = await sqlite_local.put_file(fd, progress=seen.append)
        finally:
            os.close(fd)
        assert await sqlite_local.get_bytes(info.sha256) == path.read_bytes()
    assert seen[0] == 60
    assert seen[-1] == 5000
    assert len(_files(large.root)) == 1
    fd = os.open(small, os.O_RDONLY)
    try:
        with pytest.raises(IntegrityError):
            await sqlite_local.put_file(fd, expected_sha256="0" * 64)
    finally:
        os.close(fd)


async def test_a_small_blob_stored_as_a_file_before_is_read_and_listed_once(
    sqlite_local: InlineBlobStore,
) -> None:
    large = sqlite_local.large
    old = await large.put_bytes(b"written before inline blobs")  # 27 bytes, as a file
    assert await sqlite_local.get_bytes(old.sha256) == b"written before inline blobs"
    assert await sqlite_local.exists(old.sha256)
    assert [b.sha256 async for b in sqlite_local.iter_inventory()] == [old.sha256]
    again = await sqlite_local.put_bytes(b"written before inline blobs")  # now a row too
    assert again == old
    listed = [b.sha256 async for b in sqlite_local.iter_inventory()]
    assert listed == [old.sha256]
    assert [d async for d in sqlite_local.iter_digests()] == [old.sha256]
    assert await sqlite_local.delete(old.sha256) is True  # from both places
    assert not await sqlite_local.exists(old.sha256)
    assert not await large.exists(old.sha256)


async def test_rows_carry_the_time_they_were_stored(sqlite_local: InlineBlobStore) -> None:
    info = await sqlite_local.put_bytes(b"timed")
    first = [b async for b in sqlite_local.iter_inventory()]
    assert len(first) == 1
    assert first[0].modified is not None
    await sqlite_local.put_bytes(b"timed")
    assert [b async for b in sqlite_local.iter_inventory()] == first  # a re-put keeps it
    assert first[0].sha256 == info.sha256


async def test_rows_are_never_updated_in_place(sqlite_local: InlineBlobStore) -> None:
    from sqlalchemy import text

    info = await sqlite_local.put_bytes(b"immutable")
    records = sqlite_local.records
    assert isinstance(records, SqliteMetadataStore)

    def op(conn: object) -> None:
        conn.execute(  # type: ignore[attr-defined]
            text("UPDATE inline_blobs SET data = X'00' WHERE sha256 = :h"), {"h": info.sha256}
        )

    with pytest.raises(ValidationError, match="append-only"):
        await records._write("tamper", op)
    assert await sqlite_local.get_bytes(info.sha256) == b"immutable"


async def test_the_threshold_is_bounded() -> None:
    for bad in (-1, MAX_INLINE_BYTES + 1):
        with pytest.raises(ValidationError):
            InlineBlobStore(MemoryMetadataStore(), MemoryBlobStore(), threshold=bad)
    with pytest.raises(ValidationError):
        await MemoryMetadataStore().put_inline_blobs([("0" * 64, b"x" * (MAX_INLINE_BYTES + 1))])
    store = InlineBlobStore(MemoryMetadataStore(), MemoryBlobStore(), threshold=0)
    info = await store.put_bytes(b"")
    assert await store.large.exists(info.sha256)  # threshold 0: nothing inline, even b""
    streamed = await store.put_stream(_chunks(b"", 1))  # the stream path too
    assert streamed == info
    assert not await store.records.inline_blob_sizes([info.sha256])
