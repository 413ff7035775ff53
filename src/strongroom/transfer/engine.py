"""The copy engine: one pass over a `Source` into a `Sink` (see the package docstring for the
steps and guarantees)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from strongroom.bundle import RECORD_KINDS, RecordKind
from strongroom.errors import IntegrityError, NotFound, StrongroomError
from strongroom.models import VerifyProblem, utcnow
from strongroom.services.verify import ProgressCallback
from strongroom.transfer.compare import (
    conflict,
    same,
    target_is_earlier_copy,
    updatable,
)
from strongroom.transfer.report import TransferReport
from strongroom.transfer.sinks import Sink
from strongroom.transfer.sources import AUDIT_KIND, Source

__all__ = ["Copy"]

_SMALL_BLOB = 1024 * 1024  # at most this (one source chunk): batched through put_many
_BLOB_BATCH = 256
_BLOB_BATCH_BYTES = 16 * 1024 * 1024


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


@dataclass
class Copy:
    """One transfer: `run` it once."""

    source: Source
    sink: Sink
    progress: ProgressCallback
    report: TransferReport
    in_target: set[str] = field(default_factory=set)
    failed: dict[str, VerifyProblem] = field(default_factory=dict)
    # True when the target's audit chain is a prefix of the source's: the target is an earlier
    # copy of the same vault, so a catalog entry that differs was changed since (audited).
    descendant: bool = False
    audit_seq: int = 0

    async def run(self, *, verify: bool) -> TransferReport:
        if await self.sink.needs_check():
            self.descendant = await target_is_earlier_copy(self.source, self.sink)
            await self.records(check_only=True, lookup=True)
            await self.blob_pass()
            await self.records(check_only=False, lookup=True)
        else:
            await self.blob_pass()
            await self.records(check_only=False, lookup=False)
        counts = {
            name: self.report.records[name]
            + self.report.records_skipped[name]
            + self.report.records_updated[name]
            for name in self.report.records
        }
        await self.sink.finish(self.source.manifest_source(), counts)
        if verify:
            self.report.verify = await self.sink.verify(
                lambda stage, done, total: self.progress(f"verify:{stage}", done, total)
            )
        self.report.finished_at = utcnow()
        return self.report

    # -- blobs ------------------------------------------------------------------------------

    async def blob_pass(self) -> None:
        """Copy every source blob the target lacks. What the target holds is listed once
        (one listing instead of an existence check per blob); small blobs are written in
        batches through ``put_many`` (one durability pass per batch), large ones streamed."""
        self.in_target.update([d async for d in self.sink.blobs.iter_digests()])
        digests = [d async for d in self.source.blobs.iter_digests()]
        batch: list[tuple[str, bytes]] = []
        batch_bytes = 0
        for i, digest in enumerate(digests, start=1):
            if digest in self.in_target:
                self.report.blobs.skipped += 1
            else:
                data = await self.copy_blob(digest, None, missing_ok=True, small=True)
                if data is not None:
                    batch.append((digest, data))
                    batch_bytes += len(data)
                    if len(batch) >= _BLOB_BATCH or batch_bytes >= _BLOB_BATCH_BYTES:
                        await self.flush_blobs(batch)
                        batch_bytes = 0
            self.progress("blobs", i, len(digests))
        await self.flush_blobs(batch)

    async def flush_blobs(self, batch: list[tuple[str, bytes]]) -> None:
        if not batch:
            return
        infos = await self.sink.blobs.put_many([data for _, data in batch])
        counts = self.report.blobs
        for (digest, _data), info in zip(batch, infos, strict=True):
            if info.sha256 != digest:  # the bytes were verified on read: cannot happen
                self.fail(digest, None, IntegrityError("digest changed in transit"), "copy")
                continue
            self.in_target.add(digest)
            counts.copied += 1
            counts.bytes += info.size_bytes
        batch.clear()
        self.progress("blob_bytes", counts.bytes, None)

    async def copy_blob(
        self, digest: str, used_by: str | None, *, missing_ok: bool, small: bool = False
    ) -> bytes | None:
        """Copy one blob, verified at both ends (the source hashes while streaming, the
        target checks ``expected_sha256``). With ``small``, a blob of at most one chunk is
        returned (verified) for the caller to batch instead. A missing or damaged source
        blob becomes a problem (once per digest), not an exception."""
        if digest in self.failed:
            if used_by:
                self.failed[digest].details.setdefault("referenced_by", []).append(used_by)
            return None
        counts = self.report.blobs
        stream = self.source.blobs.get_stream(digest)
        try:
            head: list[bytes] = []
            size = 0
            finished = False
            while size <= _SMALL_BLOB:
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:  # the source verified the digest by now
                    finished = True
                    break
                head.append(chunk)
                size += len(chunk)
            if finished and small:
                return b"".join(head)
            copied = 0

            async def chunks() -> AsyncIterator[bytes]:
                nonlocal copied
                for chunk in head:
                    copied += len(chunk)
                    yield chunk
                if not finished:
                    async for chunk in stream:
                        copied += len(chunk)
                        self.progress("blob_bytes", counts.bytes + copied, None)
                        yield chunk

            info = await self.sink.blobs.put_stream(chunks(), expected_sha256=digest)
        except NotFound as exc:
            await _close(stream)
            if not missing_ok:
                self.fail(digest, used_by, exc, "missing")
            return None  # else: deleted from the source while we walked, not ours to copy
        except IntegrityError as exc:
            await _close(stream)
            self.fail(digest, used_by, exc, "damaged")
            return None
        except BaseException:
            await _close(stream)
            raise
        self.in_target.add(digest)
        counts.copied += 1
        counts.bytes += info.size_bytes
        self.progress("blob_bytes", counts.bytes, None)
        return None

    def fail(self, digest: str, used_by: str | None, exc: StrongroomError, what: str) -> None:
        message = {
            "missing": f"the source has no blob sha256:{digest}",
            "damaged": f"the source's blob sha256:{digest} is damaged: {exc.message}",
        }.get(what, f"blob sha256:{digest} could not be copied: {exc.message}")
        problem = VerifyProblem(
            kind="blob",
            code=exc.code,
            subject=digest,
            message=message,
            details={"referenced_by": [used_by] if used_by else []},
        )
        self.failed[digest] = problem
        self.report.problems.append(problem)

    async def ensure_blob(self, kind: RecordKind, record: Any) -> None:
        assert kind.blob is not None
        digest, _size = kind.blob(record)
        if digest in self.in_target:
            return
        if await self.sink.blobs.exists(digest):
            self.in_target.add(digest)
            return
        await self.copy_blob(digest, f"{kind.name}:{kind.key(record)}", missing_ok=False)

    # -- records ----------------------------------------------------------------------------

    async def records(self, *, check_only: bool, lookup: bool) -> None:
        checked = 0
        for kind in RECORD_KINDS:
            total = None if check_only else await self.source.total(kind)
            copied = skipped = updated = done = 0
            await self.sink.begin_kind(kind, check_only=check_only)
            async for batch in self.source.records(kind):
                if kind is AUDIT_KIND and batch:
                    self.audit_seq = batch[-1].seq
                elif kind.name == "checkpoints":
                    # A checkpoint written after we read the audit entries waits for the next
                    # run: copied now, it would cover entries the target does not have.
                    batch = [c for c in batch if c.tree_size <= self.audit_seq]
                existing = await self.sink.present(kind, batch) if lookup else [None] * len(batch)
                new: list[Any] = []
                newer: list[tuple[Any, Any]] = []
                for record, old in zip(batch, existing, strict=True):
                    if old is None:
                        new.append(record)
                    elif same(record, old):
                        skipped += 1
                    elif updatable(kind, record, old, descendant=self.descendant):
                        newer.append((record, old))
                    else:
                        raise conflict(
                            kind,
                            record,
                            old,
                            hint=await self.sink.conflict_hint(),
                            target=self.report.target,
                        )
                if not check_only and kind.blob is not None:
                    for record in new:
                        await self.ensure_blob(kind, record)
                await self.sink.write(kind, new, check_only=check_only)
                if newer and not check_only:
                    await self.sink.replace(kind, newer)
                copied += len(new)
                updated += len(newer)
                done += len(batch)
                if check_only:
                    checked += len(batch)
                    self.progress("check", checked, None)
                else:
                    self.progress(kind.name, done, total)
            if await self.sink.end_kind(kind, check_only=check_only):
                copied, skipped = 0, copied + skipped
            if not check_only:
                self.report.records[kind.name] = copied
                self.report.records_skipped[kind.name] = skipped
                self.report.records_updated[kind.name] = updated
                self.progress(kind.name, done, done)
