"""Fixture contract of the vault conformance suite.

A backend's test module subclasses `strongroom.testing.VaultTests` and supplies:
- a ``vault`` fixture yielding an opened `Vault` (checkpoint_interval=4 so checkpoints occur);
- ``corrupt_blob(vault, sha256)``: flip one byte of a stored blob behind the vault's back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

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
    @abstractmethod
    async def corrupt_blob(self, vault: Vault, sha256: str) -> None:
        """Change one byte of the stored blob without going through the vault."""

    async def new_run(self, vault: Vault, project: str = "proj", **kw: Any) -> Run:
        return await vault.runs.create(project=project, actor="tester", **kw)
