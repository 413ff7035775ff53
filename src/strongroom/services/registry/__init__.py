"""The registry service: versioned definitions, channels, approvals (docs/registry.md)."""

from strongroom.services.registry._results import (
    DefinitionSummary,
    MoveResult,
    PublishResult,
    RegistryHistory,
    RegistryPolicy,
)
from strongroom.services.registry._service import ApprovalTarget, RegistryService, move_digest
from strongroom.services.registry._verify import verify_registry

__all__ = [
    "ApprovalTarget",
    "DefinitionSummary",
    "MoveResult",
    "PublishResult",
    "RegistryHistory",
    "RegistryPolicy",
    "RegistryService",
    "move_digest",
    "verify_registry",
]
