"""The in-memory blob store against the blob port's conformance suite."""

from __future__ import annotations

import pytest

from strongroom.adapters._memory_blobs import MemoryBlobStore
from strongroom.ports.blobs import BlobStore
from strongroom.testing.blobs import BlobStoreTests


class TestMemoryBlobStore(BlobStoreTests):
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        return MemoryBlobStore()

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        assert isinstance(store, MemoryBlobStore)
        store._corrupt_for_tests(sha256)


async def test_locate_gives_a_memory_uri() -> None:
    digest = "ab" * 32
    location = MemoryBlobStore().locate(digest)
    assert (location.backend, location.path, location.uri) == (
        "memory",
        f"blobs/{digest}",
        f"memory://blobs/{digest}",
    )
