"""The artifact service: immutable, content-addressed run outputs.

Bytes go to the blob port (stored once per digest, verified on read); metadata goes to the
records port. Payload helpers write/read pydantic models as JSON and sequences of models as
JSONL, streamed both ways; files of any size are streamed, never held in memory.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import tempfile
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pydantic
from pydantic import BaseModel

from strongroom._fs import check_output_file, open_regular_file
from strongroom.errors import (
    IntegrityError,
    SerializationError,
    UnsupportedFormat,
    ValidationError,
    map_os_errors,
)
from strongroom.ids import check_entity_id, new_id
from strongroom.models import (
    DEFAULT_MEDIA_TYPES,
    ArtifactFormat,
    ArtifactManifest,
    ArtifactMetadata,
    ArtifactQuery,
    ArtifactRole,
    AuditEvent,
    BlobInfo,
    JsonObject,
    canonical_json,
    entry_hash,
    record_digest_as,
)
from strongroom.ports import CHUNK_SIZE, BlobStore, MetadataStore
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import parse, query_of, validation_error
from strongroom.services._reclaim import write_despite_gc

__all__ = ["ArtifactInput", "ArtifactService", "ByteProgress"]

ByteProgress = Callable[[int], None]
"""Called with the bytes read or written so far (for a progress bar)."""

M = TypeVar("M", bound=BaseModel)

# JSON payloads up to this size are parsed on the way in; larger ones are stored as given
# (parsing would need the whole document in memory). JSONL is checked line by line at any size.
JSON_CHECK_LIMIT = 64 * 1024 * 1024
# The formats whose bytes are parsed on the way in (`_checked`): put_file streams them through
# the check; any other file goes to the blob store's `put_file` as it is.
_PARSED = frozenset({ArtifactFormat.JSON, ArtifactFormat.JSONL})

_EXTENSIONS: dict[str, ArtifactFormat] = {
    ".json": ArtifactFormat.JSON,
    ".jsonl": ArtifactFormat.JSONL,
    ".ndjson": ArtifactFormat.JSONL,
    ".csv": ArtifactFormat.CSV,
    ".txt": ArtifactFormat.TXT,
    ".log": ArtifactFormat.TXT,
    ".md": ArtifactFormat.TXT,
}


class ArtifactInput(BaseModel):
    """Everything describing an artifact except its bytes (used by the batch API)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    role: ArtifactRole = ArtifactRole.CUSTOM
    format: ArtifactFormat | None = None
    media_type: str | None = None
    phase: str | None = None
    step: str | None = None
    label: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: JsonObject = pydantic.Field(default_factory=dict)
    namespace: str = "artifacts"
    tags: list[str] = pydantic.Field(default_factory=list)


def _infer_format(name: str | None) -> ArtifactFormat:
    if name:
        return _EXTENSIONS.get(Path(name).suffix.lower(), ArtifactFormat.BINARY)
    return ArtifactFormat.BINARY


async def _checked(
    chunks: AsyncIterable[bytes], fmt: ArtifactFormat, operation: str
) -> AsyncIterator[bytes]:
    """Pass chunks through, raising `SerializationError` before the stream ends (so before
    the blob is published) when a JSON/JSONL payload does not parse."""
    if fmt is ArtifactFormat.JSONL:
        pending = b""
        line_no = 0
        async for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                line_no += 1
                _check_json(line, operation, line_no)
            yield chunk
        if pending.strip():
            _check_json(pending, operation, line_no + 1)
    elif fmt is ArtifactFormat.JSON:
        buf = bytearray()
        async for chunk in chunks:
            if len(buf) <= JSON_CHECK_LIMIT:
                buf += chunk
            yield chunk
        if len(buf) <= JSON_CHECK_LIMIT:
            _check_json(bytes(buf), operation, None)
    else:
        async for chunk in chunks:
            yield chunk


def _check_payload(data: bytes, fmt: ArtifactFormat, operation: str) -> None:
    """`_checked`'s checks on a payload that is all in memory."""
    if fmt is ArtifactFormat.JSONL:
        *complete, rest = data.split(b"\n")
        for line_no, line in enumerate(complete, start=1):
            _check_json(line, operation, line_no)
        if rest.strip():
            _check_json(rest, operation, len(complete) + 1)
    elif fmt is ArtifactFormat.JSON and len(data) <= JSON_CHECK_LIMIT:
        _check_json(data, operation, None)


