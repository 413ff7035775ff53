"""The bundle format: its layout, the record kinds in import order (`RECORD_KINDS`), a
record's line (`encode_record`), recognising (`is_bundle_dir`) and reading the manifest
(`read_manifest`), and the file-system helpers the writer and reader share. See the package
docstring for the format itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from strongroom._fs import fsync_dir, open_regular_file, read_regular_file
from strongroom.errors import NotFound, SerializationError, UnsupportedFormat, map_os_errors
from strongroom.models import (
    Actor,
    Approval,
    ArtifactMetadata,
    AuditEntry,
    CatalogObject,
    ChannelMove,
    DefinitionVersion,
    Hold,
    LogEntry,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    Record,
    Run,
    SnapshotRecord,
    sorted_json,
)

__all__ = [
    "ALLOWED_ENTRIES",
    "BLOBS_DIR",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "KINDS_BY_NAME",
    "LOCK",
    "MANIFEST",
    "PARTIAL_DIR",
    "RECORDS_DIR",
    "RECORD_KINDS",
    "RecordKind",
    "encode_record",
    "file_digest",
    "fsync_dir",
    "io_errors",
    "is_bundle_dir",
    "make_dir",
    "read_manifest",
]

BUNDLE_FORMAT = "strongroom-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
RECORDS_DIR = "records"
BLOBS_DIR = "blobs"
PARTIAL_DIR = ".partial"
LOCK = "lock"
ALLOWED_ENTRIES = frozenset({MANIFEST, RECORDS_DIR, BLOBS_DIR, PARTIAL_DIR})
_HASH_CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""A manifest larger than this is not read (it lists a dozen files: a few kilobytes)."""


@dataclass(frozen=True)
class RecordKind:
    """One kind of record: its bundle file, model, primary key and blob reference.
    ``optional``: added after format version 1 first shipped, so a bundle written before may
    lack its file (read as empty)."""

    name: str
    model: type[Record]
    label: str
    key: Callable[[Any], str]
    blob: Callable[[Any], tuple[str, int]] | None = None
    optional: bool = False

    @property
    def file(self) -> str:
        return f"{RECORDS_DIR}/{self.name}.jsonl"


def _blob_of(record: Any) -> tuple[str, int]:
    return (record.sha256, record.size_bytes)


RECORD_KINDS: tuple[RecordKind, ...] = (
    RecordKind("providers", Provider, "provider", lambda r: r.provider_id),
    RecordKind("namespaces", Namespace, "namespace", lambda r: r.namespace_id),
    RecordKind("runs", Run, "run", lambda r: r.run_id),
    RecordKind(
        "snapshots", SnapshotRecord, "snapshot", lambda r: f"{r.run_id}@{r.revision}", _blob_of
    ),
    RecordKind("artifacts", ArtifactMetadata, "artifact", lambda r: r.artifact_id, _blob_of),
    RecordKind("log_entries", LogEntry, "log entry", lambda r: f"{r.run_id}#{r.seq}"),
    RecordKind("log_references", LogReference, "log reference", lambda r: r.run_id),
    RecordKind("objects", CatalogObject, "catalog object", lambda r: r.object_id, _blob_of),
    RecordKind(
        "definition_versions",
        DefinitionVersion,
        "definition version",
        lambda r: f"{r.kind.value}/{r.definition_id}@{r.version}",
        lambda r: (r.digest, r.size_bytes),
        optional=True,
    ),
    RecordKind("channel_moves", ChannelMove, "channel move", lambda r: r.move_id, optional=True),
    RecordKind("actors", Actor, "actor", lambda r: r.key_id, optional=True),
    RecordKind("approvals", Approval, "approval", lambda r: r.approval_id, optional=True),
    RecordKind("holds", Hold, "hold", lambda r: r.hold_id, optional=True),
    RecordKind("audit_entries", AuditEntry, "audit entry", lambda r: f"#{r.seq}"),
    RecordKind("checkpoints", MerkleCheckpoint, "audit checkpoint", lambda r: f"@{r.tree_size}"),
)
KINDS_BY_NAME: dict[str, RecordKind] = {kind.name: kind for kind in RECORD_KINDS}


def encode_record(record: pydantic.BaseModel) -> bytes:
    """The bundle line of a record (without the newline): canonical JSON of its JSON dump."""
    return sorted_json(record.model_dump(mode="json"))


def is_bundle_dir(path: Path) -> bool:
    """True for a directory holding a bundle, finished (manifest) or being written."""
    if (path / MANIFEST).is_file():
        try:
            data = json.loads(read_regular_file(path / MANIFEST, max_bytes=MAX_MANIFEST_BYTES))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and data.get("format") == BUNDLE_FORMAT
    return (path / PARTIAL_DIR).is_dir() and (path / RECORDS_DIR).is_dir()


def io_errors(operation: str, path: Path | str) -> contextlib.AbstractContextManager[None]:
    """OS errors as `StrongroomError`s naming the bundle path."""
    return map_os_errors(operation, backend="bundle", path=str(path))


def make_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        fsync_dir(path.parent)


def file_digest(path: Path) -> tuple[str, int, int]:
    """(sha256, size, newline count) of a file, streamed."""
    hasher = hashlib.sha256()
    size = lines = 0
    with open_regular_file(path) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    return hasher.hexdigest(), size, lines


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed manifest of a finished bundle; `NotFound` / `UnsupportedFormat` otherwise."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        if (path / PARTIAL_DIR).is_dir():
            raise NotFound(
                f"the bundle at {path} is incomplete (no {MANIFEST}): its export did not "
                "finish; run the same export again to complete it",
                operation="bundle.open",
                path=str(path),
                reason="incomplete_bundle",
            )
        raise NotFound(
            f"no bundle at {path} (no {MANIFEST})", operation="bundle.open", path=str(path)
        )
    with io_errors("bundle.open", manifest_path):
        raw = read_regular_file(manifest_path, max_bytes=MAX_MANIFEST_BYTES)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{manifest_path} is not valid JSON: {exc}",
            operation="bundle.open",
            path=str(manifest_path),
        ) from exc
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise UnsupportedFormat(
            f"{manifest_path} is not a {BUNDLE_FORMAT} manifest",
            operation="bundle.open",
            path=str(manifest_path),
        )
    version = data.get("format_version")
    if version != BUNDLE_VERSION:
        raise UnsupportedFormat(
            f"bundle format version {version!r} is not supported (this strongroom reads "
            f"version {BUNDLE_VERSION})",
            operation="bundle.open",
            path=str(manifest_path),
            format_version=version,
        )
    files = data.get("files")
    if not isinstance(files, dict) or any(
        not isinstance(files.get(kind.file), dict)
        for kind in RECORD_KINDS
        if not (kind.optional and kind.file not in files)
    ):
        raise SerializationError(
            f"{manifest_path} does not list every records file",
            operation="bundle.open",
            path=str(manifest_path),
        )
    return data
