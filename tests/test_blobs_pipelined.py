"""`BlobStore.put_file` on the local store: the file read once into a few buffers, each hashed
by one thread while another writes it (``O_DIRECT`` where the file system allows), then
published. These tests shrink the buffers so that every boundary is cheap to reach, and check
content and digest around them, short reads (which break the direct-I/O alignment), and that a
mismatch, an error on either side, a raising progress callback or a cancellation leaves no temp
file and publishes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strongroom.ports.blob_pump as blob_pump
from strongroom.adapters import _local as local_adapter
from strongroom.adapters import _local_fs
from strongroom.adapters._local import LocalBlobStore
from strongroom.errors import IntegrityError, StorageIOError, ValidationError
from strongroom.models import BlobInfo
from strongroom.testing.blobs import payload, sha256_hex

ALIGN = _local_fs.DIRECT_ALIGN
BUFFER = 3 * ALIGN  # the pipeline's buffer size in these tests
SIZES = sorted(
    {
        0,
        1,
        ALIGN - 1,
        ALIGN,
        ALIGN + 1,
        BUFFER - 1,
        BUFFER,
        BUFFER + 1,
        2 * BUFFER,
        4 * BUFFER + ALIGN + 7,
        20 * BUFFER + 1,  # more buffers than the pool holds: each is reused
    }
)


@pytest.fixture(autouse=True)
def small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blob_pump, "_PUMP_BUFFER", BUFFER)
    monkeypatch.setattr(blob_pump, "_PUMP_BUFFERS", 3)


@pytest.fixture(params=["direct", "buffered"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the temp file is written: O_DIRECT (when the file system takes it) and the
    page cache (a file system that refuses O_DIRECT)."""
    if request.param == "buffered":
        monkeypatch.setattr(_local_fs.TempWriter, "direct_io", lambda self: False)
    return str(request.param)


@pytest.fixture
async def store(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.open()
    return store


def _temp_names(store: LocalBlobStore) -> list[str]:
    return sorted(os.listdir(store.root / "tmp"))


async def _digests(store: LocalBlobStore) -> list[str]:
    return sorted([digest async for digest in store.iter_digests()])


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Callable[[bytes], int]]:
    """A read descriptor on a new file holding the given bytes (closed after the test)."""
    opened: list[int] = []

    def make(data: bytes) -> int:
        path = tmp_path / f"source-{len(opened)}.bin"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        opened.append(fd)
        return fd

    yield make
    for fd in opened:
        os.close(fd)


def _direct_io_works(directory: Path) -> bool:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    path = directory / "probe"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag, 0o600)
    except OSError:
        return False
    os.close(fd)
    path.unlink()
    return True


