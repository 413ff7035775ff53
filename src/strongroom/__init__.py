"""strongroom: a durable, auditable memory for AI-agent and data pipelines.

    from strongroom import Vault
    async with await Vault.open("./.strongroom") as vault:
        run = await vault.runs.create(project="docs", purpose="translate the manual")

Scripts and notebooks without an event loop use `SyncVault` (same methods, no ``await``).
"""

from strongroom.errors import (
    ApprovalRequired,
    Conflict,
    ErrorInfo,
    IntegrityError,
    NotFound,
    OperationTimeout,
    PermissionDenied,
    SandboxViolation,
    SerializationError,
    StorageIOError,
    StrongroomError,
    UnsupportedFormat,
    ValidationError,
)
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
