"""Artifact records: immutable, content-addressed outputs of runs, and a run's manifest."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from strongroom.ids import Digest, EntityId, FileName, SafeName, Tag
from strongroom.models._base import Record, SingleLineText, Text, UtcDatetime, utcnow

__all__ = [
    "DEFAULT_MEDIA_TYPES",
    "ArtifactFormat",
    "ArtifactManifest",
    "ArtifactMetadata",
    "ArtifactQuery",
    "ArtifactRole",
    "BlobInfo",
    "BlobLocation",
]


class ArtifactRole(StrEnum):
    PHASE_OUTPUT = "phase_output"
    LOGS = "logs"
    EXPORT = "export"
    RUN_STATE = "run_state"
    REPORT = "report"
    CUSTOM = "custom"


class ArtifactFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    TXT = "txt"
    BINARY = "binary"


DEFAULT_MEDIA_TYPES: dict[ArtifactFormat, str] = {
    ArtifactFormat.JSON: "application/json",
    ArtifactFormat.JSONL: "application/jsonl",
    ArtifactFormat.CSV: "text/csv",
    ArtifactFormat.TXT: "text/plain",
    ArtifactFormat.BINARY: "application/octet-stream",
}


class BlobInfo(Record):
    """What a blob store knows of one blob."""

    sha256: Digest
    size_bytes: int = Field(ge=0)


class BlobLocation(Record):
    """Where a blob lives, for humans and external tools. Never contains credentials."""

    backend: str = Field(description="Blob backend kind: memory, local, s3.")
    path: str = Field(description="Backend-relative key of the blob.")
    uri: str = Field(description="Absolute URI (file://, s3://, memory://).")


class ArtifactMetadata(Record):
    artifact_id: EntityId
    run_id: EntityId
    role: ArtifactRole
    phase: SafeName | None = None
    step: SafeName | None = None
    label: SingleLineText | None = Field(
        default=None, max_length=128, description="Target language or another label."
    )
    name: FileName | None = Field(default=None, description="Original file name.")
    format: ArtifactFormat
    media_type: str = Field(max_length=255)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    location: BlobLocation
    description: Text | None = Field(default=None, max_length=4000)
    size_bytes: int = Field(ge=0)
    sha256: Digest
    metadata: dict[str, Any] = Field(default_factory=dict)
    namespace: SafeName = "artifacts"
    tags: list[Tag] = Field(default_factory=list)

    @property
    def checksum(self) -> str:
        """The prefixed form shown to humans: ``sha256:<hex>``."""
        return f"sha256:{self.sha256}"


class ArtifactManifest(Record):
    run_id: EntityId
    generated_at: UtcDatetime = Field(default_factory=utcnow)
    artifacts: list[ArtifactMetadata]
    total_bytes: int = Field(ge=0)


class ArtifactQuery(Record):
    run_id: EntityId | None = None
    role: ArtifactRole | None = None
    phase: SafeName | None = None
    step: SafeName | None = None
    namespace: SafeName | None = None
    tag: Tag | None = None
    limit: int = Field(default=1000, ge=1, le=10000)
    after_id: EntityId | None = Field(
        default=None, description="Keyset cursor: last artifact_id seen."
    )
