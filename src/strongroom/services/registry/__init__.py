"""The registry service: versioned definitions, channels, approvals (docs/registry.md)."""

from strongroom.services.registry._results import (
    DefinitionSummary,
    MoveResult,
    PublishResult,
    RegistryHistory,
    RegistryPolicy,
)
from strongroom.services.registry._service import ApprovalTarget, RegistryService, move_digest
from strongroom.services.registry._signers import UNSIGNED, entry_signers, signed_label
from strongroom.services.registry._verify import (
    MOVE_EVENTS,
    collect_act,
    collect_move,
    verify_registry,
)

__all__ = [
    "MOVE_EVENTS",
    "UNSIGNED",
    "ApprovalTarget",
    "DefinitionSummary",
    "MoveResult",
    "PublishResult",
    "RegistryHistory",
    "RegistryPolicy",
    "RegistryService",
    "collect_act",
    "collect_move",
    "entry_signers",
    "move_digest",
    "signed_label",
    "verify_registry",
]
