"""Writing a bundle, resumably: `BundleWriter` (see the package docstring for the guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pydantic

from strongroom import __version__
from strongroom._fs import file_kind
from strongroom.adapters import LocalBlobStore
from strongroom.bundle.format import (
    ALLOWED_ENTRIES,
    BLOBS_DIR,
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    LOCK,
    MANIFEST,
    PARTIAL_DIR,
    RECORD_KINDS,
    RECORDS_DIR,
    RecordKind,
    encode_record,
    file_digest,
    fsync_dir,
    io_errors,
    is_bundle_dir,
    make_dir,
    read_manifest,
)
from strongroom.errors import Conflict
from strongroom.models import utcnow

__all__ = ["BundleWriter"]


class _KindFile:
    """One records file being written in ``.partial/``: hashed and counted as it grows."""

    def __init__(self, temp: Path, handle: IO[bytes]) -> None:
        self.temp = temp
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0
        self.records = 0

    def write(self, data: bytes, records: int) -> None:
        self.handle.write(data)
        self.hasher.update(data)
        self.size += len(data)
        self.records += records

    def seal(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


class BundleWriter:
    """Writes a bundle directory; see the module docstring for the format and guarantees.

    Use: ``open()``; per kind ``begin_kind``, ``write`` batches, ``end_kind``; ``finish()``
    writes the manifest; ``close()`` always. Blobs go through ``blobs`` (a `LocalBlobStore`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.blobs = LocalBlobStore(self.path / BLOBS_DIR)
        self.existing: dict[str, Any] | None = None
        self._files: dict[str, dict[str, Any]] = {}
        self._current: _KindFile | None = None
        self._lock_fd: int | None = None
        self._changed = False

    @property
    def _partial(self) -> Path:
        return self.path / PARTIAL_DIR

    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        await self.blobs.open()

    def _open_sync(self) -> None:
        with io_errors("bundle.open", self.path):
            if self.path.exists() and not self.path.is_dir():
                kind = file_kind(os.stat(self.path).st_mode)
                raise Conflict(
                    f"cannot write a bundle to {self.path}: it is a {kind}, not a directory",
                    operation="bundle.open",
                    path=str(self.path),
                    file_type=kind,
                )
            if self.path.is_dir():
                unexpected = sorted(set(os.listdir(self.path)) - ALLOWED_ENTRIES)
                if unexpected or ((self.path / MANIFEST).exists() and not is_bundle_dir(self.path)):
                    raise Conflict(
                        f"refusing to write a bundle into {self.path}: the directory is not "
                        "empty and holds no bundle (choose a new directory)",
                        operation="bundle.open",
                        path=str(self.path),
                        reason="not_a_bundle",
                        entries=unexpected[:10],
                    )
                if (self.path / MANIFEST).exists():
                    self.existing = read_manifest(self.path)
            make_dir(self.path)
            make_dir(self.path / RECORDS_DIR)
            make_dir(self._partial)
            fd = os.open(self._partial / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Conflict(
                    f"another export is writing the bundle at {self.path}",
                    operation="bundle.open",
                    path=str(self.path),
                    reason="locked",
                ) from None
            self._lock_fd = fd
            for entry in os.listdir(self._partial):  # temp files of a killed export
                if entry != LOCK:
                    (self._partial / entry).unlink(missing_ok=True)
            # Blob temp files of a killed export (we hold the lock: no other writer).
            shutil.rmtree(self.path / BLOBS_DIR / "tmp", ignore_errors=True)

    async def close(self) -> None:
        if self._current is not None:
            await asyncio.to_thread(self._current.discard)
            self._current = None
        await self.blobs.close()
        if self._lock_fd is not None:
            if self.existing is not None or (self.path / MANIFEST).exists():
                # A finished bundle (refused, or completed just now): leave no temp area.
                await asyncio.to_thread(self._drop_temp_dirs)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _drop_temp_dirs(self) -> None:
        shutil.rmtree(self._partial, ignore_errors=True)
        shutil.rmtree(self.path / BLOBS_DIR / "tmp", ignore_errors=True)

    # -- records ----------------------------------------------------------------------------

    async def begin_kind(self, kind: RecordKind) -> None:
        def start() -> _KindFile:
            temp = self._partial / f"{kind.name}.jsonl.{secrets.token_hex(6)}"
            with io_errors("bundle.write", temp):
                return _KindFile(temp, temp.open("xb"))

        if self._current is not None:
            await asyncio.to_thread(self._current.discard)
        self._current = await asyncio.to_thread(start)

    async def write(self, records: Sequence[pydantic.BaseModel]) -> None:
        current = self._current
        assert current is not None, "begin_kind first"
        if not records:
            return
        data = b"".join(encode_record(r) + b"\n" for r in records)
        with io_errors("bundle.write", current.temp):
            await asyncio.to_thread(current.write, data, len(records))

    async def end_kind(self, kind: RecordKind, *, check_only: bool) -> bool:
        """Publish the kind's file (or, with ``check_only``, just compare it). Returns True
        when a finished bundle already held exactly these records (nothing written).
        `Conflict` when a finished bundle holds different ones."""
        current = self._current
        assert current is not None, "begin_kind first"
        self._current = None
        return await asyncio.to_thread(self._end_kind_sync, kind, current, check_only)

    def _end_kind_sync(self, kind: RecordKind, current: _KindFile, check_only: bool) -> bool:
        final = self.path / kind.file
        try:
            with io_errors("bundle.write", current.temp):
                current.seal()
                info = {
                    "sha256": current.hasher.hexdigest(),
                    "size_bytes": current.size,
                    "records": current.records,
                }
                if self.existing is not None:
                    self._compare(kind, current.temp, final)
                    self._files[kind.file] = info
                    return True
                if check_only:
                    return False
                os.replace(current.temp, final)
                fsync_dir(final.parent)
                self._files[kind.file] = info
                self._changed = True
                return False
        finally:
            current.discard()

    def _compare(self, kind: RecordKind, new: Path, old: Path) -> None:
        """`Conflict` naming the first differing record unless ``new`` equals ``old``."""
        if old.is_file() and file_digest(new)[0] == file_digest(old)[0]:
            return
        line_no, new_line, old_line = 1, b"", b""
        if old.is_file():
            with new.open("rb") as a, old.open("rb") as b:
                for line_no, (new_line, old_line) in enumerate(_zip_lines(a, b), start=1):  # noqa: B007
                    if new_line != old_line:
                        break
        else:
            with new.open("rb") as a:
                new_line = a.readline()
        subject = "?"
        for raw in (new_line, old_line):
            if raw.strip():
                with contextlib.suppress(ValueError, pydantic.ValidationError):
                    subject = kind.key(kind.model.model_validate_json(raw))
                    break
        raise Conflict(
            f"the bundle at {self.path} already holds a finished export with different "
            f"records: first difference at {kind.file} line {line_no} ({kind.label} {subject}); "
            "export to a new directory",
            operation="export",
            path=str(self.path),
            kind=kind.name,
            key=subject,
            line=line_no,
        )

    # -- finishing --------------------------------------------------------------------------

    async def finish(self, source: dict[str, str], counts: dict[str, int]) -> dict[str, Any]:
        """Write the manifest (last: it marks the bundle complete) and drop the temp dirs."""
        return await asyncio.to_thread(self._finish_sync, source, counts)

    def _finish_sync(self, source: dict[str, str], counts: dict[str, int]) -> dict[str, Any]:
        with io_errors("bundle.finish", self.path):
            blob_count, blob_bytes = _walk_blobs(self.path / BLOBS_DIR / "sha256")
            if (
                self.existing is not None
                and not self._changed
                and self.existing.get("counts", {}).get("blobs") == blob_count
                and self.existing.get("blob_bytes") == blob_bytes
            ):
                manifest = self.existing
            else:
                manifest = {
                    "format": BUNDLE_FORMAT,
                    "format_version": BUNDLE_VERSION,
                    "created_at": utcnow().isoformat().replace("+00:00", "Z"),
                    "strongroom_version": __version__,
                    "source": source,
                    "kinds": [kind.name for kind in RECORD_KINDS],
                    "counts": {**counts, "blobs": blob_count},
                    "blob_bytes": blob_bytes,
                    "files": {kind.file: self._files[kind.file] for kind in RECORD_KINDS},
                }
                temp = self._partial / f"{MANIFEST}.{secrets.token_hex(6)}"
                with temp.open("xb") as handle:
                    handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, self.path / MANIFEST)
                fsync_dir(self.path)
            # The bundle is complete: the temp areas go (the lock file with its directory).
            self._drop_temp_dirs()
            fsync_dir(self.path)
            return manifest


def _zip_lines(a: IO[bytes], b: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    while True:
        left, right = a.readline(), b.readline()
        if not left and not right:
            return
        yield left, right


def _walk_blobs(root: Path) -> tuple[int, int]:
    count = total = 0
    if not root.is_dir():
        return 0, 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            count += 1
            total += os.stat(os.path.join(directory, name)).st_size
    return count, total
