"""The vault conformance suite on the scale-out pair: PostgreSQL records + S3 blobs (moto),
opened from their URLs exactly as a user would."""

from __future__ import annotations

import asyncio

import pytest

from _sql_tamper import corrupt_inline_blob, forge_last_channel_move
from strongroom.adapters import PostgresMetadataStore
from strongroom.adapters._s3 import S3BlobStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault
from test_vault_sqlite_s3 import flip_one_byte

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


class TestPostgresS3Vault(VaultTests):
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        pg_url: str = request.getfixturevalue("pg_url")
        blobs_url: str = request.getfixturevalue("s3_blob_url")
        vault = await Vault.open(pg_url, blobs_url=blobs_url, checkpoint_interval=4)
        assert isinstance(vault.metadata, PostgresMetadataStore)
        assert isinstance(vault.blobs.large, S3BlobStore)
        return vault

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        if await corrupt_inline_blob(vault, sha256):
            return
        assert isinstance(vault.blobs.large, S3BlobStore)
        await asyncio.to_thread(flip_one_byte, vault.blobs.large, sha256)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        await forge_last_channel_move(vault, kind, ident)
