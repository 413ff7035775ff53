"""The registry's records port: published definition versions, channel pointers with their
history, and approvals.

A definition's *content* is a blob (its canonical bytes, addressed by ``digest``); these are
the records about it. Conditional writes are made atomic by the backend, never
check-then-set in the caller:

- ``insert_definition_version`` relies on two unique keys per definition: its label
  (``version``) and its ``digest``. Re-publishing identical content is the caller's no-op
  (it looks the digest up first); a racing publisher of the same label collides.
- ``move_channel`` is compare-and-set on the channel pointer: it applies only if the channel
  points at ``move.from_digest`` (None: unset), and appends the move to the history in the
  same transaction.
- ``revoke_approval`` applies only to an approval not yet revoked.
- ``insert_actor`` relies on the key id being the primary key; ``revoke_actor`` applies only
  to a key not yet revoked.

Every record store implements this port next to `MetadataStore` (memory, SQL). Each write
takes ``audit`` and binds what it wrote into the audit chain in the same transaction, as
`MetadataStore` describes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from strongroom.errors import Conflict, LabelConflict, NotFound, StaleChannel, ValidationError
from strongroom.models import (
    Actor,
    ActSignature,
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
)

__all__ = [
    "RegistryRecords",
    "actor_exists",
    "actor_not_found",
    "actor_revoked_before",
    "already_revoked",
    "approval_exists",
    "approval_not_found",
    "digest_exists",
    "label_taken",
    "not_first_actor",
    "require_one_selector",
    "stale_channel",
    "version_not_found",
]


class RegistryRecords(ABC):
    """Definition versions, channels, approvals, actors (conformance:
    `strongroom.testing.RegistryRecordsTests`)."""

    async def session_role(self) -> str | None:
        """The database role this store writes as, where the database has roles and checks
        them (PostgreSQL's ``current_user``); None where it has none (SQLite, memory). Who an
        unsigned governed act is recorded as (`IdentityService.principal`)."""
        return None

    @abstractmethod
    async def insert_definition_version(
        self, version: DefinitionVersion, *, audit: AuditEvent | None = None
    ) -> None:
        """Store a published version. `LabelConflict` if the definition already has this
        label, `Conflict` (reason ``digest_exists``) if it already has this digest."""

    @abstractmethod
    async def get_definition_version(
        self,
        kind: DefinitionKind,
        definition_id: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion:
        """The version with this label or this digest (exactly one of them); `NotFound`."""

    @abstractmethod
    async def list_definition_versions(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[DefinitionVersion]:
        """Every version of one definition, oldest first (empty if it has none)."""

    @abstractmethod
    async def list_definitions(self, kind: DefinitionKind | None = None) -> list[DefinitionVersion]:
        """The latest published version of every definition (of one kind), by (kind, id)."""

    @abstractmethod
    async def get_channels(
        self, kind: DefinitionKind, definition_id: str
    ) -> dict[Channel, ChannelMove]:
        """Each set channel of a definition with the move that set it (its current digest is
        ``move.to_digest``)."""

    @abstractmethod
    async def move_channel(self, move: ChannelMove, *, audit: AuditEvent | None = None) -> None:
        """Point ``move.channel`` at ``move.to_digest`` and append ``move`` to the history,
        atomically, only if the channel now points at ``move.from_digest`` (None: unset);
        otherwise `StaleChannel` naming the current digest. `NotFound` if ``to_digest`` is
        not a published version of the definition."""

    @abstractmethod
    async def list_channel_moves(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[ChannelMove]:
        """The definition's channel history (every channel), oldest first."""

    @abstractmethod
    async def insert_approval(self, approval: Approval, *, audit: AuditEvent | None = None) -> None:
        """`Conflict` if the approval id exists."""

    @abstractmethod
    async def get_approval(self, approval_id: str) -> Approval: ...

    @abstractmethod
    async def list_approvals(self, scope: ApprovalScope | None = None) -> list[Approval]:
        """Approvals (of one scope), oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_approval(
        self,
        approval_id: str,
        *,
        at: datetime,
        by: str,
        reason: str,
        audit: AuditEvent | None = None,
        signature: ActSignature | None = None,
    ) -> Approval:
        """Mark the approval revoked (with the revoker's ``signature``, if signed) and
        return it; `NotFound`, or `Conflict` (reason ``already_revoked``) if it was revoked
        before."""

    # -- actors (people's keys) ----------------------------------------------------------------

    @abstractmethod
    async def insert_actor(self, actor: Actor, *, audit: AuditEvent | None = None) -> None:
        """Register a key. `Conflict` (reason ``actor_exists``) if the key id is registered;
        an actor without ``added_by`` (the vault's first admin) goes only into an empty
        registry, checked in the writing transaction (`Conflict`, reason
        ``not_first_actor``), so two racing first admins cannot both be stored."""

    @abstractmethod
    async def get_actor(self, key_id: str) -> Actor:
        """`NotFound` if the key id was never registered."""

    @abstractmethod
    async def list_actors(self) -> list[Actor]:
        """Every registered key, oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_actor(
        self,
        key_id: str,
        *,
        at: datetime,
        by: str | None,
        reason: str,
        signature: ActSignature | None,
        audit: AuditEvent | None = None,
    ) -> Actor:
        """Mark the key revoked from ``at`` on and return it; `NotFound`, or `Conflict`
        (reason ``actor_revoked``) if it was revoked before."""


# -- the port's errors, built once for every adapter ---------------------------------------------


def label_taken(version: DefinitionVersion, existing_digest: str) -> LabelConflict:
    return LabelConflict(
        f"{version.kind.value} {version.definition_id} already has a version "
        f"{version.version} with other content",
        operation="publish",
        kind=version.kind.value,
        definition_id=version.definition_id,
        version=version.version,
        existing_digest=existing_digest,
    )


def digest_exists(version: DefinitionVersion, existing_label: str) -> Conflict:
    return Conflict(
        f"{version.kind.value} {version.definition_id} already has this content "
        f"as version {existing_label}",
        operation="publish",
        reason="digest_exists",
        definition_id=version.definition_id,
        version=existing_label,
    )


def version_not_found(kind: DefinitionKind, definition_id: str, what: str) -> NotFound:
    return NotFound(
        f"{kind.value} {definition_id} has no version {what}",
        operation="get_definition_version",
        kind=kind.value,
        definition_id=definition_id,
        version=what,
    )


def require_one_selector(version: str | None, digest: str | None) -> None:
    if (version is None) == (digest is None):
        raise ValidationError(
            "get_definition_version needs exactly one of version and digest",
            operation="get_definition_version",
        )


def stale_channel(move: ChannelMove, current_digest: str | None) -> StaleChannel:
    return StaleChannel(
        f"channel {move.channel.value} of {move.kind.value} {move.definition_id} "
        "moved since it was read",
        operation="move_channel",
        channel=move.channel.value,
        definition_id=move.definition_id,
        expected_digest=move.from_digest,
        current_digest=current_digest,
    )


def approval_exists(approval_id: str) -> Conflict:
    return Conflict(
        f"approval {approval_id} exists", operation="insert_approval", approval_id=approval_id
    )


def approval_not_found(approval_id: str) -> NotFound:
    return NotFound(
        f"approval {approval_id} not found", operation="get_approval", approval_id=approval_id
    )


def already_revoked(approval_id: str) -> Conflict:
    return Conflict(
        f"approval {approval_id} was already revoked",
        operation="revoke_approval",
        approval_id=approval_id,
        reason="already_revoked",
    )


def actor_exists(key_id: str) -> Conflict:
    return Conflict(
        f"key {key_id} is already registered",
        operation="insert_actor",
        reason="actor_exists",
        key_id=key_id,
    )


def actor_not_found(key_id: str) -> NotFound:
    return NotFound(
        f"no actor with key {key_id} is registered in this vault (strongroom actors list)",
        operation="get_actor",
        key_id=key_id,
    )


def actor_revoked_before(key_id: str) -> Conflict:
    return Conflict(
        f"key {key_id} was already revoked",
        operation="revoke_actor",
        reason="actor_revoked",
        key_id=key_id,
    )


def not_first_actor(key_id: str) -> Conflict:
    return Conflict(
        f"key {key_id} cannot be registered as the vault's first admin: the vault has "
        "registered actors already (an admin registers new ones: strongroom actors add ... --key)",
        operation="insert_actor",
        reason="not_first_actor",
        key_id=key_id,
    )
