"""The ports everything durable goes through: records and content-addressed blobs.

The records port (`MetadataStore`) is the union of narrow ports, one per group of records:
`RunRecords`, `ArtifactRecords`, `LogRecords`, `AuditRecords`, `CatalogRecords`,
`RegistryRecords`, `VerifyRecords`; `BlobStore` is the blob port."""

from strongroom.ports.artifacts import ArtifactRecords
from strongroom.ports.audit import AuditRecords
from strongroom.ports.blobs import CHUNK_SIZE, BlobSource, BlobStore
from strongroom.ports.catalog import CatalogRecords
from strongroom.ports.logs import LogRecords
from strongroom.ports.metadata import MetadataStore, StoreCapabilities
from strongroom.ports.registry import RegistryRecords
from strongroom.ports.runs import RunRecords
from strongroom.ports.verify import VerifyRecords

__all__ = [
    "CHUNK_SIZE",
    "ArtifactRecords",
    "AuditRecords",
    "BlobSource",
    "BlobStore",
    "CatalogRecords",
    "LogRecords",
    "MetadataStore",
    "RegistryRecords",
    "RunRecords",
    "StoreCapabilities",
    "VerifyRecords",
]
