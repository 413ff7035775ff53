"""Fixture contract of the vault conformance suite.

A backend's test module subclasses `strongroom.testing.VaultTests` (or one port's suite,
e.g. `strongroom.testing.CatalogRecordsTests`) and supplies:

- ``make_vault(request)``: an opened `Vault` over the backend pair under test, with
  ``checkpoint_interval=4`` so checkpoints occur (``request`` is the pytest fixture request:
  ``request.getfixturevalue("tmp_path")`` or any fixture of yours); the suite closes it;
- ``corrupt_blob(vault, sha256)``: flip one byte of a stored blob behind the vault's back.

Optional: ``tamper_channel_move(vault, kind, ident)`` (rewrite a channel move's reason behind
the store's back) for the registry's tamper tests, which skip without it.

The suite needs pytest and pytest-asyncio (``pip install 'strongroom[testing]'``) and no
asyncio configuration of yours: its async tests and its ``vault`` fixture are marked for
pytest-asyncio by the plugin strongroom registers (`strongroom.pytest_plugin`), in strict
mode and in auto mode alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from strongroom.models import Run
from strongroom.vault import Vault

BAD_NAMES = [
    "../etc",
    "..",
    "/abs/path",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "%2e%2e",
    "%2e%2e%2fetc",
    "x" * 129,
    "ａｂｃ",  # fullwidth look-alikes
    "a\u2215b",  # division slash
    "．．",  # fullwidth full stops
    "",
    " leading-space",
]


class VaultFixtureContract(ABC):
    # Read by the pytest plugin: this class's async tests belong to a conformance suite.
    __strongroom_conformance__ = True

    @abstractmethod
    async def make_vault(self, request: pytest.FixtureRequest) -> Vault:
        """An opened Vault over the backend pair under test (the suite closes it)."""

    @abstractmethod
    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        """Change one byte of the stored blob without going through the vault."""

    @pytest_asyncio.fixture
    async def vault(self, request: pytest.FixtureRequest) -> AsyncIterator[Vault]:
        vault = await self.make_vault(request)
        try:
            yield vault
        finally:
            await vault.close()

    async def new_run(self, vault: Vault, project: str = "proj", **kw: Any) -> Run:
        return await vault.runs.create(project=project, actor="tester", **kw)
