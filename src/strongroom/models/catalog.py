"""Storage catalog records: providers, namespaces (with retention) and objects."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from strongroom.ids import ActorName, Digest, EntityId, SafeName, Tag
from strongroom.models._base import Record, SingleLineText, Text, UtcDatetime, utcnow

__all__ = [
    "CatalogObject",
    "Encryption",
    "Namespace",
    "Provider",
    "ProviderCapabilities",
    "ProviderStatus",
    "ProviderType",
]


class ProviderType(StrEnum):
    OBJECT_STORE = "object-store"
    KV_STORE = "kv-store"
    FILESYSTEM = "filesystem"


class ProviderStatus(StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"


class Encryption(StrEnum):
    NONE = "none"
    AT_REST = "at-rest"
    IN_TRANSIT = "in-transit"


class ProviderCapabilities(Record):
    supports_versioning: bool = False
    supports_encryption: bool = False
    max_object_bytes: int | None = Field(default=None, ge=1)
    max_retention_days: int | None = Field(default=None, ge=1)


class Provider(Record):
    provider_id: SafeName
    name: SingleLineText = Field(min_length=1, max_length=200)
    type: ProviderType
    owner: ActorName
    region: str | None = Field(default=None, max_length=64)
    base_uri: str = Field(max_length=1024, description="Never contains credentials.")
    status: ProviderStatus = ProviderStatus.ACTIVE
    capabilities: ProviderCapabilities = Field(default_factory=ProviderCapabilities)


class Namespace(Record):
    namespace_id: SafeName
    provider_id: SafeName
    name: SingleLineText = Field(min_length=1, max_length=200)
    purpose: Text = Field(default="", max_length=1000)
    default_prefix: str = Field(max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    retention_days: int | None = Field(default=None, ge=1, description="None = keep forever.")
    encryption: Encryption = Encryption.NONE


class CatalogObject(Record):
    object_id: EntityId
    namespace_id: SafeName
    path: str = Field(max_length=1024, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@:=-]*$")
    sha256: Digest
    size_bytes: int = Field(ge=0)
    content_type: str = Field(max_length=255)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    run_id: EntityId | None = None
    tags: list[Tag] = Field(default_factory=list)
