"""The vault conformance suite on the in-memory backend pair."""

from __future__ import annotations

import asyncio

import pytest

from _sql_tamper import corrupt_inline_blob
from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault


class TestMemoryVault(VaultTests):
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        return Vault(MemoryMetadataStore(), MemoryBlobStore(), checkpoint_interval=4)

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        if await corrupt_inline_blob(vault, sha256):
            return
        assert isinstance(vault.blobs.large, MemoryBlobStore)
        vault.blobs.large._corrupt_for_tests(sha256)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        assert isinstance(vault.metadata, MemoryMetadataStore)
        moves = vault.metadata._moves[(kind, ident)]
        moves[-1] = moves[-1].model_copy(update={"reason": "forged"})


async def test_a_vault_built_from_two_stores_has_its_default_catalog() -> None:
    """One way to build a Vault: its invariants hold without `Vault.open`'s bootstrap."""
    vault = Vault(MemoryMetadataStore(), MemoryBlobStore())
    assert [p.provider_id for p in await vault.catalog.providers()] == ["default"]
    assert "tools" in {n.namespace_id for n in await vault.catalog.namespaces()}
    bare = Vault(MemoryMetadataStore(), MemoryBlobStore(), bootstrap=False)
    assert await bare.catalog.providers() == []
    assert await bare.metadata.list_namespaces() == []


async def test_concurrent_first_uses_create_the_default_catalog_once() -> None:
    vault = Vault(MemoryMetadataStore(), MemoryBlobStore())
    await asyncio.gather(vault.catalog.providers(), vault.catalog.namespaces())
    entries = await vault.audit.entries()
    assert [e.subject_id for e in entries if e.event == "catalog.provider.put"] == ["default"]
