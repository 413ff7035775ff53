"""The two ports everything durable goes through: records and content-addressed blobs."""

from strongroom.ports.blobs import CHUNK_SIZE, BlobStore
from strongroom.ports.metadata import MetadataStore

__all__ = ["CHUNK_SIZE", "BlobStore", "MetadataStore"]
