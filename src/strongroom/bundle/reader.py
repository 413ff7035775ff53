"""Reading a finished bundle: `BundleReader`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from itertools import islice
from pathlib import Path
from typing import Any

import pydantic

from strongroom._fs import open_regular_file
from strongroom.adapters import LocalBlobStore
from strongroom.bundle.format import (
    BLOBS_DIR,
    MANIFEST,
    RECORD_KINDS,
    RecordKind,
    file_digest,
    io_errors,
    read_manifest,
)
from strongroom.errors import IntegrityError, SerializationError
from strongroom.models import VerifyProblem

__all__ = ["BundleReader", "problem"]

_READ_BATCH = 1000


def problem(kind: str, subject: str, code: str, message: str) -> VerifyProblem:
    return VerifyProblem(kind=kind, code=code, subject=subject, message=message)


class BundleReader:
    """Reads a finished bundle. ``open()`` checks the manifest and the digest of every records
    file; blobs (``blobs``, a `LocalBlobStore` that is never written) are verified as they
    are streamed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.blobs = LocalBlobStore(self.path / BLOBS_DIR)
        self.manifest: dict[str, Any] = {}

    async def open(self, *, check_files: bool = True) -> None:
        self.manifest = await asyncio.to_thread(read_manifest, self.path)
        if check_files:
            problems = await asyncio.to_thread(self.file_problems)
            if problems:
                raise IntegrityError(
                    f"bundle at {self.path} is damaged: {problems[0].message}",
                    operation="bundle.open",
                    path=str(self.path),
                    problems=[p.message for p in problems[:20]],
                )

    def file_problems(self) -> list[VerifyProblem]:
        """Records files that are missing or do not match the manifest (blocking)."""
        problems: list[VerifyProblem] = []
        for kind in RECORD_KINDS:
            if not self.has(kind):
                continue
            info = self.manifest["files"][kind.file]
            path = self.path / kind.file
            try:
                digest, size, lines = file_digest(path)
            except FileNotFoundError:
                problems.append(problem("bundle_file", kind.file, "not_found", "file missing"))
                continue
            except OSError as exc:
                problems.append(problem("bundle_file", kind.file, "io_error", str(exc)))
                continue
            if digest != info.get("sha256") or size != info.get("size_bytes"):
                problems.append(
                    problem(
                        "bundle_file",
                        kind.file,
                        "integrity_error",
                        f"{kind.file} does not match the digest in {MANIFEST} (edited or "
                        "truncated)",
                    )
                )
            elif lines != info.get("records"):
                problems.append(
                    problem(
                        "bundle_file",
                        kind.file,
                        "integrity_error",
                        f"{kind.file} has {lines} records, {MANIFEST} says {info.get('records')}",
                    )
                )
        return problems

    async def close(self) -> None:
        await self.blobs.close()

    def has(self, kind: RecordKind) -> bool:
        """False for an optional kind the bundle predates (it has no file: no records)."""
        return kind.file in self.manifest["files"]

    def count(self, kind: RecordKind) -> int | None:
        if not self.has(kind):
            return 0
        value = self.manifest.get("counts", {}).get(kind.name)
        return value if isinstance(value, int) else None

    async def records(
        self, kind: RecordKind, batch_size: int = _READ_BATCH
    ) -> AsyncIterator[list[Any]]:
        """The kind's records in file order, in batches, each validated as its model."""
        if not self.has(kind):
            return
        path = self.path / kind.file
        with io_errors("bundle.read", path):
            handle = await asyncio.to_thread(open_regular_file, path)
        try:
            line_no = 0
            while True:
                with io_errors("bundle.read", path):
                    lines = await asyncio.to_thread(lambda: list(islice(handle, batch_size)))
                if not lines:
                    return
                batch = []
                for raw in lines:
                    line_no += 1
                    try:
                        batch.append(kind.model.model_validate_json(raw))
                    except pydantic.ValidationError as exc:
                        raise SerializationError(
                            f"{kind.file} line {line_no} is not a valid {kind.label}: "
                            f"{exc.errors(include_url=False)[0]['msg']}",
                            operation="bundle.read",
                            path=str(path),
                            line=line_no,
                        ) from exc
                yield batch
        finally:
            handle.close()
