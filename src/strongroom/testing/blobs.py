"""Conformance suite for the blob port. Every backend's tests subclass `BlobStoreTests`.

A backend test module supplies ``make_store(request)`` (the store under test; the suite opens
and closes it; ``request`` is pytest's fixture request, for ``request.getfixturevalue(...)``)
and, so the tamper-detection tests run too, overrides `BlobStoreTests.corrupt`::

    class TestLocalBlobStore(BlobStoreTests):
        async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
            return LocalBlobStore(request.getfixturevalue("tmp_path") / "blobs")

        async def corrupt(self, store: BlobStore, sha256: str) -> None:
            ...  # change the stored bytes behind the store's back

A module that needs more control may override the ``store`` fixture itself (with
``pytest_asyncio.fixture``). The async tests run under pytest-asyncio in strict or auto mode
alike (`strongroom.pytest_plugin`).

The suite also checks what the port's base class guarantees whatever the backend does: a
malformed digest or chunk size is refused before any primitive runs (the primitives are
spied on), and every `NotFound`/`IntegrityError` names the operation, the bare digest, the
backend and the blob's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.errors import IntegrityError, NotFound, ValidationError
from strongroom.models import BlobInfo
from strongroom.ports.blobs import CHUNK_SIZE, BlobStore

__all__ = ["BAD_DIGESTS", "BlobStoreTests", "chunked", "payload", "sha256_hex"]

MiB = 1024 * 1024

BAD_DIGESTS: list[str] = [
    "",
    "../etc/passwd",
    "../../" + "a" * 58,
    "/" + "a" * 63,
    "aa/bb/" + "a" * 58,
    "a" * 63,
    "a" * 65,
    "sha256:" + "a" * 63,
    "sha256:",
    "sha512:" + "a" * 64,
    "A" * 64,  # uppercase is rejected: one spelling per digest, so one file per blob
    "g" * 64,
    "a" * 63 + "\x00",
    "a" * 64 + "\n",
    " " + "a" * 63,
    "ａ" * 64,  # fullwidth look-alike
]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes."""
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, sizes: int | Sequence[int]) -> AsyncIterator[bytes]:
    """Yield ``data`` in chunks of ``sizes`` (one size, or a cycle of sizes; 0 yields b"")."""
    cycle = [sizes] if isinstance(sizes, int) else list(sizes)
    start = 0
    index = 0
    while start < len(data):
        size = cycle[index % len(cycle)]
        index += 1
        yield data[start : start + size]
        start += size


async def _collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def _digests(store: BlobStore) -> list[str]:
    return sorted([digest async for digest in store.iter_digests()])


_OPERATIONS: dict[str, Callable[[BlobStore, str], Awaitable[Any]]] = {
    "get_bytes": lambda store, digest: store.get_bytes(digest),
    "get_stream": lambda store, digest: _collect(store.get_stream(digest)),
    "stat": lambda store, digest: store.stat(digest),
    "exists": lambda store, digest: store.exists(digest),
    "delete": lambda store, digest: store.delete(digest),
    "verify": lambda store, digest: store.verify(digest),
    "put_bytes(expected_sha256)": lambda store, digest: store.put_bytes(
        b"x", expected_sha256=digest
    ),
    "put_stream(expected_sha256)": lambda store, digest: store.put_stream(
        chunked(b"x", 1), expected_sha256=digest
    ),
}
_READS = ("get_bytes", "get_stream", "stat", "verify")
# What each read names as its operation in the errors it raises.
_READ_OPERATIONS = {"get_bytes": "get", "get_stream": "get", "stat": "stat", "verify": "verify"}
# The port's primitives and fast paths: what a backend implements (see strongroom.ports.blobs).
_PRIMITIVES = (
    "_write",
    "_read",
    "_size",
    "_exists",
    "_delete",
    "_digests",
    "_locate",
    "_put_bytes",
    "_put_many",
    "_get_bytes",
    "_rehash",
    "_rehash_each",
)


