"""strongroom: a durable, auditable memory for AI-agent and data pipelines.

    from strongroom import Vault
    async with await Vault.open("./.strongroom") as vault:
        run = await vault.runs.create(project="docs", purpose="translate the manual")

Scripts and notebooks without an event loop use `SyncVault` (same methods, no ``await``).

The names below are imported on first use (PEP 562), so ``import strongroom.tools...`` inside
a sandboxed tool does not pay for the storage stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strongroom.errors import (
        ApprovalRequired,
        Conflict,
        ErrorInfo,
        IntegrityError,
        NotFound,
        OperationTimeout,
        PermissionDenied,
        SandboxUnavailable,
        SandboxViolation,
        SerializationError,
        StorageIOError,
        StrongroomError,
        UnsupportedFormat,
        ValidationError,
    )
    from strongroom.pipeline import PipelineRun
    from strongroom.sync import SyncVault
    from strongroom.vault import DEFAULT_VAULT_URL, Vault

__all__ = [
    "DEFAULT_VAULT_URL",
    "ApprovalRequired",
    "Conflict",
    "ErrorInfo",
    "IntegrityError",
    "NotFound",
    "OperationTimeout",
    "PermissionDenied",
    "PipelineRun",
    "SandboxUnavailable",
    "SandboxViolation",
    "SerializationError",
    "StorageIOError",
    "StrongroomError",
    "SyncVault",
    "UnsupportedFormat",
    "ValidationError",
    "Vault",
]

__version__ = "0.1.0"

_HOMES = {
    "PipelineRun": "strongroom.pipeline",
    "SyncVault": "strongroom.sync",
    "Vault": "strongroom.vault",
}
_HOMES["DEFAULT_VAULT_URL"] = "strongroom.vault"


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'strongroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES.get(name, "strongroom.errors")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
