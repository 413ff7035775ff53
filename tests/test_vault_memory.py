"""The vault conformance suite on the in-memory backend pair."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault


class TestMemoryVault(VaultTests):
    @pytest.fixture
    async def vault(self) -> AsyncIterator[Vault]:
        metadata, blobs = MemoryMetadataStore(), MemoryBlobStore()
        vault = Vault(metadata, blobs, checkpoint_interval=4)
        await vault.catalog.ensure_defaults(base_uri="memory://")
        yield vault
        await vault.close()

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        assert isinstance(vault.blobs, MemoryBlobStore)
        vault.blobs._corrupt_for_tests(sha256)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        assert isinstance(vault.metadata, MemoryMetadataStore)
        moves = vault.metadata._moves[(kind, ident)]
        moves[-1] = moves[-1].model_copy(update={"reason": "forged"})