def _spy_on_primitives(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every call of a primitive on ``store`` (the calls still go through)."""
    calls: list[str] = []
    for name in _PRIMITIVES:
        original = getattr(store, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, spy)
    return calls


def _assert_names_the_blob(store: BlobStore, error: Exception, operation: str, digest: str) -> None:
    assert isinstance(error, NotFound | IntegrityError)
    details = error.details
    assert details["operation"] == operation
    assert details["sha256"] == digest
    assert details["backend"] == store.backend
    assert details["path"] == store.locate(digest).path


@st.composite
def _chunkings(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    data = draw(st.binary(max_size=20_000))
    sizes = draw(st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=8))
    if not any(sizes):
        sizes.append(1)
    return data, sizes


class BlobStoreTests(ABC):
    """The behaviour every `BlobStore` backend must show. Subclass, supply `make_store`."""

    # Read by the pytest plugin: this class's async tests belong to a conformance suite.
    __strongroom_conformance__ = True

    @abstractmethod
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        """The store under test, not yet opened (the suite opens and closes it)."""

    @pytest_asyncio.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[BlobStore]:
        store = await self.make_store(request)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        """Change a stored blob's bytes behind the store's back. Override to run tamper tests."""
        pytest.skip(f"{type(self).__name__} has no corrupt() hook")

    # -- round trips ------------------------------------------------------------------------------

    @pytest.mark.parametrize("data", [b"", b"\x00", b"hello, strongroom"], ids=["empty", "1", "17"])
    async def test_put_bytes_round_trips(self, store: BlobStore, data: bytes) -> None:
        info = await store.put_bytes(data)
        assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=len(data))
        assert await store.get_bytes(info.sha256) == data
        assert b"".join(await _collect(store.get_stream(info.sha256))) == data

    async def test_empty_blob_has_the_sha256_of_nothing(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"")
        assert info.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        assert await _collect(store.get_stream(info.sha256)) == []

    @pytest.mark.parametrize(
        ("size", "chunk_sizes"),
        [
            (1_000, [1]),
            (50_001, [7]),
            (300_000, [4093, 0, 65_537]),
            (3 * MiB + 12_345, [65_537]),
            (3 * MiB + 12_345, [CHUNK_SIZE + 1, 3, CHUNK_SIZE - 1]),
            (9 * MiB + 1, [5 * MiB - 3]),
        ],
        ids=["1000x1", "50001x7", "300000xmixed", "3MiBx65537", "3MiBxmixed", "9MiBx5MiB"],
    )
    async def test_put_stream_round_trips_with_odd_chunk_sizes(
        self, store: BlobStore, size: int, chunk_sizes: list[int]
    ) -> None:
        data = payload(size, seed=size)
        info = await store.put_stream(chunked(data, chunk_sizes))
        assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=size)
        assert await store.get_bytes(info.sha256) == data

    async def test_put_stream_of_no_chunks_stores_the_empty_blob(self, store: BlobStore) -> None:
        info = await store.put_stream(chunked(b"", 1))
        assert info == BlobInfo(sha256=sha256_hex(b""), size_bytes=0)
        assert await store.exists(info.sha256)

    async def test_put_stream_accepts_bytearray_chunks_and_copies_them(
        self, store: BlobStore
    ) -> None:
        buffer = bytearray(b"a" * 100_000)

        async def reused_buffer() -> AsyncIterator[bytes]:
            for fill in b"abc":
                buffer[:] = bytes([fill]) * len(buffer)
                yield buffer  # type: ignore[misc]  # callers do pass mutable buffers

        info = await store.put_stream(reused_buffer())
        expected = b"a" * 100_000 + b"b" * 100_000 + b"c" * 100_000
        assert info.sha256 == sha256_hex(expected)
        assert await store.get_bytes(info.sha256) == expected

    @pytest.mark.parametrize("chunk_size", [1, 1000, CHUNK_SIZE])
    async def test_get_stream_yields_chunks_no_larger_than_chunk_size(
        self, store: BlobStore, chunk_size: int
    ) -> None:
        data = payload(2 * CHUNK_SIZE + 5 if chunk_size == CHUNK_SIZE else 10_001)
        info = await store.put_bytes(data)
        chunks = await _collect(store.get_stream(info.sha256, chunk_size=chunk_size))
        assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
        assert b"".join(chunks) == data

    async def test_get_stream_serves_a_chunk_size_far_beyond_the_blob(
        self, store: BlobStore
    ) -> None:
        data = payload(100_000)
        info = await store.put_bytes(data)
        assert b"".join(await _collect(store.get_stream(info.sha256, chunk_size=2**40))) == data

    async def test_get_stream_rejects_a_non_positive_chunk_size(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"abc")
        with pytest.raises(ValidationError):
            await _collect(store.get_stream(info.sha256, chunk_size=0))

    async def test_stopping_a_get_stream_early_releases_it(self, store: BlobStore) -> None:
        # With filterwarnings=error, a file left open here fails the test (ResourceWarning).
        info = await store.put_bytes(payload(3 * CHUNK_SIZE))
        stream = store.get_stream(info.sha256)
        first = await anext(stream)
        assert first == (await store.get_bytes(info.sha256))[: len(first)]
        await stream.aclose()  # type: ignore[attr-defined]
        assert await store.delete(info.sha256)

    async def test_digest_equals_hashlib_sha256(self, store: BlobStore) -> None:
        data = payload(123_457, seed=7)
        info = await store.put_bytes(data)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.size_bytes == len(data)

    async def test_prefixed_digest_is_accepted_everywhere(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"prefixed")
        prefixed = f"sha256:{info.sha256}"
        assert await store.get_bytes(prefixed) == b"prefixed"
        assert await store.stat(prefixed) == info
        assert await store.exists(prefixed)
        assert await store.verify(prefixed) == info
        assert store.locate(prefixed) == store.locate(info.sha256)
        assert await store.put_bytes(b"prefixed", expected_sha256=prefixed) == info

    # -- idempotence and dedup ------------------------------------------------------------------

    async def test_put_is_idempotent_for_same_content(self, store: BlobStore) -> None:
        first = await store.put_bytes(b"same bytes")
        second = await store.put_bytes(b"same bytes")
        third = await store.put_stream(chunked(b"same bytes", 3))
        assert first == second == third
        assert await _digests(store) == [first.sha256]

    async def test_concurrent_puts_of_same_content_store_it_once(self, store: BlobStore) -> None:
        data = payload(200_000, seed=3)
        infos = await asyncio.gather(
            *(store.put_stream(chunked(data, 65_536)) for _ in range(4)),
            *(store.put_bytes(data) for _ in range(4)),
        )
        assert {info.sha256 for info in infos} == {sha256_hex(data)}
        assert await _digests(store) == [sha256_hex(data)]
        assert await store.get_bytes(sha256_hex(data)) == data

    async def test_concurrent_puts_of_different_content_all_land(self, store: BlobStore) -> None:
        blobs = [payload(10_000 + i, seed=i) for i in range(12)]
        infos = await asyncio.gather(*(store.put_bytes(blob) for blob in blobs))
        assert await _digests(store) == sorted(info.sha256 for info in infos)

    # -- expected digests -----------------------------------------------------------------------

    async def test_expected_sha256_match_publishes(self, store: BlobStore) -> None:
        data = b"expected"
        info = await store.put_stream(chunked(data, 2), expected_sha256=sha256_hex(data))
        assert info.sha256 == sha256_hex(data)
        assert await store.exists(info.sha256)

    @pytest.mark.parametrize("how", ["put_bytes", "put_stream"])
    async def test_expected_sha256_mismatch_publishes_nothing(
        self, store: BlobStore, how: str
    ) -> None:
        data = payload(2 * CHUNK_SIZE + 1, seed=11)
        wrong = sha256_hex(b"something else")
        put = (
            store.put_bytes(data, expected_sha256=wrong)
            if how == "put_bytes"
            else store.put_stream(chunked(data, 100_000), expected_sha256=wrong)
        )
        with pytest.raises(IntegrityError) as caught:
            await put
        assert caught.value.code == "integrity_error"
        _assert_names_the_blob(store, caught.value, "put", wrong)
        assert caught.value.details["actual_sha256"] == sha256_hex(data)
        assert not await store.exists(sha256_hex(data))
        assert not await store.exists(wrong)
        assert await _digests(store) == []

    @pytest.mark.parametrize("size", [0, 1, 4096, 3 * MiB + 5])
    async def test_put_file_stores_the_file_from_its_position(
        self, store: BlobStore, size: int
    ) -> None:
        data = payload(size, seed=size)
        seen: list[int] = []
        with tempfile.TemporaryFile() as file:
            file.write(b"skipped" + data)
            file.flush()
            file.seek(len(b"skipped"))
            info = await store.put_file(
                file.fileno(), expected_sha256=sha256_hex(data), progress=seen.append
            )
        assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=size)
        assert await store.get_bytes(info.sha256) == data
        assert seen == sorted(seen)
        assert seen[-1:] == ([size] if size else [])

    async def test_put_file_mismatch_publishes_nothing(self, store: BlobStore) -> None:
        data = payload(2 * CHUNK_SIZE + 1, seed=12)
        wrong = sha256_hex(b"something else")
        with tempfile.TemporaryFile() as file:
            file.write(data)
            file.flush()
            file.seek(0)
            with pytest.raises(IntegrityError) as caught:
                await store.put_file(file.fileno(), expected_sha256=wrong)
        _assert_names_the_blob(store, caught.value, "put", wrong)
        assert caught.value.details["actual_sha256"] == sha256_hex(data)
        assert await _digests(store) == []

    async def test_a_failing_source_publishes_nothing(self, store: BlobStore) -> None:
        data = payload(6 * MiB, seed=5)

        async def failing() -> AsyncIterator[bytes]:
            async for chunk in chunked(data, MiB):
                yield chunk
            raise RuntimeError("source broke")

        with pytest.raises(RuntimeError, match="source broke"):
            await store.put_stream(failing())
        assert await _digests(store) == []

    # -- absent and malformed -------------------------------------------------------------------

    @pytest.mark.parametrize("operation", _READS)
    async def test_unknown_digest_is_not_found(self, store: BlobStore, operation: str) -> None:
        with pytest.raises(NotFound) as caught:
            await _OPERATIONS[operation](store, sha256_hex(b"never stored"))
        assert caught.value.code == "not_found"
        assert isinstance(caught.value, LookupError)

    async def test_get_stream_of_unknown_digest_fails_before_the_first_chunk(
        self, store: BlobStore
    ) -> None:
        stream = store.get_stream(sha256_hex(b"never stored"))
        with pytest.raises(NotFound):
            await anext(stream)

    async def test_unknown_digest_does_not_exist_and_deletes_as_false(
        self, store: BlobStore
    ) -> None:
        assert not await store.exists(sha256_hex(b"never stored"))
        assert not await store.delete(sha256_hex(b"never stored"))

    @pytest.mark.parametrize("operation", list(_OPERATIONS))
    @pytest.mark.parametrize("digest", BAD_DIGESTS, ids=repr)
    async def test_malformed_digest_is_rejected(
        self, store: BlobStore, operation: str, digest: str
    ) -> None:
        await store.put_bytes(b"x")
        with pytest.raises(ValidationError) as caught:
            await _OPERATIONS[operation](store, digest)
        assert caught.value.code == "validation_error"
        assert await _digests(store) == [sha256_hex(b"x")]

    @pytest.mark.parametrize("digest", BAD_DIGESTS, ids=repr)
    def test_locate_rejects_a_malformed_digest(self, store: BlobStore, digest: str) -> None:
        with pytest.raises(ValidationError):
            store.locate(digest)

    async def test_a_malformed_digest_never_reaches_the_backend(
        self, store: BlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await store.put_bytes(b"x")
        calls = _spy_on_primitives(store, monkeypatch)
        for digest in BAD_DIGESTS:
            for operation, call in _OPERATIONS.items():
                with pytest.raises(ValidationError) as caught:
                    await call(store, digest)
                assert caught.value.details["backend"] == store.backend, operation
            with pytest.raises(ValidationError):
                store.locate(digest)
            [refused] = await store.verify_each([digest])
            assert isinstance(refused, ValidationError)
        assert calls == []

    @pytest.mark.parametrize("chunk_size", [0, -1, -(2**40)])
    async def test_a_chunk_size_below_one_never_reaches_the_backend(
        self, store: BlobStore, monkeypatch: pytest.MonkeyPatch, chunk_size: int
    ) -> None:
        info = await store.put_bytes(b"abc")
        calls = _spy_on_primitives(store, monkeypatch)
        with pytest.raises(ValidationError) as caught:
            await _collect(store.get_stream(info.sha256, chunk_size=chunk_size))
        assert caught.value.details["operation"] == "get"
        assert caught.value.details["backend"] == store.backend
        assert calls == []

    @pytest.mark.parametrize("operation", _READS)
    async def test_not_found_names_the_operation_digest_backend_and_path(
        self, store: BlobStore, operation: str
    ) -> None:
        digest = sha256_hex(b"never stored")
        with pytest.raises(NotFound) as caught:
            await _OPERATIONS[operation](store, f"sha256:{digest}")
        _assert_names_the_blob(store, caught.value, _READ_OPERATIONS[operation], digest)

    # -- stat, exists, delete, locate -----------------------------------------------------------

    async def test_stat_reports_size(self, store: BlobStore) -> None:
        data = payload(54_321)
        info = await store.put_bytes(data)
        assert await store.stat(info.sha256) == BlobInfo(sha256=info.sha256, size_bytes=54_321)

    async def test_exists_is_false_before_put_and_true_after(self, store: BlobStore) -> None:
        digest = sha256_hex(b"soon")
        assert not await store.exists(digest)
        await store.put_bytes(b"soon")
        assert await store.exists(digest)

    async def test_delete_removes_the_blob_and_reports_whether_it_existed(
        self, store: BlobStore
    ) -> None:
        keep = await store.put_bytes(b"keep")
        gone = await store.put_bytes(b"gone")
        assert await store.delete(gone.sha256) is True
        assert await store.delete(gone.sha256) is False
        assert not await store.exists(gone.sha256)
        with pytest.raises(NotFound):
            await store.get_bytes(gone.sha256)
        assert await _digests(store) == [keep.sha256]

    async def test_put_after_delete_stores_the_blob_again(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"phoenix")
        await store.delete(info.sha256)
        assert await store.put_bytes(b"phoenix") == info
        assert await store.get_bytes(info.sha256) == b"phoenix"

    async def test_locate_names_backend_and_digest_without_io(self, store: BlobStore) -> None:
        digest = sha256_hex(b"not stored")
        location = store.locate(digest)
        assert location.backend == store.backend
        assert digest in location.path
        assert digest in location.uri
        assert "://" in location.uri

    # -- listing --------------------------------------------------------------------------------

    async def test_iter_digests_of_an_empty_store_is_empty(self, store: BlobStore) -> None:
        assert await _digests(store) == []

    async def test_iter_digests_lists_exactly_what_was_put(self, store: BlobStore) -> None:
        blobs = [b"", b"a", *(payload(1000 + i, seed=i) for i in range(40))]
        infos = [await store.put_bytes(blob) for blob in blobs]
        assert await _digests(store) == sorted({info.sha256 for info in infos})

    # -- put_many -------------------------------------------------------------------------------

    async def test_put_many_round_trips_in_order(self, store: BlobStore) -> None:
        already = await store.put_bytes(b"already here")
        items = [payload(4096, seed=i) for i in range(50)] + [b"", b"already here", b"dup", b"dup"]
        infos = await store.put_many(items)
        assert [info.sha256 for info in infos] == [sha256_hex(item) for item in items]
        assert [info.size_bytes for info in infos] == [len(item) for item in items]
        for item, info in zip(items, infos, strict=True):
            assert await store.get_bytes(info.sha256) == item
        assert await _digests(store) == sorted({already.sha256} | {i.sha256 for i in infos})

    async def test_put_many_of_nothing_returns_nothing(self, store: BlobStore) -> None:
        assert await store.put_many([]) == []
        assert await _digests(store) == []

    # -- tamper detection -----------------------------------------------------------------------

    async def test_corrupted_blob_fails_get_bytes(self, store: BlobStore) -> None:
        info = await store.put_bytes(payload(3 * CHUNK_SIZE + 7, seed=13))
        await self.corrupt(store, info.sha256)
        with pytest.raises(IntegrityError) as caught:
            await store.get_bytes(info.sha256)
        assert caught.value.details["sha256"] == info.sha256
        assert caught.value.details["backend"] == store.backend

    @pytest.mark.parametrize("operation", ["get_bytes", "get_stream", "verify", "verify_each"])
    async def test_corrupted_raw_bytes_raise_integrity_error_naming_the_blob(
        self, store: BlobStore, operation: str
    ) -> None:
        info = await store.put_bytes(payload(100_000, seed=31))
        await self.corrupt(store, info.sha256)
        if operation == "verify_each":
            [error] = await store.verify_each([info.sha256])
            assert isinstance(error, IntegrityError)
        else:
            with pytest.raises(IntegrityError) as caught:
                await _OPERATIONS[operation](store, f"sha256:{info.sha256}")
            error = caught.value
        operation_name = "verify" if operation == "verify_each" else _READ_OPERATIONS[operation]
        _assert_names_the_blob(store, error, operation_name, info.sha256)
        assert error.details["actual_sha256"] != info.sha256

    async def test_corrupted_blob_fails_verify(self, store: BlobStore) -> None:
        info = await store.put_bytes(payload(100_000, seed=17))
        assert await store.verify(info.sha256) == info
        await self.corrupt(store, info.sha256)
        with pytest.raises(IntegrityError):
            await store.verify(info.sha256)

    async def test_verify_each_reports_each_blob_in_order(self, store: BlobStore) -> None:
        good = await store.put_bytes(payload(70_000, seed=23))
        bad = await store.put_bytes(payload(50_000, seed=29))
        absent = sha256_hex(b"never stored")
        await self.corrupt(store, bad.sha256)
        found = await store.verify_each([bad.sha256, absent, good.sha256, "not-a-digest"])
        assert isinstance(found[0], IntegrityError)
        assert found[1] is None
        assert found[2] == good
        assert isinstance(found[3], ValidationError)
        assert await store.verify_each([]) == []

    async def test_corrupted_blob_fails_get_stream_after_the_last_chunk(
        self, store: BlobStore
    ) -> None:
        size = 3 * CHUNK_SIZE + 7
        info = await store.put_bytes(payload(size, seed=19))
        await self.corrupt(store, info.sha256)
        received: list[int] = []

        async def drain() -> None:
            async for chunk in store.get_stream(info.sha256):
                received.append(len(chunk))

        with pytest.raises(IntegrityError):
            await drain()
        assert sum(received) == (await store.stat(info.sha256)).size_bytes

    async def test_corrupted_empty_blob_is_detected(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"")
        await self.corrupt(store, info.sha256)
        with pytest.raises(IntegrityError):
            await store.verify(info.sha256)

    async def test_corruption_stays_confined_to_its_blob(self, store: BlobStore) -> None:
        bad = await store.put_bytes(b"bad")
        good = await store.put_bytes(b"good")
        await self.corrupt(store, bad.sha256)
        assert await store.verify(good.sha256) == good

    # -- lifecycle ------------------------------------------------------------------------------

    async def test_open_and_close_are_idempotent(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"survives reopen")
        await store.open()
        await store.close()
        await store.close()
        await store.open()
        assert await store.get_bytes(info.sha256) == b"survives reopen"

    # -- what writers leave (GC's inputs) --------------------------------------------------------

    async def test_finished_puts_leave_no_staging_and_no_upload(self, store: BlobStore) -> None:
        await store.put_bytes(b"small")
        await store.put_stream(chunked(payload(140_000, seed=7), 70_000))
        assert await store.list_staging() == []
        assert await store.list_uploads() == []

    async def test_staging_and_upload_removal_refuse_paths_the_store_did_not_name(
        self, store: BlobStore
    ) -> None:
        info = await store.put_bytes(b"stays")
        later = datetime.now(UTC) + timedelta(days=1)
        hexd = info.sha256
        for path in (
            "",
            "../outside",
            "/etc/passwd",
            f"sha256/{hexd[:2]}/{hexd[2:4]}/{hexd}",
            f"{hexd[:2]}/{hexd[2:4]}/{hexd}",
            f"sha256/{hexd[:2]}/{hexd[2:4]}/{hexd}#upload",
            "tmp/../sha256",
        ):
            assert await store.remove_staging(path, older_than=later) == 0
            assert await store.abort_upload(path, older_than=later) == 0
        assert await store.get_bytes(hexd) == b"stays"

    # -- properties -----------------------------------------------------------------------------

    @settings(
        max_examples=50,
        deadline=None,
        # One store serves every example: content addressing makes earlier examples harmless.
        # Every backend's subclass runs this one method; sharing its example database means a
        # failure found on one backend is replayed on the others, which is what a suite wants.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(case=_chunkings(), read_size=st.integers(min_value=1, max_value=7_000))
    async def test_any_bytes_in_any_chunking_round_trip(
        self, store: BlobStore, case: tuple[bytes, list[int]], read_size: int
    ) -> None:
        data, sizes = case
        info = await store.put_stream(chunked(data, sizes))
        assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=len(data))
        chunks = await _collect(store.get_stream(info.sha256, chunk_size=read_size))
        assert all(len(chunk) <= read_size for chunk in chunks)
        assert b"".join(chunks) == data
        assert await store.put_many([data]) == [info]
