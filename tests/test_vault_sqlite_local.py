"""The vault conformance suite on the embedded pair: SQLite + local blob directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _sql_tamper import corrupt_inline_blob, forge_last_channel_move
from strongroom.adapters import LocalBlobStore
from strongroom.models import DefinitionKind
from strongroom.testing import VaultTests
from strongroom.vault import Vault


def flip_one_byte(path: Path) -> None:
    """Change one byte of a read-only blob file in place, as an attacker or bad disk would."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes() or b"\x00")
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


class TestSqliteLocalVault(VaultTests):
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return await Vault.open(tmp_path / "vault", checkpoint_interval=4)

    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        if await corrupt_inline_blob(vault, sha256):
            return
        assert isinstance(vault.blobs.large, LocalBlobStore)
        flip_one_byte(vault.blobs.large.root / vault.blobs.locate(sha256).path)

    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        await forge_last_channel_move(vault, kind, ident)