# -- content and digest ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_put_file_stores_exactly_the_file(
    store: LocalBlobStore, source: Callable[[bytes], int], write_mode: str, size: int
) -> None:
    data = payload(size, seed=size)
    seen: list[int] = []
    info = await store.put_file(source(data), progress=seen.append)
    assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=size)
    path = store.root / store.locate(info.sha256).path
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    await store.verify(info.sha256)
    # progress: the bytes read so far, once per buffer, ending with the total
    assert seen == [min(size, BUFFER * n) for n in range(1, -(-size // BUFFER) + 1)]
    assert _temp_names(store) == []


async def test_put_file_writes_past_the_page_cache_where_it_can(
    store: LocalBlobStore, source: Callable[[bytes], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_io_works(store.root):
        pytest.skip("this file system refuses O_DIRECT")
    modes: list[tuple[bool, bool]] = []  # O_DIRECT before and after each write
    real_write = _local_fs.TempWriter.write

    def spying(self: _local_fs.TempWriter, batch: list[memoryview]) -> None:
        before = self._direct
        real_write(self, batch)
        if batch:  # (publishing writes an empty batch)
            modes.append((before, self._direct))

    monkeypatch.setattr(_local_fs.TempWriter, "write", spying)
    data = payload(5 * BUFFER + 100, seed=3)
    info = await store.put_file(source(data))
    assert await store.get_bytes(info.sha256) == data
    # whole buffers went direct; the tail's 100 bytes switched the file to buffered writes
    assert modes == [(True, True)] * 5 + [(True, False)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(0, 6 * BUFFER),
    reads=st.lists(st.integers(1, BUFFER), min_size=1, max_size=12),
    direct=st.booleans(),
)
def test_short_reads_anywhere_still_store_exactly_the_file(
    monkeypatch: pytest.MonkeyPatch, size: int, reads: list[int], direct: bool
) -> None:
    """Reads that come up short (a slow file system, a signal) leave buffers part-filled and
    later writes unaligned: the writer must leave O_DIRECT and the bytes stay the same."""
    data = payload(size, seed=size + len(reads))
    turns = iter(range(1_000_000))

    def short_read(fd: int, view: memoryview) -> int:
        limit = reads[next(turns) % len(reads)]
        return os.readv(fd, [view[:limit]])

    with monkeypatch.context() as patch:
        patch.setattr(blob_pump, "_read_into", short_read)
        if not direct:
            patch.setattr(_local_fs.TempWriter, "direct_io", lambda self: False)
        with tempfile.TemporaryDirectory() as scratch:
            info = asyncio.run(_put_from_file(Path(scratch), data))
    assert info == BlobInfo(sha256=sha256_hex(data), size_bytes=size)


async def _put_from_file(directory: Path, data: bytes) -> BlobInfo:
    store = LocalBlobStore(directory / "blobs")
    await store.open()
    (directory / "source").write_bytes(data)
    fd = os.open(directory / "source", os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = await store.put_file(fd)
    finally:
        os.close(fd)
    assert (store.root / store.locate(info.sha256).path).read_bytes() == data
    assert _temp_names(store) == []
    return info


async def test_put_file_reads_from_the_descriptors_position(
    store: LocalBlobStore, source: Callable[[bytes], int]
) -> None:
    data = payload(2 * BUFFER + 5, seed=8)
    fd = source(b"header" + data)
    os.lseek(fd, len(b"header"), os.SEEK_SET)
    info = await store.put_file(fd)
    assert info.sha256 == sha256_hex(data)


async def test_the_bytes_hashed_are_the_bytes_written_even_if_the_file_changes(
    store: LocalBlobStore,
    source: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The file is read once: a writer changing it mid-put changes what is stored and its
    digest together, never one without the other."""
    data = payload(6 * BUFFER, seed=9)
    fd = source(data)
    path = tmp_path / "source-0.bin"  # what `source` named it
    real_read = blob_pump._read_into
    calls = 0

    def read_then_change(fd: int, view: memoryview) -> int:
        nonlocal calls
        count = real_read(fd, view)
        calls += 1
        if calls == 2:  # after the second buffer was read, the rest of the file changes
            with open(path, "r+b") as other:
                other.seek(3 * BUFFER)
                other.write(b"\xff" * BUFFER)
        return count

    monkeypatch.setattr(blob_pump, "_read_into", read_then_change)
    info = await store.put_file(fd)
    stored = (store.root / store.locate(info.sha256).path).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == info.sha256
    assert stored[3 * BUFFER : 4 * BUFFER] == b"\xff" * BUFFER


# -- nothing published, nothing left -----------------------------------------------------------


async def test_expected_sha256_mismatch_is_refused_with_nothing_stored(
    store: LocalBlobStore, source: Callable[[bytes], int], write_mode: str
) -> None:
    data = payload(4 * BUFFER + 1, seed=10)
    wrong = sha256_hex(b"other")
    with pytest.raises(IntegrityError) as caught:
        await store.put_file(source(data), expected_sha256=wrong)
    assert caught.value.details["actual_sha256"] == sha256_hex(data)
    assert caught.value.details["sha256"] == wrong
    assert _temp_names(store) == []
    assert await _digests(store) == []
    info = await store.put_file(source(data), expected_sha256=sha256_hex(data))
    assert info.sha256 == sha256_hex(data)


@pytest.mark.parametrize("failing_call", [1, 2, 5])
async def test_a_read_error_mid_way_leaves_no_temp_and_publishes_nothing(
    store: LocalBlobStore,
    source: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
    write_mode: str,
    failing_call: int,
) -> None:
    real_read = blob_pump._read_into
    calls = 0

    def failing_read(fd: int, view: memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise OSError(5, "Input/output error")
        return real_read(fd, view)

    monkeypatch.setattr(blob_pump, "_read_into", failing_read)
    with pytest.raises(OSError, match="Input/output error"):
        await store.put_file(source(payload(8 * BUFFER, seed=11)))
    assert calls == failing_call
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_a_write_error_mid_way_is_a_storage_error_and_leaves_nothing(
    store: LocalBlobStore,
    source: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
    write_mode: str,
) -> None:
    real_write = _local_fs.TempWriter.write
    calls = 0

    def failing_write(self: _local_fs.TempWriter, batch: list[memoryview]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real_write(self, batch)

    monkeypatch.setattr(_local_fs.TempWriter, "write", failing_write)
    with pytest.raises(StorageIOError) as caught:
        await store.put_file(source(payload(8 * BUFFER, seed=12)))
    assert caught.value.details["reason"] == "ENOSPC"
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_a_hashing_error_leaves_nothing(
    store: LocalBlobStore, source: Callable[[bytes], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenHasher:
        def update(self, data: memoryview) -> None:
            raise MemoryError("hasher broke")

        def hexdigest(self) -> str:
            raise AssertionError("never asked")

    monkeypatch.setattr(hashlib, "sha256", BrokenHasher)  # the module the port uses
    with pytest.raises(MemoryError, match="hasher broke"):
        await store.put_file(source(payload(4 * BUFFER, seed=13)))
    monkeypatch.undo()
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_a_raising_progress_callback_fails_the_put_before_it_publishes(
    store: LocalBlobStore, source: Callable[[bytes], int]
) -> None:
    data = payload(2 * BUFFER - 1, seed=14)  # the last report is the one that raises

    def progress(done: int) -> None:
        if done == len(data):
            raise KeyError("progress broke")

    with pytest.raises(KeyError, match="progress broke"):
        await store.put_file(source(data), progress=progress)
    assert _temp_names(store) == []
    assert await _digests(store) == []


@pytest.mark.parametrize("at", ["first", "last"])
async def test_a_cancelled_put_file_leaves_no_temp_and_publishes_nothing(
    store: LocalBlobStore, source: Callable[[bytes], int], write_mode: str, at: str
) -> None:
    """Cancelled from a progress report (the first, or the last: every byte read, hashed
    and written by then or about to be): the put is between reading and publishing whatever
    the machine's speed, since the reports run before the pipeline may publish."""
    data = payload(10 * BUFFER, seed=15)
    temps_seen: list[list[str]] = []
    task: asyncio.Task[BlobInfo] | None = None

    def progress(done: int) -> None:
        if not temps_seen and (at == "first" or done == len(data)):
            temps_seen.append(_temp_names(store))
            assert task is not None
            task.cancel()

    task = asyncio.create_task(store.put_file(source(data), progress=progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(temps_seen[0]) == 1, "the temp file existed while the put ran"
    assert _temp_names(store) == []
    assert await _digests(store) == []
    assert not await store.exists(sha256_hex(data))


async def test_cancelling_while_the_temp_file_is_being_made_leaves_none(
    store: LocalBlobStore, source: Callable[[bytes], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands while the worker thread creates the temp file: the file it
    made is removed once it is done."""
    made = asyncio.Event()
    discarded = asyncio.Event()
    go_on = threading.Event()
    loop = asyncio.get_running_loop()
    real_start = LocalBlobStore._start_temp
    real_discard = local_adapter._discard_started

    def slow_start(self: LocalBlobStore, direct: bool = False) -> _local_fs.TempWriter:
        writer = real_start(self, direct)
        loop.call_soon_threadsafe(made.set)
        go_on.wait()
        return writer

    def spying_discard(future: asyncio.Future[_local_fs.TempWriter]) -> None:
        real_discard(future)
        discarded.set()

    monkeypatch.setattr(LocalBlobStore, "_start_temp", slow_start)
    monkeypatch.setattr(local_adapter, "_discard_started", spying_discard)
    task = asyncio.create_task(store.put_file(source(b"x" * 100)))
    await made.wait()
    assert len(_temp_names(store)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    go_on.set()
    await discarded.wait()
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_an_existing_blob_is_never_replaced(
    store: LocalBlobStore, source: Callable[[bytes], int]
) -> None:
    data = payload(3 * BUFFER + 17, seed=16)
    first = await store.put_bytes(data)
    path = store.root / store.locate(first.sha256).path
    before = path.stat()
    again = await store.put_file(source(data))
    after = path.stat()
    assert again == first
    assert (after.st_ino, after.st_mtime_ns, after.st_nlink) == (
        before.st_ino,
        before.st_mtime_ns,
        1,
    )
    assert _temp_names(store) == []


async def test_bad_descriptors_are_refused_before_anything_is_staged(
    store: LocalBlobStore,
) -> None:
    for fd in (-1, True, "3", 1.0):
        with pytest.raises(ValidationError):
            await store.put_file(fd)  # type: ignore[arg-type]
    assert _temp_names(store) == []


async def test_concurrent_put_files_do_not_starve_each_other(
    store: LocalBlobStore, source: Callable[[bytes], int]
) -> None:
    """More concurrent puts than the default executor has threads: each pipeline's hashing
    and writing threads are its own, so none waits on another's."""
    datas = [payload(4 * BUFFER + i, seed=100 + i) for i in range(12)]
    infos = await asyncio.gather(*(store.put_file(source(data)) for data in datas))
    assert [info.sha256 for info in infos] == [sha256_hex(data) for data in datas]
    assert _temp_names(store) == []
