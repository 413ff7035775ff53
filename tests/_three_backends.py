"""One vault per test on each records backend (memory, SQLite, PostgreSQL; local blobs), for
test modules that check one feature's meaning is the same everywhere: ``BACKENDS`` and the
``vault`` fixture built from it (import both into the module)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.vault import Vault

__all__ = ["BACKENDS", "open_backend", "vault"]

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite-local"),
    pytest.param("postgresql", id="postgresql-local", marks=pytest.mark.postgres),
]


async def open_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Vault:
    """A new vault of ``kind`` (PostgreSQL: on the test server's fresh ``pg_url``)."""
    if kind == "memory":
        return Vault(MemoryMetadataStore(), MemoryBlobStore())
    if kind == "sqlite":
        return await Vault.open(tmp_path / "vault")
    pg_url: str = request.getfixturevalue("pg_url")
    return await Vault.open(pg_url, blobs_url=str(tmp_path / "blobs"))


@pytest.fixture(params=BACKENDS)
async def vault(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Vault]:
    opened = await open_backend(request.param, request, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()
