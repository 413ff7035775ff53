"""The vault conformance suite on SQLite records + S3 blobs (a moto server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from _s3_fixtures import client_for
from _sql_tamper import corrupt_inline_blob, forge_last_channel_move
from strongroom.adapters import SqliteMetadataStore
from strongroom.adapters._s3 import S3BlobStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault

pytestmark = pytest.mark.s3


def flip_one_byte(store: S3BlobStore, sha256: str) -> None:
    assert store.endpoint is not None
    bucket, _, key = store.locate(sha256).uri.removeprefix("s3://").partition("/")
    client = client_for(store.endpoint)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read() or b"\x00")
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))


class TestSqliteS3Vault(VaultTests):
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        blobs_url: str = request.getfixturevalue("s3_blob_url")
        vault = await Vault.open(tmp_path / "vault", blobs_url=blobs_url, checkpoint_interval=4)
        assert isinstance(vault.metadata, SqliteMetadataStore)
        assert isinstance(vault.blobs.large, S3BlobStore)
        return vault

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        if await corrupt_inline_blob(vault, sha256):
            return
        assert isinstance(vault.blobs.large, S3BlobStore)
        await asyncio.to_thread(flip_one_byte, vault.blobs.large, sha256)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        await forge_last_channel_move(vault, kind, ident)
