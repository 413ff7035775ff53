"""The vault conformance suite on PostgreSQL records + a local blob directory."""

from __future__ import annotations

from pathlib import Path

import pytest

import test_vault_sqlite_local as sqlite_local
from _sql_tamper import corrupt_inline_blob, forge_last_channel_move
from strongroom.adapters import LocalBlobStore, PostgresMetadataStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault

pytestmark = pytest.mark.postgres


class TestPostgresLocalVault(VaultTests):
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        pg_url: str = request.getfixturevalue("pg_url")
        tmp_path: Path = request.getfixturevalue("tmp_path")
        vault = await Vault.open(pg_url, blobs_url=str(tmp_path / "blobs"), checkpoint_interval=4)
        assert isinstance(vault.metadata, PostgresMetadataStore)
        return vault

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        if await corrupt_inline_blob(vault, sha256):
            return
        assert isinstance(vault.blobs.large, LocalBlobStore)
        sqlite_local.flip_one_byte(vault.blobs.large.root / vault.blobs.locate(sha256).path)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        await forge_last_channel_move(vault, kind, ident)
