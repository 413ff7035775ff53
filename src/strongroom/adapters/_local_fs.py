"""Low-level file primitives behind `LocalBlobStore`, free of any store state.

This module holds what touches the file system directly: writing, fsyncing and sealing temp
files (`write_durable_temp` in one go, or `start_temp_writer`/`TempWriter` for streamed puts,
which hold an flock while alive), sweeping stale temp files whose writer is gone
(`sweep_stale_temps`), creating shard directories durably (`mkdir_durable`), publishing a temp
file under its final name without ever replacing one (`link_no_replace`), and reading a blob
from worker threads (`BlobReader`). Error mapping, the directory layout and the
thread/event-loop plumbing stay in the store; hashing and digests are the blob port's
(`strongroom.ports.blobs.BlobStore`). POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import threading
from collections.abc import Sequence

from strongroom._fs import fsync_dir

__all__ = [
    "DIRECT_ALIGN",
    "BlobReader",
    "TempWriter",
    "link_no_replace",
    "mkdir_durable",
    "start_temp_writer",
    "sweep_stale_temps",
    "write_durable_temp",
]

_BLOB_MODE = 0o444
# What ``O_DIRECT`` writes must be aligned to (offset, length and memory): the page size,
# a multiple of every block device's logical block size.
DIRECT_ALIGN = 4096
# link(2) failures meaning "no hard links on this filesystem": fall back to rename(2).
_LINK_UNSUPPORTED = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- temp files ------------------------------------------------------------------------------------


def _new_temp(tmp_dir: str) -> tuple[str, int]:
    """Create a fresh, uniquely named temp file in ``tmp_dir``; return its path and descriptor."""
    path = os.path.join(tmp_dir, f"{os.getpid()}-{secrets.token_hex(8)}.tmp")
    return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def write_durable_temp(tmp_dir: str, data: bytes) -> str:
    """Write ``data`` to a new read-only temp file, fsync and close it; return its path.

    On failure the temp file is removed before the error propagates.
    """
    temp, fd = _new_temp(tmp_dir)
    ok = False
    try:
        _write_all(fd, data)
        os.fchmod(fd, _BLOB_MODE)
        os.fsync(fd)
        ok = True
    finally:
        os.close(fd)
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return temp


def sweep_stale_temps(tmp_dir: str, horizon: float) -> int:
    """Delete temp files last written before ``horizon`` (a `time.time()`) whose writer is gone.

    A live writer holds an flock on its temp file, so it is never taken; a SIGKILLed writer's
    lock died with it. Returns how many files were removed.
    """
    removed = 0
    with os.scandir(tmp_dir) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime > horizon:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer still holds it
                else:
                    os.unlink(entry.path)
                    removed += 1
                finally:
                    os.close(fd)
            except FileNotFoundError:
                continue  # another process swept it first
    return removed


def list_temps(tmp_dir: str, limit: int) -> list[tuple[str, int, float, bool]]:
    """(name, size, mtime, live) of the regular files in ``tmp_dir`` (at most ``limit``); live:
    a writer holds its flock. Links, folders and special files are not staging: left out."""
    found: list[tuple[str, int, float, bool]] = []
    try:
        entries = os.scandir(tmp_dir)
    except FileNotFoundError:
        return found
    with entries:
        for entry in entries:
            if len(found) >= limit:
                break
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                info = entry.stat(follow_symlinks=False)
                found.append((entry.name, info.st_size, info.st_mtime, _held(entry.path)))
            except FileNotFoundError:
                continue
    return found


def _held(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_temp(tmp_dir: str, name: str, horizon: float) -> int:
    """Unlink the temp file ``name`` of ``tmp_dir`` when it is a regular file last written
    before ``horizon`` that no writer holds; returns its size (0: kept or gone)."""
    if not name or "/" in name or name in {".", ".."} or "\x00" in name:
        return 0
    path = os.path.join(tmp_dir, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mtime >= horizon:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a writer still holds it
        os.unlink(path)
        return int(info.st_size)
    except FileNotFoundError:
        return 0
    finally:
        os.close(fd)


class TempWriter:
    """One temp file being written by put_stream or put_file.

    Calls come from worker threads; the lock serialises them so `discard` (cleanup after a
    failure or cancellation) waits for an in-flight `write` and never closes a descriptor under
    it. The writer holds an flock on the file so the stale-temp sweep never takes a live one.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()
        self._offset = 0  # bytes written so far
        self._direct = False  # the descriptor has O_DIRECT set

    def write(self, batch: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append the pieces in order (called from one worker thread at a time)."""
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, "temp blob already closed")
            for piece in batch:
                self._append(piece)

    def direct_io(self) -> bool:
        """Write past the page cache (``O_DIRECT``) from now on where the file system allows
        it: a large put then costs no copy into the cache and no writeback left for `seal`'s
        fsync, the device writing while the caller hashes the next buffer. Only whole
        `DIRECT_ALIGN` blocks, at aligned offsets from page-aligned memory (an `mmap`), are
        written so; anything else (a tail, a short read's remainder) switches the file back to
        buffered writes for good. False when the file system refuses ``O_DIRECT``."""
        with self._lock:
            flag = getattr(os, "O_DIRECT", 0)
            if not flag or self._fd < 0 or self._offset % DIRECT_ALIGN:
                return False
            try:
                flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
                fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | flag)
            except OSError:
                return False
            self._direct = True
            return True

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._direct:
                whole = len(view) - len(view) % DIRECT_ALIGN
                if whole == 0 or self._offset % DIRECT_ALIGN:
                    self._buffered()
                    continue
                try:
                    written = os.write(self._fd, view[:whole])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._buffered()  # memory or size the device will not take directly
                    continue
            else:
                written = os.write(self._fd, view)
            self._offset += written
            view = view[written:]

    def _buffered(self) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))
        self._direct = False

    def seal(self) -> None:
        """Make the bytes and the read-only mode durable, then close."""
        with self._lock:
            fd, self._fd = self._fd, -1
            try:
                os.fchmod(fd, _BLOB_MODE)
                os.fsync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Close and remove the temp file. Idempotent; never raises."""
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def start_temp_writer(tmp_dir: str) -> TempWriter:
    """A new temp file in ``tmp_dir``, flocked so the temp sweep knows its writer is alive."""
    path, fd = _new_temp(tmp_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # tells the temp sweep a writer is alive
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return TempWriter(path, fd)


# -- publishing ------------------------------------------------------------------------------------


def mkdir_durable(path: str, dirs_to_sync: set[str] | None = None) -> None:
    """mkdir -p whose new entries are made durable: each changed parent is fsynced now,
    or added to ``dirs_to_sync`` for a batch to fsync once."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        mkdir_durable(os.path.dirname(path), dirs_to_sync)
        try:
            os.mkdir(path)
        except FileExistsError:
            return
    if dirs_to_sync is None:
        fsync_dir(os.path.dirname(path))
    else:
        dirs_to_sync.add(os.path.dirname(path))


def link_no_replace(temp: str, final: str) -> None:
    """Give ``temp`` the name ``final`` unless that name exists (it holds the same bytes)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        return  # same digest, same bytes: deduplicated
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise
        # No hard links here. rename(2) replaces, but a concurrent writer of the same digest
        # holds the same bytes, so the worst case is an identical file swapped in atomically.
        if not os.path.exists(final):
            os.rename(temp, final)


# -- reading ---------------------------------------------------------------------------------------


class BlobReader:
    """An open blob file read piece by piece from worker threads.

    `close_soon` is called from the event loop: if a read is in flight (e.g. the consumer was
    cancelled mid-chunk) the reading thread closes the descriptor when it is done, so the loop
    never blocks and a descriptor is never closed under a read.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._state = threading.Lock()  # guards the flags only, never held during I/O
        self._busy = False
        self._close_requested = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at EOF (or once closed)."""
        with self._state:
            if self._fd < 0:
                return b""
            self._busy = True
        try:
            return os.read(self._fd, size)
        finally:
            with self._state:
                self._busy = False
                if self._close_requested:
                    self._close_locked()

    def close_soon(self) -> None:
        with self._state:
            if self._busy:
                self._close_requested = True
            else:
                self._close_locked()

    def _close_locked(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
