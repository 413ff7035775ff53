"""The local-directory blob store: the conformance suite plus what only files can show
(layout, modes, temp files, crash safety, fsync batching)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strongroom.adapters._local import LocalBlobStore
from strongroom.errors import IntegrityError, StorageIOError
from strongroom.ports.blobs import BlobStore
from strongroom.testing.blobs import BlobStoreTests, chunked, payload, sha256_hex


def _flip_first_byte(path: Path) -> None:
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00")
    path.chmod(0o444)


class TestLocalBlobStore(BlobStoreTests):
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return LocalBlobStore(tmp_path / "blobs")

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        assert isinstance(store, LocalBlobStore)
        await asyncio.to_thread(_flip_first_byte, store.root / store.locate(sha256).path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.open()
    yield store
    await store.close()


async def _digests(store: BlobStore) -> list[str]:
    return sorted([digest async for digest in store.iter_digests()])


def _temp_names(store: LocalBlobStore) -> list[str]:
    return sorted(os.listdir(store.root / "tmp"))


async def test_blob_files_are_read_only_and_sharded_by_digest(store: LocalBlobStore) -> None:
    info = await store.put_bytes(b"sharded")
    hexd = info.sha256
    path = store.root / "sha256" / hexd[0:2] / hexd[2:4] / hexd
    assert path.read_bytes() == b"sharded"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    location = store.locate(hexd)
    assert location.path == f"sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}"
    assert location.uri == path.as_uri()


async def test_every_way_of_putting_publishes_read_only_files(store: LocalBlobStore) -> None:
    infos = [
        await store.put_bytes(b"one"),
        await store.put_stream(chunked(payload(5_000_000), 100_000)),
        *(await store.put_many([b"two", b"three"])),
    ]
    for info in infos:
        mode = (store.root / store.locate(info.sha256).path).stat().st_mode
        assert stat.S_IMODE(mode) == 0o444


async def test_put_does_not_rewrite_an_existing_blob(store: LocalBlobStore) -> None:
    data = payload(100_000)
    info = await store.put_bytes(data)
    path = store.root / store.locate(info.sha256).path
    before = path.stat()
    await store.put_bytes(data)
    await store.put_stream(chunked(data, 7_000))
    await store.put_many([data, data])
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_nlink) == (
        before.st_ino,
        before.st_mtime_ns,
        1,
    )
    assert _temp_names(store) == []


async def test_temp_and_malformed_files_are_never_listed(store: LocalBlobStore) -> None:
    real = await store.put_bytes(b"real")
    misplaced = sha256_hex(b"misplaced")
    wrong_shard = store.root / "sha256" / "00" / "00"
    wrong_shard.mkdir(parents=True)
    (wrong_shard / misplaced).write_bytes(b"misplaced")
    shard = store.root / store.locate(real.sha256).path
    (shard.parent / real.sha256.upper()).write_bytes(b"real")
    (shard.parent / f"{real.sha256[:-1]}").write_bytes(b"short")
    (shard.parent / f"{real.sha256}\n").write_bytes(b"real")
    (shard.parent / "notes.txt").write_bytes(b"junk")
    (store.root / "sha256" / "zz").mkdir()
    (store.root / "tmp" / f"{sha256_hex(b'partial')}").write_bytes(b"partial")
    (store.root / "tmp" / "123-abc.tmp").write_bytes(b"partial")
    assert await _digests(store) == [real.sha256]
    assert not await store.exists(misplaced)
    assert not await store.exists(sha256_hex(b"partial"))


async def test_open_sweeps_stale_temp_files_but_not_fresh_or_locked_ones(
    tmp_path: Path,
) -> None:
    root = tmp_path / "blobs"
    await LocalBlobStore(root).open()
    tmp = root / "tmp"
    long_ago = time.time() - 7200
    for name in ("stale.tmp", "fresh.tmp", "stale-but-locked.tmp"):
        (tmp / name).write_bytes(b"partial")
    os.utime(tmp / "stale.tmp", (long_ago, long_ago))
    os.utime(tmp / "stale-but-locked.tmp", (long_ago, long_ago))
    with (tmp / "stale-but-locked.tmp").open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a live put_stream writer does
        await LocalBlobStore(root).open()
    assert sorted(os.listdir(tmp)) == ["fresh.tmp", "stale-but-locked.tmp"]
    await LocalBlobStore(root, stale_temp_after=0).open()
    assert os.listdir(tmp) == []


async def test_failed_puts_leave_no_temp_files(store: LocalBlobStore) -> None:
    data = payload(9_000_000)
    with pytest.raises(IntegrityError):
        await store.put_stream(chunked(data, 1_000_000), expected_sha256=sha256_hex(b"other"))
    with pytest.raises(IntegrityError):
        await store.put_bytes(data, expected_sha256=sha256_hex(b"other"))

    async def broken() -> AsyncIterator[bytes]:
        yield data
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        await store.put_stream(broken())
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_a_cancelled_put_stream_leaves_no_temp_file(store: LocalBlobStore) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield payload(1_000_000)
            started.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(store.put_stream(endless()))
    await started.wait()
    # Cancel on progress, not after a delay: once a temp file is being written.
    deadline = asyncio.get_running_loop().time() + 120
    while not _temp_names(store):
        assert asyncio.get_running_loop().time() < deadline, "no temp file appeared"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _temp_names(store) == []
    assert await _digests(store) == []


async def test_writes_open_the_store_on_first_use(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "deep" / "blobs")
    assert await _digests(store) == []
    info = await store.put_bytes(b"lazy")
    assert await store.get_bytes(info.sha256) == b"lazy"


async def test_os_errors_become_storage_errors(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StorageIOError) as caught:
        await LocalBlobStore(not_a_dir).open()
    assert caught.value.code == "io_error"
    assert caught.value.details["backend"] == "local"
    assert caught.value.details["reason"] in {"ENOTDIR", "EEXIST"}
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.skipif(sys.platform != "linux", reason="names fds through /proc/self/fd")
async def test_put_many_fsyncs_every_file_and_each_touched_directory_once(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put_bytes(b"already here")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    items = [payload(4096, seed=i) for i in range(300)]
    infos = await store.put_many([*items, b"already here"])
    monkeypatch.undo()

    temp_dir = store.root / "tmp"
    temp_files = [path for path in synced if Path(path).parent == temp_dir]
    directories = [path for path in synced if Path(path).parent != temp_dir]
    assert len(temp_files) == len(set(temp_files)) == len(items)
    shards = {str((store.root / store.locate(info.sha256).path).parent) for info in infos}
    assert shards <= set(directories)
    assert len(directories) == len(set(directories)), "a directory was fsynced twice"
    created = set(directories) - shards  # parents of newly created shard directories
    assert all(Path(path).is_relative_to(store.root / "sha256") for path in created)


_WRITER = r"""
import asyncio, hashlib, random, sys
from pathlib import Path
from strongroom.adapters._local import LocalBlobStore