def _check_json(raw: bytes, operation: str, line: int | None) -> None:
    if line is not None and not raw.strip():
        return
    where = f" on line {line}" if line is not None else ""
    try:
        json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SerializationError(
            f"payload is not valid JSON{where}: {exc}",
            operation=operation,
            reason="malformed_json",
            line=line,
        ) from exc
    except RecursionError:
        raise SerializationError(
            f"payload{where} is nested too deeply to check as JSON",
            operation=operation,
            reason="too_deep",
            line=line,
        ) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise SerializationError(
            f"payload is not valid JSON{where}: {exc}",
            operation=operation,
            reason="malformed_json",
            line=line,
        ) from None


async def _file_chunks(
    handle: BinaryIO, progress: ByteProgress | None, chunk_size: int = 8 * CHUNK_SIZE
) -> AsyncIterator[bytes]:
    done = 0
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, chunk_size)
            if not chunk:
                return
            done += len(chunk)
            if progress is not None:
                progress(done)
            yield chunk
    finally:
        handle.close()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@checked_arguments
class ArtifactService:
    def __init__(self, store: MetadataStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs

    def _describe(
        self, run_id: str, blob: BlobInfo, spec: ArtifactInput, fmt: ArtifactFormat
    ) -> ArtifactMetadata:
        return parse(
            ArtifactMetadata,
            {
                "artifact_id": new_id(),
                "run_id": run_id,
                "role": spec.role,
                "phase": spec.phase,
                "step": spec.step,
                "label": spec.label,
                "name": spec.name,
                "format": fmt,
                "media_type": spec.media_type or DEFAULT_MEDIA_TYPES[fmt],
                "location": self._blobs.locate(blob.sha256),
                "description": spec.description,
                "size_bytes": blob.size_bytes,
                "sha256": blob.sha256,
                "metadata": spec.metadata,
                "namespace": spec.namespace,
                "tags": spec.tags,
            },
            operation="artifacts.put",
            run_id=run_id,
        )

    def _draft(self, run_id: str, spec: ArtifactInput) -> ArtifactMetadata:
        """Validate the description before any byte is stored, so a bad call leaves no trace:
        the record in full, with a placeholder blob that `_complete` replaces."""
        fmt = spec.format or _infer_format(spec.name)
        canonical_json(spec.metadata)  # what RFC 8785 cannot hash is refused here, not after
        return self._describe(run_id, BlobInfo(sha256="0" * 64, size_bytes=0), spec, fmt)

    def _complete(self, draft: ArtifactMetadata, blob: BlobInfo) -> ArtifactMetadata:
        """The draft, now about ``blob``: the fields the store itself computed (the digest
        and size it hashed and counted, and where it put them), so nothing new needs
        validating a second time."""
        return draft.model_copy(
            update={
                "sha256": blob.sha256,
                "size_bytes": blob.size_bytes,
                "location": self._blobs.locate(blob.sha256),
            }
        )

    async def _prepare(self, run_id: str, spec: ArtifactInput) -> ArtifactMetadata:
        draft = self._draft(run_id, spec)
        await self._store.get_run(run_id)  # NotFound before any blob is written
        return draft

    async def put_stream(
        self,
        run_id: str,
        chunks: AsyncIterable[bytes],
        *,
        replay: Callable[[], AsyncIterable[bytes]] | None = None,
        **spec: Any,
    ) -> ArtifactMetadata:
        """Store an async byte stream as an artifact of ``run_id``. ``replay``: how to make
        the same bytes again, should garbage collection delete the blob between its write and
        the record's (docs/retention.md); without it that rare race is a `Conflict` (reason
        ``blob_reclaimed``) to retry."""
        draft = await self._prepare(run_id, _spec(spec))
        blob = await self._blobs.put_stream(_checked(chunks, draft.format, "artifacts.put"))

        async def put_again() -> None:
            assert replay is not None
            await self._blobs.put_stream(replay(), expected_sha256=blob.sha256)

        return await self._record(run_id, draft, blob, None if replay is None else put_again)

    async def _record(
        self,
        run_id: str,
        draft: ArtifactMetadata,
        blob: BlobInfo,
        put_again: Callable[[], Awaitable[object]] | None,
    ) -> ArtifactMetadata:
        """Record the artifact of a stored ``blob`` (``put_again``: store it again, should
        garbage collection take it before the record is written)."""
        artifact = self._complete(draft, blob)
        await write_despite_gc(
            self._store,
            self._blobs,
            put_again,
            lambda: self._store.insert_artifacts(
                [artifact], audit=stored_event(run_id, [artifact])
            ),
        )
        return artifact

    async def put_bytes(self, run_id: str, data: bytes, **spec: Any) -> ArtifactMetadata:
        """Store ``data`` (already in memory) as an artifact: the same checks as
        `put_stream`, but one blob write instead of a stream (a thread hop per call, not per
        chunk: most artifacts a pipeline writes are small)."""
        draft = await self._prepare(run_id, _spec(spec))
        _check_payload(data, draft.format, "artifacts.put")
        blob = await self._blobs.put_bytes(data)
        artifact = self._complete(draft, blob)
        await write_despite_gc(
            self._store,
            self._blobs,
            lambda: self._blobs.put_bytes(data),
            lambda: self._store.insert_artifacts(
                [artifact], audit=stored_event(run_id, [artifact])
            ),
        )
        return artifact

    async def put_file(
        self,
        run_id: str,
        path: str | Path,
        *,
        progress: ByteProgress | None = None,
        **spec: Any,
    ) -> ArtifactMetadata:
        """Stream a regular file of any size; ``name`` defaults to the file's name. A FIFO,
        device, socket or directory is `ValidationError` (``not_a_regular_file``), refused
        before anything is read (never blocked on). ``progress(bytes_read)`` is called as the
        file is read. The file is read once: the bytes stored are the bytes hashed (a JSON or
        JSONL file is also checked as it passes); reading, hashing and writing overlap."""
        path = Path(path)
        with map_os_errors("artifacts.put_file", backend="local", path=str(path)):
            handle = await asyncio.to_thread(open_regular_file, path)
        spec.setdefault("name", path.name)
        try:
            draft = await self._prepare(run_id, _spec(spec))
            if draft.format in _PARSED:
                chunks = _checked(_file_chunks(handle, progress), draft.format, "artifacts.put")
                blob = await self._blobs.put_stream(chunks)
            else:
                with map_os_errors("artifacts.put_file", backend="local", path=str(path)):
                    blob = await self._blobs.put_file(handle.fileno(), progress=progress)
        finally:
            handle.close()

        async def put_again() -> None:  # the same file, read again
            with map_os_errors("artifacts.put_file", backend="local", path=str(path)):
                reopened = await asyncio.to_thread(open_regular_file, path)
                try:
                    await self._blobs.put_file(reopened.fileno(), expected_sha256=blob.sha256)
                finally:
                    reopened.close()

        return await self._record(run_id, draft, blob, put_again)

    async def put_model(self, run_id: str, model: BaseModel, **spec: Any) -> ArtifactMetadata:
        spec.setdefault("format", ArtifactFormat.JSON)
        spec.setdefault("metadata", {})
        spec["metadata"] = {"model": type(model).__name__, **spec["metadata"]}
        return await self.put_bytes(run_id, model.model_dump_json().encode(), **spec)

    async def put_models(
        self,
        run_id: str,
        models: Iterable[BaseModel] | AsyncIterable[BaseModel],
        **spec: Any,
    ) -> ArtifactMetadata:
        """Write a sequence of models as JSONL, streamed: one model in memory at a time."""

        def line(item: object) -> bytes:
            if not isinstance(item, BaseModel):
                raise ValidationError(
                    f"models must hold pydantic models only, not {type(item).__name__}",
                    operation="artifacts.put_models",
                    reason="bad_type",
                    field="models",
                )
            return item.model_dump_json().encode() + b"\n"

        async def lines() -> AsyncIterator[bytes]:
            if isinstance(models, AsyncIterable):
                async for item in models:
                    yield line(item)
            else:
                for item in models:
                    yield line(item)

        spec.setdefault("format", ArtifactFormat.JSONL)
        replay = lines if isinstance(models, Sequence) else None  # an iterator runs once
        return await self.put_stream(run_id, lines(), replay=replay, **spec)

    async def put_many(
        self, run_id: str, items: Sequence[tuple[bytes, ArtifactInput | dict[str, Any]]]
    ) -> builtins.list[ArtifactMetadata]:
        """Store many small artifacts with one durability pass and one records transaction."""
        for n, item in enumerate(items):
            if not (
                isinstance(item, tuple | list)
                and len(item) == 2
                and isinstance(item[0], bytes | bytearray | memoryview)
            ):
                raise ValidationError(
                    f"items[{n}] must be a (bytes, spec) pair, got {type(item).__name__}",
                    operation="artifacts.put_many",
                    reason="bad_type",
                    field=f"items[{n}]",
                )
        items = [(bytes(data), spec) for data, spec in items]
        specs = [parse(ArtifactInput, spec, operation="artifacts.put_many") for _, spec in items]
        drafts = [self._draft(run_id, spec) for spec in specs]
        await self._store.get_run(run_id)  # once per batch
        for (data, _), draft in zip(items, drafts, strict=True):
            if draft.format in (ArtifactFormat.JSON, ArtifactFormat.JSONL):
                async for _chunk in _checked(_one(data), draft.format, "artifacts.put_many"):
                    pass
        blobs = await self._blobs.put_many([data for data, _ in items])
        artifacts = [self._complete(draft, blob) for draft, blob in zip(drafts, blobs, strict=True)]
        await write_despite_gc(
            self._store,
            self._blobs,
            lambda: self._blobs.put_many([data for data, _ in items]),
            lambda: self._store.insert_artifacts(artifacts, audit=stored_event(run_id, artifacts)),
        )
        return artifacts

    # -- reading --------------------------------------------------------------------------------

    async def get(self, artifact_id: str) -> ArtifactMetadata:
        return await self._store.get_artifact(_artifact_id(artifact_id))

    async def get_bound(self, artifact_id: str) -> ArtifactMetadata:
        """The artifact's record, checked against the audit entry that vouches for it: a
        record edited or re-pointed at another blob behind strongroom's back is
        `IntegrityError`, never served (the blob's bytes are checked against the digest as
        they are read). Every read of an artifact's bytes goes through this."""
        meta = await self.get(artifact_id)
        found = await self._store.latest_binding("artifact", meta.artifact_id)
        details = {"operation": "artifacts.get", "artifact_id": meta.artifact_id}
        if found is None:
            raise IntegrityError(
                f"artifact {meta.artifact_id} has no audit entry vouching for it: it was "
                "written behind strongroom's back (run `strongroom verify`)",
                reason="unbound",
                **details,
            )
        entry, binding = found
        if entry_hash(entry) != entry.hash:
            raise IntegrityError(
                f"audit entry #{entry.seq}, which vouches for artifact {meta.artifact_id}, "
                "was edited (run `strongroom verify`)",
                reason="audit_entry_edited",
                **details,
            )
        digest = record_digest_as(meta, binding.digest)
        if binding.digest != digest:
            raise IntegrityError(
                f"artifact {meta.artifact_id} is not the record audit entry #{entry.seq} "
                "vouches for: it was edited or re-pointed (run `strongroom verify`)",
                reason="digest_mismatch",
                expected=binding.digest,
                found=digest,
                **details,
            )
        return meta

    async def stream(self, artifact_id: str) -> AsyncIterator[bytes]:
        """The artifact's bytes as verified chunks (`IntegrityError` after the last one on
        mismatch: use ``get_bytes`` or ``get_file`` when nothing unverified may be used)."""
        meta = await self.get_bound(artifact_id)
        return self._blobs.get_stream(meta.sha256)

    async def get_bytes(self, artifact_id: str) -> bytes:
        meta = await self.get_bound(artifact_id)
        return await self._blobs.get_bytes(meta.sha256)

    async def get_file(
        self, artifact_id: str, dest: str | Path, *, progress: ByteProgress | None = None
    ) -> ArtifactMetadata:
        """Write the artifact to ``dest`` atomically: only verified bytes ever appear there.
        ``dest`` must be absent or a regular file: a device, FIFO, socket or directory is
        `ValidationError` (``not_a_regular_file``), never replaced. ``progress(bytes_written)``
        is called after each chunk."""
        meta = await self.get_bound(artifact_id)
        dest = Path(dest)
        with map_os_errors("artifacts.get_file", backend="local", path=str(dest)):
            await asyncio.to_thread(check_output_file, dest)
            fd, tmp_name = await asyncio.to_thread(
                tempfile.mkstemp, prefix=".strongroom-", dir=dest.parent or Path(".")
            )
        tmp = Path(tmp_name)
        try:
            done = 0
            with os.fdopen(fd, "wb") as handle:
                async for chunk in self._blobs.get_stream(meta.sha256):
                    await asyncio.to_thread(handle.write, chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done)
                await asyncio.to_thread(handle.flush)
                await asyncio.to_thread(os.fsync, handle.fileno())
            with map_os_errors("artifacts.get_file", backend="local", path=str(dest)):
                # Again, just before the rename: nothing but a regular file is replaced.
                await asyncio.to_thread(check_output_file, dest)
                await asyncio.to_thread(os.replace, tmp, dest)
        except BaseException:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        return meta

    async def get_model(self, artifact_id: str, model: type[M]) -> M:
        meta = await self.get_bound(artifact_id)
        _require_format(meta, ArtifactFormat.JSON)
        data = await self._blobs.get_bytes(meta.sha256)
        try:
            return model.model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise _model_error(exc, model, artifact_id) from exc

    async def iter_models(self, artifact_id: str, model: type[M]) -> AsyncIterator[M]:
        """Parse a JSONL artifact line by line into ``model``; streamed.

        The digest is checked when the stream ends: a tampered blob raises `IntegrityError`
        after the models it yielded, so callers that must not act on unverified data collect
        the sequence first.
        """
        meta = await self.get_bound(artifact_id)
        _require_format(meta, ArtifactFormat.JSONL)
        pending = b""
        line_no = 0
        async for chunk in self._blobs.get_stream(meta.sha256):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                line_no += 1
                if line.strip():
                    yield _parse_line(line, model, artifact_id, line_no)
        if pending.strip():
            yield _parse_line(pending, model, artifact_id, line_no + 1)

    async def list(
        self, query: ArtifactQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> builtins.list[ArtifactMetadata]:
        """One page of artifacts: an `ArtifactQuery`, a mapping of its fields, or its fields
        as keywords."""
        q = query_of(ArtifactQuery, query, filters, operation="artifacts.list")
        return await self._store.list_artifacts(q)

    async def manifest(self, run_id: str) -> ArtifactManifest:
        await self._store.get_run(run_id)
        items: builtins.list[ArtifactMetadata] = []
        after: str | None = None
        while True:
            page = await self._store.list_artifacts(
                ArtifactQuery(run_id=run_id, after_id=after, limit=10000)
            )
            items.extend(page)
            if len(page) < 10000:
                break
            after = page[-1].artifact_id
        return ArtifactManifest(
            run_id=run_id, artifacts=items, total_bytes=sum(a.size_bytes for a in items)
        )


def stored_event(run_id: str, artifacts: Sequence[ArtifactMetadata]) -> AuditEvent:
    """The audit event artifacts are written with (the store binds each of them)."""
    return AuditEvent(
        event="artifact.stored",
        subject_type="run",
        subject_id=run_id,
        details={"count": len(artifacts)},
    )


def _require_format(meta: ArtifactMetadata, fmt: ArtifactFormat) -> None:
    if meta.format is not fmt:
        raise UnsupportedFormat(
            f"artifact {meta.artifact_id} is {meta.format.value}, not {fmt.value}",
            operation="artifacts.read",
            artifact_id=meta.artifact_id,
            reason=f"format_{meta.format.value}",
        )


def _spec(spec: dict[str, Any]) -> ArtifactInput:
    return parse(ArtifactInput, spec, operation="artifacts.put")


def _artifact_id(value: str) -> str:
    try:
        return check_entity_id(value)
    except ValueError as exc:
        raise ValidationError(
            f"invalid artifact id {value[:80]!r}: {exc}", operation="artifacts.get"
        ) from exc


def _parse_line(line: bytes, model: type[M], artifact_id: str, line_no: int) -> M:
    try:
        return model.model_validate_json(line)
    except pydantic.ValidationError as exc:
        raise _model_error(exc, model, artifact_id, line_no) from exc


def _model_error(
    exc: pydantic.ValidationError, model: type[BaseModel], artifact_id: str, line: int | None = None
) -> SerializationError:
    err = validation_error(
        exc, operation="artifacts.get_model", what=model.__name__, artifact_id=artifact_id
    )
    return SerializationError(
        f"artifact {artifact_id} does not parse as {model.__name__}"
        + (f" (line {line})" if line else "")
        + f": {err.message}",
        **err.details,
        line=line,
    )
