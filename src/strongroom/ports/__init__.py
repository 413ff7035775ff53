"""The ports everything durable goes through: records (with the registry's records) and
content-addressed blobs."""

from strongroom.ports.blobs import CHUNK_SIZE, BlobStore
from strongroom.ports.metadata import MetadataStore
from strongroom.ports.registry import RegistryRecords

__all__ = ["CHUNK_SIZE", "BlobStore", "MetadataStore", "RegistryRecords"]