async def main(root: str, mode: str, seed: int) -> None:
    store = LocalBlobStore(Path(root))
    await store.open()
    rng = random.Random(seed)
    if mode == "stream":
        data = rng.randbytes(32 * 1024 * 1024)

        async def slowly():
            for start in range(0, len(data), 256 * 1024):
                yield data[start : start + 256 * 1024]
                if start == 0:
                    print("started", flush=True)
                await asyncio.sleep(0.002)

        expected = hashlib.sha256(data).hexdigest()
        await store.put_stream(slowly(), expected_sha256=expected)
        print("done", flush=True)
    else:
        print("started", flush=True)
        while True:
            await store.put_many([rng.randbytes(rng.randrange(8192)) for _ in range(20)])
            await store.put_bytes(rng.randbytes(rng.randrange(300_000)))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _kill_writer_midway(root: Path, mode: str, seed: int, delay: float) -> bool:
    """Run a writer, SIGKILL it after ``delay`` seconds; True if it finished first."""
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), mode, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "started"
        time.sleep(delay)
        writer.kill()
        remaining = writer.stdout.read()
        writer.wait()
    return "done" in remaining


async def _check_after_crash(root: Path) -> list[str]:
    store = LocalBlobStore(root)
    await store.open()
    digests = await _digests(store)
    for digest in digests:
        await store.verify(digest)  # every visible blob is whole
    return digests


def test_a_sigkilled_writer_leaves_no_partial_blob(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    rng = random.Random(1234)
    interrupted_streams = 0
    for iteration in range(6):
        mode = "stream" if iteration % 2 == 0 else "many"
        finished = _kill_writer_midway(root, mode, iteration, rng.uniform(0.0, 0.25))
        digests = asyncio.run(_check_after_crash(root))
        if mode == "stream":
            whole = sha256_hex(random.Random(iteration).randbytes(32 * 1024 * 1024))
            assert (whole in digests) == finished
            interrupted_streams += not finished
    assert interrupted_streams > 0, "no stream writer was killed mid-write: tune the delays"
    assert os.listdir(root / "tmp"), "killed writers should have left temp files behind"
    # Killed writers hold no flock, so their leftovers go once they count as stale.
    asyncio.run(LocalBlobStore(root, stale_temp_after=0).open())
    assert os.listdir(root / "tmp") == []
